"""``train``: dataset → labels → split → (search) → fit + baseline → calibration →
threshold → CV → test metrics → ONNX parity → champion comparison → gate → MLflow."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.model_selection import StratifiedKFold

from core import feast_store
from core.contracts import REQUEST_FIELDS
from core.model_inputs import MODEL_FEATURES
from core.rules import RULES
from core.settings import StackSettings
from training import (
    calibration,
    distributed,
    evaluate,
    export,
    feedback,
    gate,
    ground_truth,
    models,
    search,
    splits,
    tracking,
)
from training.config import TrainConfig
from training.dataset import Dataset, check_fraud_service, load, load_clicks
from training.errors import DataError, TrainingError
from training.labels import Labels, describe, label, purchase_labels

log = logging.getLogger("training")
Say = Callable[[str], None]


@dataclass
class TrainResult:
    run_id: str
    model_type: str
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    threshold: float
    gate: gate.GateResult
    registered_name: str = ""
    version: str | None = None
    alias: str | None = None
    previous_champion: str | None = None
    onnx_path: Path | None = None
    onnx_sha256: str = ""
    parity: dict[str, float] = field(default_factory=dict)
    cv: dict[str, tuple[float, float]] = field(default_factory=dict)
    ground_truth: dict[str, Any] = field(default_factory=dict)
    label_summary: str = ""
    dataset: dict[str, Any] = field(default_factory=dict)
    champion_metrics: dict[str, float] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)


class _Timer:
    """Announces each step and records how long it took (the summary's timings)."""

    def __init__(self, say: Say) -> None:
        self.say, self.times = say, {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.say(f"  {name} ...")
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = time.perf_counter() - t0



#: the longest feature window: rows younger than this after the log's first event have
#: windows that are not full yet (every card looks new), unlike anything served later
WARMUP_MS = 24 * 3_600_000


def drift_reference(df: pd.DataFrame, features: list[str], test: np.ndarray, p_test: np.ndarray, rows: int,
                    seed: int) -> pd.DataFrame:
    """What drift checks compare with, and the model's score where it is out of sample (test
    rows; NaN elsewhere: in-sample scores of training rows are more confident than any score
    served). Its rows: with two days of data or more, a sample of the last day (every hour of
    the day, windows full); with less, the test period (the latest rows: the first day's
    windows are still filling from the log's start, and earlier rows would look colder than
    anything served now)."""
    t = df["event_time"].to_numpy()
    if len(t) and t.max() - t.min() >= 2 * WARMUP_MS:
        pool = np.flatnonzero(t > t.max() - WARMUP_MS)
    else:
        pool = np.sort(np.asarray(test))
    rng = np.random.default_rng(seed)
    picked = np.sort(pool if len(pool) <= rows else rng.choice(pool, rows, replace=False))
    at_test = np.full(len(df), -1)
    at_test[np.asarray(test)] = np.arange(len(test))
    where = at_test[picked]
    score = np.where(where >= 0, np.asarray(p_test, dtype=float)[np.maximum(where, 0)], np.nan)
    request = [c for c in REQUEST_FIELDS if c in df.columns]  # (their categories: drift's data quality)
    return df.iloc[picked][["event_id", "event_time", *features, *request]].assign(score=score).reset_index(drop=True)


def _downsample(idx: np.ndarray, y: np.ndarray, ratio: float | None, seed: int) -> np.ndarray:
    if ratio is None:
        return idx
    pos, neg = idx[y[idx] == 1], idx[y[idx] == 0]
    keep = min(len(neg), int(np.ceil(ratio * max(1, len(pos)))))
    chosen = np.random.default_rng(seed).choice(neg, keep, replace=False)
    return np.sort(np.concatenate([pos, chosen]))


def _cv(cfg: TrainConfig, X: np.ndarray, y: np.ndarray, params: dict[str, Any], say: Say  # noqa: N803
        ) -> dict[str, tuple[float, float]]:
    """Stratified k-fold on the training rows; thresholds chosen on each fold's own training part."""
    if cfg.cv_folds < 2:
        return {}
    if np.bincount(y, minlength=2).min() < cfg.cv_folds:
        say(f"  cross-validation skipped: fewer than {cfg.cv_folds} rows in a class")
        return {}
    from tqdm import tqdm

    folds = StratifiedKFold(cfg.cv_folds, shuffle=True, random_state=cfg.seed)
    rows = []
    for tr, te in tqdm(list(folds.split(X, y)), desc="  cross-validation", unit="fold", leave=False,
                       disable=None):
        fitted = models.fit(cfg.model_type, X[tr], y[tr], None, None, params, cfg.seed, cfg.resample)
        thr = evaluate.choose_threshold(y[tr], fitted.predict(X[tr]))
        rows.append(evaluate.compute(y[te], fitted.predict(X[te]), thr))
    df = pd.DataFrame(rows)
    return {m: (float(df[m].mean()), float(df[m].std(ddof=1))) for m in evaluate.METRIC_NAMES}


def _fixed_params(cfg: TrainConfig, fitted: models.Fitted, params: dict[str, Any]) -> dict[str, Any]:
    """Params for refits without a validation set: boosters keep the tree count early stopping chose."""
    p = dict(params)
    mt = models.get(cfg.model_type)
    if mt.boosted:
        est = fitted.estimator
        p["n_estimators"] = (est.get_booster().num_boosted_rounds() if cfg.model_type == "xgboost"
                             else int(est.n_estimators))
        p.pop("early_stopping_rounds", None)
    return p


def _monotone(cfg: TrainConfig, features: list[str]) -> dict[str, Any]:
    unknown = [f for f in cfg.monotone if f not in features]
    if unknown:
        raise TrainingError(f"--monotone: unknown features {', '.join(unknown)}")
    signs = [1 if f in cfg.monotone else 0 for f in features]
    if cfg.model_type == "xgboost":
        return {"monotone_constraints": "(" + ",".join(map(str, signs)) + ")"}
    if cfg.model_type == "lightgbm":
        return {"monotone_constraints": signs}
    raise TrainingError("--monotone applies to xgboost and lightgbm")


def _champion_view(name: str, features: list[str], X_test: np.ndarray, y_test: np.ndarray  # noqa: N803
                   ) -> tuple[dict[str, float] | None, np.ndarray | None, np.ndarray | None, str, str | None,
                              float | None]:
    champ = tracking.load(name, tracking.CHAMPION)
    if champ is None:
        return None, None, None, "no champion yet", None, None
    if champ.features != features:
        return None, None, None, f"champion v{champ.version} uses other features; not comparable", champ.version, None
    p = export.score(export.session(champ.onnx), X_test)
    metrics = evaluate.compute(y_test, p, champ.threshold)
    imp = champ.metadata.get("importance")
    return metrics, p, (np.asarray(imp, dtype=np.float64) if imp else None), "", champ.version, champ.threshold


def _label_mode(cfg: TrainConfig, tl: feedback.TruthLabels | None, fraud: bool) -> str:
    """rules, feedback, combined, or auto (enough matured fraud: pick between the two)."""
    if not fraud or cfg.labels == "rules":
        return "rules"
    if tl is None:
        if cfg.labels == "auto":
            return "rules"
        raise DataError(f"--labels {cfg.labels} needs the fraud-feedback topic ({cfg.feedback_topic}); Kafka is "
                        "unreachable or ground truth is switched off")
    if cfg.labels == "auto":
        return "rules" if tl.summary["fraud"] < cfg.min_feedback_fraud else "auto"
    return cfg.labels


#: the entity a group split keeps on one side, per task
GROUP_KEY = {"fraud": "card_id", "personalization": "user_id"}


def _labels_and_split(cfg: TrainConfig, df: pd.DataFrame, labels: Labels, tl: feedback.TruthLabels | None,
                      mode: str) -> tuple[np.ndarray, splits.Split, str]:
    """Labels and split for a mode. With ground truth, validation and test are the newest
    *matured* rows (never "not reported yet"); ``combined`` adds the young rows to training
    with their rule labels."""
    key = GROUP_KEY[cfg.task]
    if mode == "rules":
        sp = splits.split(df, labels.y, cfg.split, cfg.val_size, cfg.test_size, cfg.group_split, cfg.seed, key)
        return labels.y, sp, labels.mode
    assert tl is not None
    kidx = np.flatnonzero(tl.known)
    spk = splits.split(df.iloc[kidx].reset_index(drop=True), tl.y[kidx], cfg.split, cfg.val_size, cfg.test_size,
                       cfg.group_split, cfg.seed, key)
    train, val, test = kidx[spk.train], kidx[spk.val], kidx[spk.test]
    y = tl.y.copy()
    what = f"fraud feedback (matured ground truth, {cfg.label_maturity_ms / 1000:.0f} s maturity)"
    if mode == "combined":
        young = np.flatnonzero(~tl.known)
        y[young] = labels.y[young]
        train = np.sort(np.concatenate([train, young]))
        what = f"combined: matured ground truth + rule labels on {len(young):,} young rows"
    return y, splits.Split(train, val, test), what


def _pick_labels(cfg: TrainConfig, X: np.ndarray, tl: feedback.TruthLabels,  # noqa: N803
                 fit: Callable[[str], tuple[models.Fitted, splits.Split]]) -> tuple[str, str]:
    """auto: fit the model on each of feedback and combined labels (``fit(mode)``: the fitted
    model and its split); keep the one with the higher ground-truth PR-AUC on the (shared,
    matured) validation rows."""
    scores = {}
    for mode in ("feedback", "combined"):
        f, sp = fit(mode)
        yv = tl.y[sp.val]
        scores[mode] = float(skm.average_precision_score(
            yv, f.predict(X[sp.val]), sample_weight=tl.w[sp.val] if tl.w is not None else None)) \
            if 0 < yv.sum() < len(yv) else float("nan")
    best = "combined" if scores["combined"] > scores["feedback"] else "feedback"
    return best, (f"labels auto: {best} (validation ground-truth PR-AUC feedback {scores['feedback']:.4f}, "
                  f"combined {scores['combined']:.4f})")


def _truth_label_mode(cfg: TrainConfig, mode: str, prep: distributed.Prepared) -> str:
    what = f"fraud feedback (matured ground truth, {cfg.label_maturity_ms / 1000:.0f} s maturity)"
    if mode == "combined":
        young = prep.train_counts("combined")[0] - prep.train_counts("feedback")[0]
        what = f"combined: matured ground truth + rule labels on {young:,} young rows"
    return what


def train(settings: StackSettings, cfg: TrainConfig, say: Say = print) -> TrainResult:
    """Train, evaluate, gate and register one model (module docstring). With ``cfg.cluster``
    (local:N or a scheduler address) the fraud training set is built and the booster trained
    on Dask (training/distributed.py); in-process otherwise."""
    from core import cluster

    models.get(cfg.model_type)  # fail fast on a typo
    try:
        where = cluster.parse(cfg.cluster)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    if where.kind == "in-process":
        return _train(settings, cfg, say, None)
    distributed.refuse(cfg)
    with contextlib.ExitStack() as stack:
        try:
            place = stack.enter_context(cluster.connect(where))
        except ValueError as exc:  # (a scheduler nobody answers at)
            raise TrainingError(str(exc)) from None
        say(f"  on Dask: {where}, {place.workers} worker(s)")
        return _train(settings, cfg, say, place)


def _train(settings: StackSettings, cfg: TrainConfig, say: Say, place: Any) -> TrainResult:
    import mlflow

    t_all = time.perf_counter()
    timer = _Timer(say)
    uri = tracking.connect(settings, say)
    name = cfg.registered_name or tracking.REGISTERED[cfg.task]

    fraud = cfg.task == "fraud"
    prep: distributed.Prepared | None = None
    truth_df, tl = None, None
    if place is not None:
        with timer.step("ground truth from fraud-feedback"):
            truth_df = ground_truth.read(settings, cfg.feedback_topic) if cfg.ground_truth else None
            scores = ground_truth.stream_scores(settings, cfg.scores_topic) \
                if truth_df is not None and cfg.scores_topic else None
        if cfg.ground_truth and truth_df is None:
            say("    Kafka not reachable: ground truth skipped (rule labels, rule-label gate)")
    with timer.step("loading point-in-time features from the offline store"):
        if place is not None:
            check_fraud_service(settings, cfg.feature_service)
            root = feast_store.offline_root(settings)
            prep = distributed.prepare(place, root, cfg, truth_df, scores, progress=sys.stderr.isatty())
            ds = Dataset(prep.frame, list(MODEL_FEATURES), str(root), prep.summary)
            tl = prep.truth
        elif fraud:
            ds: Dataset = load(settings, feature_service=cfg.feature_service, start_ms=cfg.start_ms,
                               end_ms=cfg.end_ms, max_samples=cfg.max_samples)
        else:
            service = "personalization_v1" if cfg.feature_service == "fraud_v1" else cfg.feature_service
            ds = load_clicks(settings, feature_service=service, start_ms=cfg.start_ms, end_ms=cfg.end_ms,
                             max_samples=cfg.max_samples)
    df = ds.frame
    what = "transactions" if fraud else "clicks"
    say(f"    {ds.summary['rows']:,} {what}, {ds.summary.get('cards', ds.summary.get('users')):,} "
        f"{'cards' if fraud else 'users'}, {ds.summary['start']} .. {ds.summary['end']}")
    if prep is not None:
        share = ds.summary["evaluation_sample"]
        said = "validation and test" if share >= 1 else f"a uniform {share:.1%} of the validation and test rows"
        say(f"    {ds.summary['days']} day task(s); held here: {len(df):,} rows ({said}, and a sample "
            f"of {ds.summary['sampled_train_rows']:,} training rows for the baseline, CV and feature statistics)")
    labels: Labels = label(df, cfg.fraud_rate) if fraud else purchase_labels(df, cfg.label_window_min * 60_000)
    X = ds.X
    if prep is not None and tl is not None:
        say(f"    ground truth: {tl.summary['fraud']} matured fraud, {tl.summary['with_feedback']:,} rows with "
            f"feedback, {tl.summary['matured_silent']:,} matured without, {tl.summary['unknown_young']:,} too "
            f"young to know (maturity {cfg.label_maturity_ms / 1000:.0f} s), "
            f"{tl.summary['declined_unlabelled']:,} declined (unknowable)")
    if cfg.ground_truth and fraud and prep is None:
        with timer.step("ground truth from fraud-feedback"):
            truth_df = ground_truth.read(settings, cfg.feedback_topic)
        if truth_df is None:
            say("    Kafka not reachable: ground truth skipped (rule labels, rule-label gate)")
        else:
            now = int(df["event_time"].max())  # the stream's clock: event time
            dec = ground_truth.decisions(settings, cfg.scores_topic) if cfg.scores_topic else None
            declined = prob = None
            if dec is not None:  # selection bias: declines get no chargebacks
                joined = df[["event_id"]].merge(dec, on="event_id", how="left")
                declined = joined["declined"].fillna(False).astype(bool).to_numpy()
                prob = joined["label_probability"].fillna(1.0).to_numpy()
            tl = feedback.truth_labels(ground_truth.align(df["event_id"], truth_df), df["event_time"].to_numpy(),
                                       now, cfg.label_maturity_ms, declined, prob)
            say(f"    ground truth: {tl.summary['fraud']} matured fraud, {tl.summary['with_feedback']:,} rows with "
                f"feedback, {tl.summary['matured_silent']:,} matured without, {tl.summary['unknown_young']:,} too "
                f"young to know (maturity {cfg.label_maturity_ms / 1000:.0f} s), "
                f"{tl.summary['declined_unlabelled']:,} declined (unknowable)")
    mode = _label_mode(cfg, tl, fraud)
    weighted = tl is not None and tl.w is not None
    if mode == "auto":
        with timer.step("choosing labels: feedback or combined"):
            def fit_mode(m: str) -> tuple[models.Fitted, splits.Split]:
                if prep is not None:  # (on the cluster; the validation rows are the same for both)
                    yy, ss = prep.split(m)
                    return distributed.fit(place, prep, m, cfg.model_type, dict(cfg.params), cfg.seed, X[ss.val],
                                           yy[ss.val], weighted), ss
                yy, ss, _ = _labels_and_split(cfg, df, labels, tl, m)
                w = tl.w[ss.train] if tl.w is not None else None  # type: ignore[union-attr]
                return models.fit(cfg.model_type, X[ss.train], yy[ss.train], X[ss.val], yy[ss.val], dict(cfg.params),
                                  cfg.seed, sample_weight=w), ss

            mode, choice = _pick_labels(cfg, X, tl, fit_mode)  # type: ignore[arg-type]
            say(f"    {choice}")
    if prep is not None:
        y, sp = prep.split(mode)
        label_mode = labels.mode if mode == "rules" else _truth_label_mode(cfg, mode, prep)
        n_train, n_pos = prep.train_counts(mode)
        rate = n_pos / max(1, n_train)
        rules_note = ("; rules fired: " + ", ".join(f"{k} {v}" for k, v in prep.fired.items())
                      if mode == "rules" else "")
    else:
        y, sp, label_mode = _labels_and_split(cfg, df, labels, tl, mode)
        n_train, n_pos, rate = len(sp.train), int(y[sp.train].sum()), labels.rate
        rules_note = f"; {describe(labels)}" if mode == "rules" else ""
    say(f"    labels: {label_mode}: {n_pos} positive of {n_train:,} training rows{rules_note}")
    if n_pos < cfg.min_positives:
        raise DataError(f"only {n_pos} positive labels (minimum {cfg.min_positives}): let the "
                        "generator run longer, backfill more data" + (", or label by --fraud-rate" if fraud else ""))
    if fraud and mode == "rules" and not 0.0005 <= rate <= 0.3:
        say(f"  warning: label rate {rate:.3%} is far from the expected 0.05%..30%; check the rules or data")
    if n_pos == n_train:
        raise DataError("the train split has only fraud labels; more (matured) data is needed")
    for part, idx in (("validation", sp.val), ("test", sp.test)) + ((("train", sp.train),) if prep is None else ()):
        if y[idx].sum() == 0:
            raise DataError(f"the {part} split has no fraud labels; use --split stratified or more data")
        if y[idx].sum() == len(idx):
            raise DataError(f"the {part} split has only fraud labels; more (matured) data is needed")
    train_idx = _downsample(sp.train, y, cfg.downsample, cfg.seed)
    Xtr, ytr, Xva, yva, Xte, yte = X[train_idx], y[train_idx], X[sp.val], y[sp.val], X[sp.test], y[sp.test]

    params = dict(cfg.params)
    if cfg.monotone:
        params.update(_monotone(cfg, ds.features))
    trials: list[dict[str, Any]] = []
    if cfg.search != "none":
        with timer.step(f"hyperparameter search ({cfg.search})"):
            def objective(p: dict[str, Any]) -> float:
                f = models.fit(cfg.model_type, Xtr, ytr, Xva, yva, {**params, **p}, cfg.seed, cfg.resample)
                return float(skm.average_precision_score(yva, f.predict(Xva)))

            best, trials = search.run(cfg.search, cfg.spaces.get(cfg.model_type, {}), objective, cfg.n_trials,
                                      cfg.seed)
            params.update(best)
            say(f"    best of {len(trials)} trials: {best}")

    # inverse-propensity weights of the feedback labels (explored declines stand for the rest)
    w_train = tl.w[train_idx] if (tl is not None and tl.w is not None and mode != "rules") else None
    with timer.step(f"training {cfg.model_type}" + (f" on Dask ({n_train:,} rows)" if prep is not None else "")):
        if prep is not None:
            fitted = distributed.fit(place, prep, mode, cfg.model_type, params, cfg.seed, Xva, yva,
                                     weighted and mode != "rules")
        else:
            fitted = models.fit(cfg.model_type, Xtr, ytr, Xva, yva, params, cfg.seed, cfg.resample, w_train)
    with timer.step("training the logistic-regression baseline"):
        base = models.fit("logistic_regression", Xtr, ytr, Xva, yva, {}, cfg.seed)
    with timer.step("calibration and threshold"):
        p_val_raw = fitted.predict(Xva)
        if cfg.calibration == "auto":
            cal, cal_scores = calibration.choose(p_val_raw, yva, cfg.seed)
        elif cfg.calibration == "none":
            cal, cal_scores = calibration.Calibrator("none"), {}
        else:
            cal, cal_scores = calibration._fit(cfg.calibration, p_val_raw, yva), {}  # noqa: SLF001
        threshold = evaluate.choose_threshold(yva, cal(p_val_raw), cfg.target_precision)
        base_thr = evaluate.choose_threshold(yva, base.predict(Xva), cfg.target_precision)
    p_test = cal(fitted.predict(Xte))
    metrics = evaluate.compute(yte, p_test, threshold)
    p_base = base.predict(Xte)
    base_metrics = evaluate.compute(yte, p_base, base_thr)
    say(f"    test AUC {metrics['auc']:.4f} (baseline {base_metrics['auc']:.4f}), F1 {metrics['f1']:.4f} at "
        f"{threshold:.3f}, calibration {cal.method}")
    with timer.step("cross-validation" + (f" (on the sample of {len(Xtr):,} training rows)" if prep else "")):
        cv = _cv(cfg, Xtr, ytr, _fixed_params(cfg, fitted, params), say)

    importance = fitted.importance()
    sample = np.random.default_rng(cfg.seed).choice(len(Xte), min(len(Xte), 2000), replace=False)
    contributions = fitted.contributions(Xte[sample])
    metadata = {"features": ds.features, "threshold": threshold, "model_type": cfg.model_type, "task": cfg.task,
                "feature_service": ds.summary["feature_service"], "calibration": cal.describe(),
                "importance": [float(v) for v in importance], "label_mode": label_mode,
                # what "usual" means when the inference service explains a score
                "feature_mean": [float(v) for v in Xtr.mean(axis=0, dtype=np.float64)],
                "feature_std": [float(v) for v in Xtr.std(axis=0, dtype=np.float64)],
                "risk_bands": {"high": 0.7, "medium": 0.4}}
    with timer.step("ONNX export and parity"):
        t0 = time.perf_counter()
        onnx_model = export.build(fitted, len(ds.features), cal, metadata)
        export_s = time.perf_counter() - t0
        parity = export.parity(onnx_model, fitted, cal, Xte)
    raw = onnx_model.SerializeToString()
    digest = export.sha256(raw)

    with timer.step("comparing with the champion"):
        champ_metrics, champ_p, champ_imp, champ_note, champ_version, champ_threshold = _champion_view(
            name, ds.features, Xte, yte)
    psi_champ = evaluate.score_psi(champ_p, p_test) if champ_p is not None else None
    overlap = gate.top_overlap(importance, champ_imp) if champ_imp is not None and len(champ_imp) == len(importance) \
        else None
    verdict = gate.evaluate(metrics, None if cfg.model_type == "logistic_regression" else base_metrics, champ_metrics,
                            gate.GateConfig(min_auc=cfg.min_auc, max_ece=cfg.max_ece),
                            psi_vs_champion=psi_champ, importance_overlap=overlap, champion_note=champ_note)
    if not verdict.passed and cfg.force:
        verdict.forced = True
        verdict.note = "forced past the gate with --force: " + "; ".join(verdict.reasons())

    truth_report: dict[str, Any] = {}
    gt_verdict = None
    if tl is not None and truth_df is not None:
        aligned = ground_truth.align(df["event_id"].iloc[sp.test], truth_df)
        truth_report = evaluate.ground_truth_report(aligned, labels.y[sp.test], p_test, threshold)
        # what the training rows showed: the monitor's "new fraud pattern" compares with these
        if prep is not None:  # (every training row, counted on the workers)
            with_fb, n_fraud, scen = prep.seen[mode]
            truth_report["training"] = {"rows_with_feedback": with_fb, "fraud": n_fraud, "scenarios": sorted(scen)}
        else:
            seen = ground_truth.align(df["event_id"].iloc[sp.train], truth_df)
            fraud_seen = seen[seen["is_fraud"].astype("boolean").fillna(False).to_numpy(dtype=bool)]
            truth_report["training"] = {"rows_with_feedback": int(seen["is_fraud"].notna().sum()),
                                        "fraud": len(fraud_seen),
                                        "scenarios": sorted(map(str, fraud_seen["scenario"].unique()))}
    # the ground-truth gate on the matured test rows, against the champion's scores there
    held = tl.known[sp.test] if tl is not None else np.zeros(0, dtype=bool)
    if tl is not None and not held.any():
        verdict = gate.with_ground_truth(verdict, False, True, "no matured rows in the holdout yet")
    if tl is not None and truth_df is not None and held.any():
        champ_flag = champ_p[held] >= champ_threshold if champ_p is not None and champ_threshold is not None else None
        budget = cfg.alert_budget or float(np.mean(champ_flag if champ_flag is not None and champ_flag.any()
                                                   else labels.y[sp.test][held]) or 0.01)
        rows = df.iloc[sp.test[held]]
        days = (rows["event_time"] // feedback.DAY_MS).to_numpy()
        gt_verdict = feedback.gate(tl.y[sp.test][held], p_test[held], champ_p[held] if champ_p is not None else None,
                                   budget, rows["card_id"].to_numpy(), days, min_fraud=cfg.min_feedback_fraud,
                                   seed=cfg.seed, w=tl.w[sp.test][held] if tl.w is not None else None)
        truth_report["gate"] = {"decides": gt_verdict.decides, "passed": gt_verdict.passed,
                                "detail": gt_verdict.detail, **gt_verdict.evidence}
        verdict = gate.with_ground_truth(verdict, gt_verdict.decides, gt_verdict.passed, gt_verdict.detail)
        if not verdict.passed and cfg.force:
            verdict.forced = True
            verdict.note = "forced past the gate with --force: " + "; ".join(verdict.reasons())
        say(f"    ground-truth gate: {gt_verdict.detail}")

    out_dir = cfg.output_dir or Path(tempfile.mkdtemp(prefix="train-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    exp_id = tracking.experiment(cfg.experiment_name, settings)
    result = TrainResult("", cfg.model_type, metrics, base_metrics, threshold, verdict, parity=parity, cv=cv,
                         ground_truth=truth_report, label_summary=label_mode, dataset=ds.summary,
                         champion_metrics=champ_metrics, calibration={**cal.describe(), "brier": cal_scores},
                         onnx_sha256=digest, registered_name=name)
    with mlflow.start_run(experiment_id=exp_id) as run, timer.step("logging to MLflow"):
        result.run_id = run.info.run_id
        mlflow.set_tags({"model_type": cfg.model_type, "task": cfg.task, "gate": verdict.verdict,
                         "feature_service": cfg.feature_service, "label_mode": label_mode, "labels": mode,
                         "cluster": str(cfg.cluster or "in-process")})
        mlflow.log_params({"model_type": cfg.model_type, "split": cfg.split, "test_size": cfg.test_size,
                           "val_size": cfg.val_size, "group_split": cfg.group_split, "fraud_rate": cfg.fraud_rate,
                           "cv_folds": cfg.cv_folds, "search": cfg.search, "calibration": cal.method,
                           "threshold": round(threshold, 6), "downsample": cfg.downsample,
                           "resample": cfg.resample, "seed": cfg.seed,
                           "train_rows": n_train if prep is not None else len(train_idx),
                           **({"label_window_min": cfg.label_window_min} if not fraud else {}),
                           **{f"param_{k}": v for k, v in {**models.get(cfg.model_type).defaults, **params}.items()}})
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_metrics({f"baseline_{k}": v for k, v in base_metrics.items() if np.isfinite(v)})
        mlflow.log_metrics({f"cv_{k}_mean": m for k, (m, _) in cv.items() if np.isfinite(m)})
        mlflow.log_metrics({f"cv_{k}_std": s for k, (_, s) in cv.items() if np.isfinite(s)})
        if labels.names:
            fired = prep.fired if prep is not None else labels.rule_counts()
            mlflow.log_metrics({f"rule_{k}": v for k, v in fired.items()})
        label_rate = rate if prep is not None else float(y[sp.train].mean())
        mlflow.log_metrics({"label_rate": label_rate, "onnx_export_seconds": export_s,
                            **{f"parity_{k}": v for k, v in parity.items()}})
        if truth_report.get("model"):
            mlflow.log_metrics({f"gt_model_{k}": v for k, v in truth_report["model"].items()})
            mlflow.log_metrics({f"gt_rules_{k}": v for k, v in truth_report["rules"].items()})
        roll = evaluate.rolling(df["event_time"].to_numpy()[sp.test], yte, p_test, threshold)
        plots = evaluate.plots(out_dir / "plots", yte, p_test, threshold, ds.features, importance, contributions,
                               Xte[sample], roll)
        for pth in plots:
            mlflow.log_artifact(str(pth), "plots")
        report = skm.classification_report(yte, p_test >= threshold, target_names=["legit", "fraud"], digits=4)
        files = {
            "classification_report.txt": report,
            "gate.json": json.dumps(verdict.to_dict(), indent=2),
            "dataset.json": json.dumps(ds.summary, indent=2),
            "label_rules.json": json.dumps({"mode": labels.mode, "counts": prep.fired if prep is not None
                                            else labels.rule_counts(),
                                            "weights": {r.name: r.weight for r in RULES if r.name in labels.names}},
                                           indent=2),
            "features.json": json.dumps(ds.features),
            "cv.json": json.dumps(cv, indent=2),
            "ground_truth.json": json.dumps(truth_report, indent=2),
            "search_trials.json": json.dumps(trials, indent=2, default=str),
            "calibration.json": json.dumps(result.calibration, indent=2),
            # what the monitor audits: which labels, and the ground-truth evidence
            "run.json": json.dumps({"labels": mode, "label_mode": label_mode, "gate": verdict.verdict,
                                    "ground_truth_gate": truth_report.get("gate")}, indent=2, default=str),
        }
        for fname, text in files.items():
            (out_dir / fname).write_text(text)
            mlflow.log_artifact(str(out_dir / fname), "reports")
        roll.to_csv(out_dir / "rolling_metrics.csv", index=False)
        mlflow.log_artifact(str(out_dir / "rolling_metrics.csv"), "reports")
        ref = drift_reference(df, ds.features, sp.test, p_test, cfg.reference_rows, cfg.seed)
        ref.to_parquet(out_dir / "reference.parquet", index=False)
        mlflow.log_artifact(str(out_dir / "reference.parquet"), "drift")
        onnx_path = out_dir / "model.onnx"
        onnx_path.write_bytes(raw)
        result.onnx_path = onnx_path
        native = save_native(fitted, cfg.model_type, out_dir)
        if native is not None:  # the booster in its own format (never a pickle), for warm starts
            mlflow.log_artifact(str(native), "native")
        if verdict.passed or cfg.force:
            model_uri = tracking.log_onnx(onnx_model, Xte[:5], p_test[:5])
            tags = {"model_type": cfg.model_type, "onnx_sha256": digest, "test_auc": f"{metrics['auc']:.4f}",
                    "test_f1": f"{metrics['f1']:.4f}", "threshold": f"{threshold:.6f}", "gate": verdict.verdict,
                    "run_id": run.info.run_id}
            if verdict.note:
                tags["audit_note"] = verdict.note
            result.version = tracking.register(model_uri, name, tags, raw, settings)
            result.alias = tracking.CHALLENGER
            if cfg.promote:
                reason = "passed the gate" if verdict.passed else verdict.note
                # compare-and-set: only if the champion is still the one the gate judged against
                result.previous_champion = tracking.promote(
                    name, result.version, reason, settings, expected=champ_version,
                    evidence={"labels": mode, "gate": verdict.verdict, "test_auc": round(metrics["auc"], 6),
                              "ground_truth": gt_verdict.detail if gt_verdict else "none"})
                result.alias = tracking.CHAMPION
            card = model_card(name, result, cfg, champ_version)
            (out_dir / "model_card.md").write_text(card)
            mlflow.log_artifact(str(out_dir / "model_card.md"), "reports")
        mlflow.set_tag("registered_version", result.version or "none")
    result.timings = {**timer.times, "total": time.perf_counter() - t_all}
    log.info("tracking at %s", uri)
    return result


def save_native(fitted: models.Fitted, model_type: str, out_dir: Path) -> Path | None:
    if model_type == "xgboost":
        path = out_dir / "booster.json"
        fitted.estimator.save_model(str(path))
        return path
    if model_type == "lightgbm":
        path = out_dir / "booster.txt"
        fitted.estimator.booster_.save_model(str(path))
        return path
    return None


def model_card(name: str, r: TrainResult, cfg: TrainConfig, champion_version: str | None) -> str:
    m, b = r.metrics, r.baseline_metrics
    grouped = f" (grouped by {GROUP_KEY[cfg.task].removesuffix('_id')})" if cfg.group_split else ""
    lines = [
        f"# {name} v{r.version} ({r.model_type})", "",
        f"- alias: **{r.alias}**; previous champion: {r.previous_champion or 'none'}",
        f"- run: `{r.run_id}`; ONNX sha256 `{r.onnx_sha256}`",
        f"- data: {r.dataset.get('rows')} {'transactions' if cfg.task == 'fraud' else 'clicks'} from "
        f"{r.dataset.get('start')} to {r.dataset.get('end')}, "
        f"feature service `{cfg.feature_service}`",
        f"- labels: {r.label_summary}",
        f"- split: {cfg.split}{grouped}, validation {cfg.val_size}, test {cfg.test_size}",
        f"- calibration: {r.calibration.get('method')}; threshold {r.threshold:.4f}", "",
        "| metric | model | LR baseline |", "|---|---|---|",
        *[f"| {k} | {m[k]:.4f} | {b[k]:.4f} |" for k in evaluate.METRIC_NAMES], "",
        f"Gate: **{r.gate.verdict}**" + (f" ({r.gate.note})" if r.gate.note else ""), "",
        *[f"- {'skip' if c.skipped else ('ok' if c.passed else 'FAIL')} {c.name}: {c.detail}" for c in r.gate.checks],
    ]
    if r.ground_truth.get("model"):
        gt = r.ground_truth
        lines += ["", "Ground truth (fraud-feedback) on the test rows:",
                  f"- model recall {gt['model']['recall']:.3f}, precision {gt['model']['precision']:.3f}; "
                  f"rules recall {gt['rules']['recall']:.3f}, precision {gt['rules']['precision']:.3f}"]
    if cfg.task == "fraud":
        lines += ["", "Intended use: scoring card transactions before authorisation with features from "
                  "the `fraud_v1` feature service. Trained on rule labels: it learns the rules' view of fraud."]
    else:
        lines += ["", "Intended use: ranking users' purchase propensity within a session from the "
                  "`personalization_v1` features. Not a fraud model."]
    return "\n".join(lines) + "\n"
