"""MLflow: where runs go, the registry (``fraud-detector``, aliases ``challenger`` and
``champion``) and loading a registered ONNX model (the graph only, never a pickle)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import mlflow_auth, registry
from core.settings import StackSettings
from stack import health
from training.errors import TrainingError

log = logging.getLogger("training.tracking")

REGISTERED = {"fraud": "fraud-detector", "personalization": "purchase-propensity"}
CHAMPION, CHALLENGER = "champion", "challenger"


def connect(settings: StackSettings, say: Any = print, check: bool = True) -> str:
    """Point MLflow at ``MLFLOW_TRACKING_URI`` if set, else at a local sqlite registry when
    ``STACK_MLFLOW_LOCAL`` asks for one, else at the stack's tracking server. With ``check``,
    an unreachable server is a TrainingError with the fix (never a silent local registry,
    which the API would never see); services that retry (the API, the scorer, the monitor)
    pass ``check=False``."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    if not log.isEnabledFor(logging.INFO):  # mlflow sets its own level on import
        logging.getLogger("mlflow").setLevel(logging.ERROR)
    mlflow_auth.use(settings)
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri and settings.mlflow_local:
        local = settings.data_dir / "mlflow-local"
        local.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{local / 'mlflow.db'}"
        say(f"note: a local MLflow registry ({uri}, STACK_MLFLOW_LOCAL): the stack's services do not see it")
    if not uri:
        uri = settings.mlflow_uri
        if check and health.http(f"{uri}/health") is not None:
            raise TrainingError(f"no MLflow tracking server answers at {uri}: 'make up' starts one (or set "
                                "STACK_MLFLOW_LOCAL=true for a local registry the stack's services will not see)")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment(name: str, settings: StackSettings) -> str:
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        uri = mlflow.get_tracking_uri()
        location = None
        if uri.startswith("sqlite:"):
            location = (settings.data_dir / "mlflow-local" / "artifacts").resolve().as_uri()
        return mlflow.create_experiment(name, artifact_location=location)
    return exp.experiment_id


@dataclass
class RegisteredModel:
    name: str
    version: str
    alias: str | None
    onnx: bytes
    metadata: dict[str, Any]
    tags: dict[str, str]

    @property
    def features(self) -> list[str]:
        return list(self.metadata.get("features", []))

    @property
    def threshold(self) -> float:
        return float(self.metadata.get("threshold", 0.5))


def onnx_metadata(raw: bytes) -> dict[str, Any]:
    import onnx

    model = onnx.load_from_string(raw)
    out: dict[str, Any] = {}
    for p in model.metadata_props:
        try:
            out[p.key] = json.loads(p.value)
        except ValueError:
            out[p.key] = p.value
    return out


def alias_version(name: str, alias: str) -> str | None:
    """The version an alias points to, without downloading anything (None: not set)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def load(name: str, alias: str | None = CHAMPION, version: str | None = None) -> RegisteredModel | None:
    """A registered version's ONNX graph and metadata; None when the alias is not set."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        mv = client.get_model_version(name, version) if version is not None else \
            client.get_model_version_by_alias(name, alias or CHAMPION)
    except MlflowException:
        return None
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}"))
    files = list(folder.rglob("*.onnx"))
    if not files:
        raise TrainingError(f"{name} version {mv.version} has no ONNX artifact")
    raw = files[0].read_bytes()
    from training.export import sha256

    want = mv.tags.get("onnx_sha256")
    if want and sha256(raw) != want:
        raise TrainingError(f"{name} version {mv.version}: ONNX sha256 mismatch ({sha256(raw)[:12]} != {want[:12]})")
    return RegisteredModel(name, str(mv.version), alias, raw, onnx_metadata(raw), dict(mv.tags))


def log_onnx(model: Any, X_example: np.ndarray, p_example: np.ndarray) -> str:  # noqa: N803
    """Log the ONNX model (one file, with signature and input example); returns its URI."""
    import mlflow
    from mlflow.models import infer_signature

    signature = infer_signature(X_example.astype(np.float32), p_example.astype(np.float32))
    info = mlflow.onnx.log_model(model, name="model", signature=signature, input_example=X_example[:5],
                                 save_as_external_data=False)
    return str(info.model_uri)


def register(model_uri: str, name: str, tags: dict[str, str], raw: bytes, settings: StackSettings) -> str:
    """Register a logged ONNX model as ``challenger`` and sign its manifest (core.registry):
    the gate verdict is the ``gate`` tag."""
    import mlflow
    from mlflow import MlflowClient

    mv = mlflow.register_model(model_uri, name, tags=tags)
    registry.sign_version(settings, name, str(mv.version), raw, onnx_metadata(raw), tags.get("gate", "none"))
    MlflowClient().set_registered_model_alias(name, CHALLENGER, mv.version)
    return str(mv.version)


def promote(name: str, version: str, reason: str, settings: StackSettings, expected: Any = registry.ANY,
            evidence: dict[str, Any] | None = None) -> str | None:
    """Move ``champion`` to ``version`` with a signed compare-and-set (core.registry.promote);
    ``expected``: the champion the caller judged against (a version, None for none; default
    any). Returns the previous version."""
    return registry.promote(settings, name, version, reason, expected, evidence)


def history(name: str) -> list[dict[str, Any]]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException:
        return []
    by_version: dict[str, list[str]] = {}
    for alias, v in aliases.items():
        by_version.setdefault(str(v), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name='{name}'"):
        rows.append({"version": str(mv.version), "aliases": ",".join(sorted(by_version.get(str(mv.version), []))),
                     "created": mv.creation_timestamp, "run_id": mv.run_id,
                     "model_type": mv.tags.get("model_type", ""), "auc": mv.tags.get("test_auc", ""),
                     "f1": mv.tags.get("test_f1", ""), "gate": mv.tags.get("gate", "")})
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)
