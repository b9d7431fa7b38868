"""A registry of model types behind one small protocol (``ModelType``): build from params,
fit with early stopping where it applies, predict the fraud probability, export ONNX with
a ``probabilities`` output, explain (importance, per-row contributions)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

ONNX_OPSET = 15


class Fitted(Protocol):
    estimator: Any

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803 - X is the usual name
        """P(fraud) per row, float64."""

    def to_onnx(self, n_features: int) -> Any:
        """An onnx.ModelProto with a float input ``input`` [N, n] and ``probabilities`` [N, 2]."""

    def importance(self) -> np.ndarray:
        """One non-negative weight per feature."""

    def contributions(self, X: np.ndarray) -> np.ndarray | None:  # noqa: N803
        """Per-row, per-feature contributions to the margin (TreeSHAP, or coef * x), or None."""


@dataclass(frozen=True)
class ModelType:
    name: str
    defaults: dict[str, Any]
    fit: Callable[..., Fitted]  # (X, y, X_val, y_val, params, seed, pos_weight) -> Fitted
    #: sklearn-style resampling (SMOTETomek) applies to it
    resamplable: bool = False
    boosted: bool = False


def _float_input(n: int, onnxmltools: bool = False) -> list:
    if onnxmltools:
        from onnxmltools.convert.common.data_types import FloatTensorType
    else:
        from skl2onnx.common.data_types import FloatTensorType

    return [("input", FloatTensorType([None, n]))]


# -- XGBoost ------------------------------------------------------------------------------
@dataclass
class _Estimator:
    """A scikit-learn-style classifier; P(fraud) is its second probability column."""

    estimator: Any

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return self.estimator.predict_proba(X)[:, 1].astype(np.float64)


@dataclass
class _Xgb(_Estimator):
    def to_onnx(self, n_features: int) -> Any:
        from onnxmltools import convert_xgboost

        return convert_xgboost(self.estimator, initial_types=_float_input(n_features, True), target_opset=ONNX_OPSET)

    def importance(self) -> np.ndarray:
        return np.asarray(self.estimator.feature_importances_, dtype=np.float64)

    def contributions(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        import xgboost as xgb

        booster = self.estimator.get_booster()
        return booster.predict(xgb.DMatrix(X), pred_contribs=True)[:, :-1]


def _fit_xgb(X, y, X_val, y_val, params, seed, pos_weight, w=None) -> _Xgb:  # noqa: N803
    import xgboost as xgb

    p = dict(params)
    stop = p.pop("early_stopping_rounds", 30)
    model = xgb.XGBClassifier(**p, tree_method="hist", scale_pos_weight=pos_weight, random_state=seed,
                              eval_metric="aucpr", early_stopping_rounds=stop if X_val is not None else None,
                              n_jobs=2)
    model.fit(X, y, sample_weight=w, eval_set=[(X_val, y_val)] if X_val is not None else None, verbose=False)
    if X_val is not None and model.best_iteration is not None and model.best_iteration + 1 < p["n_estimators"]:
        # Keep only the trees early stopping chose, so that the ONNX graph (which converts
        # every tree) and predict_proba agree.
        best = model.best_iteration + 1
        sliced = model.get_booster()[:best]
        model = xgb.XGBClassifier()
        model.load_model(bytearray(sliced.save_raw("ubj")))
    return _Xgb(model)


# -- LightGBM ----------------------------------------------------------------------------
@dataclass
class _Lgbm(_Estimator):
    def to_onnx(self, n_features: int) -> Any:
        from onnxmltools import convert_lightgbm

        return convert_lightgbm(self.estimator, initial_types=_float_input(n_features, True), target_opset=ONNX_OPSET,
                                zipmap=False)

    def importance(self) -> np.ndarray:
        return self.estimator.booster_.feature_importance("gain").astype(np.float64)

    def contributions(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return np.asarray(self.estimator.predict(X, pred_contrib=True))[:, :-1]


def _fit_lgbm(X, y, X_val, y_val, params, seed, pos_weight, w=None) -> _Lgbm:  # noqa: N803
    import lightgbm as lgb

    p = dict(params)
    stop = p.pop("early_stopping_rounds", 30)
    model = lgb.LGBMClassifier(**p, scale_pos_weight=pos_weight, random_state=seed, n_jobs=2, verbose=-1)
    callbacks: list[Any] = [lgb.early_stopping(stop, verbose=False)] if X_val is not None else []
    model.fit(X, y, sample_weight=w, eval_X=X_val, eval_y=y_val, eval_metric="average_precision",
              callbacks=callbacks)
    if X_val is not None and model.best_iteration_ and model.best_iteration_ < p["n_estimators"]:
        # the ONNX converter takes every tree: refit exactly the chosen number
        model = lgb.LGBMClassifier(**{**p, "n_estimators": model.best_iteration_}, scale_pos_weight=pos_weight,
                                   random_state=seed, n_jobs=2, verbose=-1).fit(X, y, sample_weight=w)
    model._Booster = float32_thresholds(model.booster_)  # noqa: SLF001
    return _Lgbm(model)


_THRESHOLD = re.compile(r"^threshold=(.*)$", re.MULTILINE)


def _down_to_float32(v: float) -> float:
    f = np.float32(v)
    if float(f) > v:
        f = np.nextafter(f, np.float32(-np.inf), dtype=np.float32)
    return float(f)


def float32_thresholds(booster: Any) -> Any:
    """LightGBM splits on double thresholds; ONNX trees store float32 ones. For float32
    inputs ``x <= t`` equals ``x <= the largest float32 not above t``, so rounding every
    threshold that way changes no native decision and makes the ONNX graph agree exactly
    (without it, inputs between t and float32(t) went opposite ways: 1e-4 differences)."""
    import lightgbm as lgb

    def fix(m: re.Match) -> str:
        return "threshold=" + " ".join(repr(_down_to_float32(float(v))) for v in m.group(1).split())

    text = _THRESHOLD.sub(fix, booster.model_to_string())
    # the header's byte sizes of each tree no longer hold; without them LightGBM parses in order
    text = re.sub(r"^tree_sizes=.*\n", "", text, count=1, flags=re.MULTILINE)
    return lgb.Booster(model_str=text)


# -- scikit-learn ------------------------------------------------------------------------
@dataclass
class _Sk(_Estimator):
    linear: bool = False

    def to_onnx(self, n_features: int) -> Any:
        from skl2onnx import convert_sklearn

        return convert_sklearn(self.estimator, initial_types=_float_input(n_features), target_opset=ONNX_OPSET,
                               options={"zipmap": False})

    def importance(self) -> np.ndarray:
        if self.linear:  # coefficients on standardised features are comparable
            return np.abs(self.estimator[-1].coef_[0]).astype(np.float64)
        return np.asarray(self.estimator.feature_importances_, dtype=np.float64)

    def contributions(self, X: np.ndarray) -> np.ndarray | None:  # noqa: N803
        if not self.linear:
            return None  # no native TreeSHAP for sklearn forests; importance is impurity-based
        scaler, lr = self.estimator[0], self.estimator[-1]
        return scaler.transform(X) * lr.coef_[0]


def _resample(X, y, resample, seed):  # noqa: N803
    if not resample:
        return X, y
    from imblearn.combine import SMOTETomek

    return SMOTETomek(random_state=seed).fit_resample(X, y)


def _fit_rf(X, y, X_val, y_val, params, seed, pos_weight, resample=False, w=None) -> _Sk:  # noqa: N803
    from sklearn.ensemble import RandomForestClassifier

    X, y = _resample(X, y, resample, seed)
    model = RandomForestClassifier(**params, class_weight=None if resample else "balanced_subsample",
                                   random_state=seed, n_jobs=2)
    return _Sk(model.fit(X, y, sample_weight=w))


def _fit_lr(X, y, X_val, y_val, params, seed, pos_weight, resample=False, w=None) -> _Sk:  # noqa: N803
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _resample(X, y, resample, seed)
    # The scaler is part of the model (and of its ONNX graph): serving feeds raw features.
    model = Pipeline([("scale", StandardScaler()),
                      ("lr", LogisticRegression(**params, class_weight=None if resample else "balanced",
                                                random_state=seed))])
    return _Sk(model.fit(X, y, lr__sample_weight=w), linear=True)


MODEL_TYPES: dict[str, ModelType] = {
    "xgboost": ModelType("xgboost", {"n_estimators": 400, "learning_rate": 0.08, "max_depth": 6,
                                     "subsample": 0.9, "colsample_bytree": 0.9, "min_child_weight": 1.0,
                                     "early_stopping_rounds": 30}, _fit_xgb, boosted=True),
    "lightgbm": ModelType("lightgbm", {"n_estimators": 400, "learning_rate": 0.08, "num_leaves": 31,
                                       "min_child_samples": 20, "subsample": 0.9, "subsample_freq": 1,
                                       "colsample_bytree": 0.9, "early_stopping_rounds": 30}, _fit_lgbm,
                          boosted=True),
    "random_forest": ModelType("random_forest", {"n_estimators": 200, "max_depth": 14, "min_samples_leaf": 2},
                               _fit_rf, resamplable=True),
    "logistic_regression": ModelType("logistic_regression", {"C": 1.0, "max_iter": 2000}, _fit_lr,
                                     resamplable=True),
}


def get(name: str) -> ModelType:
    try:
        return MODEL_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown model type {name!r}; one of {', '.join(MODEL_TYPES)}") from None


def fit(model_type: str, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None, y_val: np.ndarray | None,  # noqa: N803
        params: dict[str, Any] | None = None, seed: int = 42, resample: bool = False,
        sample_weight: np.ndarray | None = None) -> Fitted:
    """Fit a model type; ``sample_weight``: per-row weights (inverse-propensity weights of
    feedback labels under selection bias)."""
    mt = get(model_type)
    merged = {**mt.defaults, **(params or {})}
    pos = max(1, int(y.sum()))
    pos_weight = (len(y) - pos) / pos
    if resample:
        if not mt.resamplable:
            raise ValueError(f"--resample (SMOTETomek) applies to the sklearn models, not {model_type}")
        if sample_weight is not None:
            raise ValueError("--resample and weighted labels do not combine (SMOTETomek makes rows of its own)")
        return mt.fit(X, y, X_val, y_val, merged, seed, pos_weight, resample=True)
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64)
        wpos = max(1e-12, float(w[y == 1].sum()))
        balance = float(w[y == 0].sum()) / wpos  # classes balanced by weight, as without weights by count
        return mt.fit(X, y, X_val, y_val, merged, seed, balance, w=w)
    return mt.fit(X, y, X_val, y_val, merged, seed, pos_weight)
