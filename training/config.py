"""Training options (CLI flags map one to one) and the YAML search spaces."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from training.errors import TrainingError

DEFAULT_SPACES: dict[str, dict[str, Any]] = {
    "xgboost": {"max_depth": [4, 6, 8], "learning_rate": [0.03, 0.08, 0.15], "min_child_weight": [1, 5],
                "subsample": [0.8, 1.0]},
    "lightgbm": {"num_leaves": [15, 31, 63], "learning_rate": [0.03, 0.08, 0.15], "min_child_samples": [10, 40]},
    "random_forest": {"max_depth": [8, 14, 20], "min_samples_leaf": [1, 2, 5], "n_estimators": [100, 200]},
    "logistic_regression": {"C": [0.01, 0.1, 1.0, 10.0]},
}


class TrainConfig(BaseModel):
    model_type: str = "xgboost"
    task: Literal["fraud", "personalization"] = "fraud"
    experiment_name: str = "fraud-detection"
    registered_name: str | None = None  # default: fraud-detector (purchase-propensity)
    feedback_topic: str = "fraud-feedback"
    #: the pipeline's scores: its decisions (declines get no chargebacks); empty: none known
    scores_topic: str = "scores"
    #: features the boosters must treat as monotone increasing (e.g. velocity_score)
    monotone: list[str] = Field(default_factory=list)
    feature_service: str = "fraud_v1"
    start_ms: int | None = None
    end_ms: int | None = None
    max_samples: int | None = Field(None, gt=0)
    fraud_rate: float | None = None
    split: Literal["time", "stratified"] = "time"
    test_size: float = 0.1
    val_size: float = 0.1
    group_split: bool = False
    cv_folds: int = Field(3, ge=0)
    search: Literal["none", "grid", "random", "optuna"] = "none"
    n_trials: int = Field(10, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    spaces: dict[str, dict[str, Any]] = Field(default_factory=lambda: dict(DEFAULT_SPACES))
    calibration: Literal["auto", "isotonic", "sigmoid", "none"] = "auto"
    target_precision: float | None = Field(None, gt=0, lt=1)
    downsample: float | None = Field(None, gt=0, description="keep this many negatives per positive in training")
    resample: bool = False
    min_positives: int = 20
    #: personalization: a click is positive when its session purchases within this many minutes
    label_window_min: int = Field(30, ge=1)
    #: rules (cold start), feedback (matured ground truth), combined, auto (training/feedback.py)
    labels: Literal["auto", "rules", "feedback", "combined"] = "auto"
    #: a row without feedback is legit only once this old (event time); younger: unknown
    label_maturity_ms: int = Field(120_000, ge=0)
    #: matured fraud cases needed before ground truth trains (auto) and decides the gate
    min_feedback_fraud: int = Field(50, ge=1)
    #: share of traffic the team can review (default: the champion's current flag rate)
    alert_budget: float | None = Field(None, gt=0, lt=1)
    force: bool = False
    promote: bool = True
    ground_truth: bool = True
    seed: int = 42
    min_auc: float = 0.75
    max_ece: float = 0.05
    #: rows of the drift reference, sampled over the whole dataset (scores on its test rows)
    reference_rows: int = 20_000
    output_dir: Path | None = None
    #: where the fraud training set is built and the booster trained: in-process (None), local:N
    #: or tcp://host:port (training/distributed.py)
    cluster: str | None = None
    verbose: bool = False


def load_yaml(path: Path) -> dict[str, Any]:
    """``params:`` (per model type) and ``search_spaces:`` (per model type) from a YAML file."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise TrainingError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise TrainingError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise TrainingError(f"config file {path} must hold a mapping")
    unknown = set(raw) - {"params", "search_spaces"}
    if unknown:
        raise TrainingError(f"config file {path}: unknown keys {', '.join(sorted(unknown))} "
                            "(expected params, search_spaces)")
    return raw
