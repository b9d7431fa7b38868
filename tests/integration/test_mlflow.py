"""MLflow through its tracking server: log, register, alias, load by alias."""

from __future__ import annotations

import uuid

import mlflow
import numpy as np
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression


def test_log_register_alias_and_load(mlflow_uri: str) -> None:
    mlflow.set_tracking_uri(mlflow_uri)
    client = MlflowClient(mlflow_uri)
    name = f"fraud-detector-test-{uuid.uuid4().hex[:6]}"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] + 0.1 * rng.normal(size=200) > 0).astype(int)
    model = LogisticRegression().fit(x, y)

    mlflow.set_experiment("integration-tests")
    with mlflow.start_run() as run:
        mlflow.log_param("C", 1.0)
        mlflow.log_metric("auc", 0.97)
        info = mlflow.sklearn.log_model(model, name="model", input_example=x[:2],
                                        registered_model_name=name)
    assert str(info.registered_model_version) == "1"

    client.set_registered_model_alias(name, "champion", "1")
    mv = client.get_model_version_by_alias(name, "champion")
    assert mv.version == "1" and mv.run_id == run.info.run_id

    stored = client.get_run(run.info.run_id)
    assert stored.data.params["C"] == "1.0" and stored.data.metrics["auc"] == 0.97

    loaded = mlflow.sklearn.load_model(f"models:/{name}@champion")
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x))
