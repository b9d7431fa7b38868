"""Inference stage: FastAPI scoring with Feast online features and ONNX Runtime."""
