"""Training stage: point-in-time datasets from Feast, labels, models, MLflow, ONNX."""
