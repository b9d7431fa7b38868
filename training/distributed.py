"""Training past one machine (issue 18): the fraud training set is built a day of the offline
log per task on a Dask cluster (``--cluster local:N`` or ``tcp://host:port``) and the
boosters train with their own Dask interfaces (``xgboost.dask``, ``lightgbm.dask``), so no
process holds the whole training set.

What stays on the workers and what comes back to this process:

- **pass 1 (census):** each day task builds its training rows exactly as
  ``training.batch.day_rows`` (the rows of ``training.dataset.load``), labels them with the
  rules and aligns the ground truth, and returns a few bytes per row: event time, rule
  label, feedback flags. From these this process finds the split cuts (the same rows as the
  in-process time split: a cut is an (event time, event key) pair, the order the in-process
  path sorts by), the counts and the label mode's inputs.
- **pass 2 (fit):** the training rows of the chosen label mode (features as float32, label,
  weight) are built by the tasks again and handed to ``xgboost.dask``/``lightgbm.dask``.
- **pass 3 (evaluation rows):** the validation and test rows, and a uniform sample of the
  training rows (``SAMPLE_ROWS``: the logistic-regression baseline, cross-validation and the
  feature means the service explains with), come back in full. Calibration, threshold, test
  metrics, the ground-truth gate, ONNX export and parity then run unchanged on them.

Not on a cluster (refused with a clear error, see ``refuse``): the personalization task,
``--max-samples``, ``--fraud-rate``, stratified and group splits, ``--downsample``,
``--resample``, hyperparameter search, and the sklearn model types.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import storage
from core.model_inputs import MODEL_FEATURES
from training import batch, feedback, ground_truth, models
from training.dataset import _day, check
from training.errors import DataError, TrainingError
from training.labels import label
from training.splits import Split, _check_sizes

#: training rows sampled back to this process (baseline, CV, feature statistics)
SAMPLE_ROWS = 200_000
#: validation and test rows beyond this many each are sampled uniformly (calibration,
#: threshold and test metrics are then estimates on a uniform sample of the period)
EVAL_ROWS = 1_000_000
#: the columns that come back: ids, model inputs, the rule inputs after the transaction (rule
#: labels), the request categories (drift's data quality) and the label and split flags
_FLAGS = ["y_rule", "has_truth", "truth_fraud", "scenario", "declined", "label_probability", "known", "y_truth", "w",
          "side_rules", "side_truth", "sampled", "evaluated"]
BOOSTERS = ("xgboost", "lightgbm")

Cut = tuple[int, str]  # (event_time, event_key): rows at or after it are on the later side
Counts = dict[str, tuple[int, int, float, float]]  # per mode: rows, positives, weight of negatives, of positives


def refuse(cfg: Any) -> None:
    """A TrainingError naming the first option a cluster run does not support (before any
    service is reached)."""
    why = None
    if cfg.task != "fraud":
        why = "the personalization task trains in-process only"
    elif cfg.model_type not in BOOSTERS:
        why = f"{cfg.model_type} trains in-process only; on a cluster: {', '.join(BOOSTERS)}"
    elif cfg.max_samples is not None:
        why = "--max-samples picks the newest rows of one process's load; on a cluster, use --start/--end"
    elif cfg.fraud_rate is not None:
        why = "--fraud-rate (a global top-R cut) is in-process only; on a cluster, rule labels are 'any rule'"
    elif cfg.split != "time" or cfg.group_split:
        why = "a cluster run splits by time only (no --split stratified, no --group-split)"
    elif cfg.downsample is not None or cfg.resample:
        why = "--downsample and --resample are in-process only"
    elif cfg.search != "none":
        why = "hyperparameter search is in-process only"
    if why:
        raise TrainingError(f"--cluster: {why}")


@dataclass(frozen=True)
class DayTask:
    """One day of the offline log (picklable: everything a worker needs)."""

    root: storage.Root
    day: str
    start_ms: int | None
    end_ms: int | None
    ambiguous: frozenset[str]
    truth: pd.DataFrame | None = None  # event_id, is_fraud, scenario (fraud-feedback)
    decisions: pd.DataFrame | None = None  # event_id, declined, label_probability (this day's)
    now_ms: int = 0
    maturity_ms: int = 0
    cuts: dict[str, tuple[Cut | None, Cut | None]] = field(default_factory=dict)
    sample_frac: float = 0.0
    eval_frac: float = 1.0
    seed: int = 42
    mode: str = "rules"


def _rows(task: DayTask) -> pd.DataFrame:
    """The day's training rows with rule labels and ground-truth flags."""
    df = batch.day_rows(task.root, task.day, task.start_ms, task.end_ms)
    raw = df.attrs.get("raw_rows", 0)
    if df.empty:
        df.attrs.update(raw_rows=raw, ambiguous=0)
        return df
    bad = df["event_id"].isin(task.ambiguous).to_numpy() if task.ambiguous else np.zeros(len(df), dtype=bool)
    df = df[~bad].reset_index(drop=True)
    check(df, MODEL_FEATURES)
    lab = label(df)
    df["y_rule"] = lab.y
    aligned = ground_truth.align(df["event_id"], task.truth)
    df["has_truth"] = aligned["is_fraud"].notna().to_numpy()
    df["truth_fraud"] = aligned["is_fraud"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    df["scenario"] = aligned["scenario"].fillna("").astype(str).to_numpy()
    if task.decisions is not None:
        joined = df[["event_id"]].merge(task.decisions, on="event_id", how="left")
        df["declined"] = joined["declined"].fillna(False).astype(bool).to_numpy()
        df["label_probability"] = joined["label_probability"].fillna(1.0).to_numpy(dtype=np.float64)
    else:
        df["declined"], df["label_probability"] = False, 1.0
    df.attrs.update(raw_rows=raw, ambiguous=int(bad.sum()), fired=lab.rule_counts())
    return df


def _known(df: pd.DataFrame, now_ms: int, maturity_ms: int) -> np.ndarray:
    return feedback.known(df["event_time"].to_numpy(), now_ms, maturity_ms, df["has_truth"].to_numpy(),
                          df["declined"].to_numpy())


def _census(task: DayTask) -> dict[str, Any]:
    df = _rows(task)
    if df.empty:
        return {"day": task.day, "rows": 0, "raw_rows": df.attrs.get("raw_rows", 0)}
    return {"day": task.day, "rows": len(df), "raw_rows": df.attrs["raw_rows"], "ambiguous": df.attrs["ambiguous"],
            "fired": df.attrs["fired"], "too_late": int((df["status"] == "too_late").sum()),
            "cards": df["card_id"].unique(), "event_time": df["event_time"].to_numpy(np.int64),
            "y_rule": df["y_rule"].to_numpy(np.int8), "has_truth": df["has_truth"].to_numpy(),
            "truth_fraud": df["truth_fraud"].to_numpy(), "declined": df["declined"].to_numpy(),
            "label_probability": df["label_probability"].to_numpy(np.float64)}


def _keys_at(args: tuple[DayTask, int, bool]) -> list[str]:
    """The event keys of the rows at one event time (of the known rows, when asked)."""
    task, t, known_only = args
    df = _rows(task)
    if df.empty:
        return []
    at = df["event_time"].to_numpy() == t
    if known_only:
        at &= _known(df, task.now_ms, task.maturity_ms)
    return sorted(df.loc[at, "event_key"].astype(str))


def _sides(df: pd.DataFrame, cuts: tuple[Cut | None, Cut | None], rows: np.ndarray) -> np.ndarray:
    """0 train, 1 validation, 2 test by the (event_time, event_key) cuts; -1 outside ``rows``."""
    t = df["event_time"].to_numpy()
    k = df["event_key"].astype(str).to_numpy()

    def at_or_after(c: Cut | None) -> np.ndarray:
        if c is None:
            return np.zeros(len(df), dtype=bool)
        return (t > c[0]) | ((t == c[0]) & (k >= c[1]))

    side = at_or_after(cuts[0]).astype(np.int8) + at_or_after(cuts[1]).astype(np.int8)
    return np.where(rows, side, -1).astype(np.int8)


def _labelled(task: DayTask) -> pd.DataFrame:
    """The day's rows with ``known``, ``y_truth``, ``w`` and each split's side."""
    df = _rows(task)
    if df.empty:
        return df
    known = _known(df, task.now_ms, task.maturity_ms)
    df["known"] = known
    df["y_truth"] = (df["truth_fraud"] & df["has_truth"]).astype(np.int8)
    df["w"] = 1.0 / np.clip(df["label_probability"].to_numpy(), 1e-6, 1.0)
    df["side_rules"] = _sides(df, task.cuts["rules"], np.ones(len(df), dtype=bool))
    df["side_truth"] = _sides(df, task.cuts["truth"], known) if "truth" in task.cuts else np.int8(-1)
    return df


def _train_mask(df: pd.DataFrame, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Which rows train in a label mode, and their labels (the in-process _labels_and_split)."""
    if mode == "rules":
        return df["side_rules"].to_numpy() == 0, df["y_rule"].to_numpy(np.int8)
    known = df["known"].to_numpy()
    y = np.where(known, df["y_truth"].to_numpy(), df["y_rule"].to_numpy()).astype(np.int8)
    train = df["side_truth"].to_numpy() == 0
    if mode == "combined":
        train = train | ~known
    return train, y


def _train_part(task: DayTask) -> pd.DataFrame:
    """The day's training rows of ``task.mode``: features (float32), ``y``, ``w``."""
    df = _labelled(task)
    if df.empty:
        return _empty_train()
    train, y = _train_mask(df, task.mode)
    out = df.loc[train, list(MODEL_FEATURES)].astype(np.float32).reset_index(drop=True)
    out["y"] = y[train]
    out["w"] = df.loc[train, "w"].to_numpy(np.float64)
    return out


def _empty_train() -> pd.DataFrame:
    out = pd.DataFrame({f: pd.Series(dtype=np.float32) for f in MODEL_FEATURES})
    return out.assign(y=pd.Series(dtype=np.int8), w=pd.Series(dtype=np.float64))


def _uniform(keys: pd.Series, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per event key, the same wherever and however it is split."""
    salt = hashlib.sha256(str(seed).encode()).hexdigest()[:16]
    h = pd.util.hash_pandas_object(keys.astype(str), index=False, hash_key=salt).to_numpy()
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _eval_part(task: DayTask) -> tuple[str, pd.DataFrame, Counts, dict[str, tuple[int, int, set[str]]]]:
    """The day's validation and test rows (of either split) and its sampled training rows;
    per label mode its training rows, positives and their weights; and per mode what the
    ground truth showed on its training rows (rows with feedback, fraud, fraud scenarios)."""
    df = _labelled(task)
    if df.empty:
        return task.day, df, {}, {}
    counts: Counts = {}
    seen: dict[str, tuple[int, int, set[str]]] = {}
    w = df["w"].to_numpy()
    has, fraud = df["has_truth"].to_numpy(), df["truth_fraud"].to_numpy() & df["has_truth"].to_numpy()
    for mode in ("rules", "feedback", "combined") if "truth" in task.cuts else ("rules",):
        train, y = _train_mask(df, mode)
        counts[mode] = (int(train.sum()), int(y[train].sum()), float(w[train & (y == 0)].sum()),
                        float(w[train & (y == 1)].sum()))
        seen[mode] = (int((train & has).sum()), int((train & fraud).sum()),
                      set(df.loc[train & fraud, "scenario"].astype(str)))
    u = _uniform(df["event_key"], task.seed)
    df["sampled"] = u < task.sample_frac
    df["evaluated"] = u < task.eval_frac
    keep = (((df["side_rules"] >= 1) | (df["side_truth"] >= 1)) & df["evaluated"]) | df["sampled"]
    cols = [c for c in _columns() if c in df.columns]
    return task.day, df.loc[keep.to_numpy(), cols].reset_index(drop=True), counts, seen


def _columns() -> list[str]:
    from core.contracts import REQUEST_FIELDS
    from core.rules import RULE_INPUTS

    return ["event_id", "event_key", "card_id", "event_time", *MODEL_FEATURES, *[f"after_{r}" for r in RULE_INPUTS],
            *REQUEST_FIELDS, *_FLAGS]


def _cut(times: np.ndarray, pos: int, known_only: bool, tasks: dict[str, DayTask], place: Any) -> Cut | None:
    """The (event_time, event_key) of the row at ``pos`` in (event_time, event_key) order."""
    if pos >= len(times):
        return None
    t = int(np.partition(times, pos)[pos])
    before = int((times < t).sum())
    task = tasks[_day(t)]
    keys = next(iter(place.results(_keys_at, [(task, t, known_only)])))
    return t, keys[pos - before]


def _cuts(times: np.ndarray, val_size: float, test_size: float, known_only: bool, tasks: dict[str, DayTask],
          place: Any) -> tuple[Cut | None, Cut | None]:
    """splits.split's time split (positions n - n_test - n_val and n - n_test) as cuts."""
    n = len(times)
    n_test, n_val = round(n * test_size), round(n * val_size)
    return (_cut(times, n - n_test - n_val, known_only, tasks, place),
            _cut(times, n - n_test, known_only, tasks, place))


@dataclass
class Prepared:
    """A cluster training set: the rows this process holds and what stays on the workers."""

    frame: pd.DataFrame  # validation + test rows of either split + the sampled training rows
    tasks: list[DayTask]
    summary: dict[str, Any]
    now_ms: int
    #: per label mode: training rows, positives, weight of the negatives, of the positives
    counts: Counts
    truth: feedback.TruthLabels | None = None
    fired: dict[str, int] = field(default_factory=dict)
    #: per label mode, what the ground truth showed on its training rows (all of them)
    seen: dict[str, tuple[int, int, set[str]]] = field(default_factory=dict)
    #: per label mode, the days that hold training rows (lightgbm.dask refuses empty parts)
    train_days: dict[str, list[str]] = field(default_factory=dict)

    def split(self, mode: str) -> tuple[np.ndarray, Split]:
        """The labels of ``frame``'s rows and the split (its training part: the sample)."""
        df = self.frame
        side = df["side_rules" if mode == "rules" else "side_truth"].to_numpy()
        train, y = _train_mask(df, mode)
        ev = df["evaluated"].to_numpy()
        return y, Split(np.flatnonzero(train & df["sampled"].to_numpy()), np.flatnonzero((side == 1) & ev),
                        np.flatnonzero((side == 2) & ev))

    def train_counts(self, mode: str) -> tuple[int, int]:
        n, pos, _, _ = self.counts[mode]
        return n, pos


def prepare(place: Any, root: Path | str | storage.Root, cfg: Any, truth: pd.DataFrame | None,
            scores: pd.DataFrame | None, progress: bool = False) -> Prepared:
    """Pass 1 and pass 3 (module docstring). ``truth``: the fraud feedback as the in-process
    path reads it (None: no ground truth); ``scores``: the pipeline's own scores
    (``ground_truth.stream_scores``: its decisions, with event times, so that each day task
    gets only its own)."""
    _check_sizes(cfg.val_size, cfg.test_size)
    root = storage.root(root)
    todo = batch.days(root, cfg.start_ms, cfg.end_ms)
    if not todo:
        raise DataError(f"no transactions in the offline store ({root / batch.FEATURES}) for that time range: run "
                        "`make up` and let the generator run a few minutes, or backfill with "
                        "`python -m streaming backfill --topic transactions`")
    ambiguous = frozenset(batch.ambiguous_event_ids(root, cfg.start_ms, cfg.end_ms, place))
    by_day: dict[str, pd.DataFrame] = {}
    none = None
    if scores is not None and not scores.empty:
        dec = scores[["event_id", "declined", "label_probability", "event_time"]]
        none = dec.iloc[:0].drop(columns=["event_time"])
        day = pd.to_datetime(dec["event_time"], unit="ms", utc=True).dt.strftime("%Y-%m-%d").to_numpy()
        by_day = {d: g.drop(columns=["event_time"]) for d, g in dec.groupby(day)}
    else:
        scores = None
    tasks = [DayTask(root, d, cfg.start_ms, cfg.end_ms, ambiguous, truth, by_day.get(d, none), 0,
                     cfg.label_maturity_ms, seed=cfg.seed) for d in todo]
    census = [c for c in place.results(_census, tasks, progress=progress, desc="training rows, pass 1 (census)")
              if c["rows"]]
    if not census:
        raise DataError(f"no transactions in the offline store ({root / batch.FEATURES}) for that time range")
    census.sort(key=lambda c: c["day"])
    cat = {k: np.concatenate([c[k] for c in census]) for k in ("event_time", "y_rule", "has_truth", "truth_fraud",
                                                                "declined", "label_probability")}
    now = int(cat["event_time"].max())  # the stream's clock: event time, as in-process
    known = feedback.known(cat["event_time"], now, cfg.label_maturity_ms, cat["has_truth"], cat["declined"])
    tasks = [replace(t, now_ms=now) for t in tasks]
    by_name = {t.day: t for t in tasks}
    cuts: dict[str, tuple[Cut | None, Cut | None]] = {
        "rules": _cuts(cat["event_time"], cfg.val_size, cfg.test_size, False, by_name, place)}
    if truth is not None and known.any():
        cuts["truth"] = _cuts(cat["event_time"][known], cfg.val_size, cfg.test_size, True, by_name, place)
    n = len(cat["event_time"])
    frac = min(1.0, SAMPLE_ROWS / max(1, n))
    eval_frac = min(1.0, EVAL_ROWS / max(1, round(n * cfg.val_size), round(n * cfg.test_size)))
    tasks = [replace(t, cuts=cuts, sample_frac=frac, eval_frac=eval_frac) for t in tasks]
    parts: list[pd.DataFrame] = []
    counts: Counts = {}
    seen: dict[str, tuple[int, int, set[str]]] = {}
    train_days: dict[str, set[str]] = {}
    for day, part, c, s in place.results(_eval_part, tasks, progress=progress,
                                         desc="training rows, pass 2 (validation, test, sample)"):
        if len(part):
            parts.append(part)
        for mode, v in c.items():
            if v[0]:
                train_days.setdefault(mode, set()).add(day)
            a = counts.get(mode, (0, 0, 0.0, 0.0))
            counts[mode] = (a[0] + v[0], a[1] + v[1], a[2] + v[2], a[3] + v[3])
        for mode, (rows, fraud, scen) in s.items():
            b = seen.get(mode, (0, 0, set()))
            seen[mode] = (b[0] + rows, b[1] + fraud, b[2] | scen)
    frame = pd.concat(parts, ignore_index=True).sort_values(["event_time", "event_key"], kind="stable")
    frame = frame.reset_index(drop=True)
    fired: dict[str, int] = {}
    for c in census:
        for k, v in c["fired"].items():
            fired[k] = fired.get(k, 0) + v
    cards = np.unique(np.concatenate([c["cards"] for c in census]))
    t = cat["event_time"]
    summary = {"rows": n, "rows_in_log": int(sum(c["raw_rows"] for c in census)), "cards": len(cards),
               "start": pd.to_datetime(int(t.min()), unit="ms", utc=True).isoformat(),
               "end": pd.to_datetime(int(t.max()), unit="ms", utc=True).isoformat(),
               "too_late_rows": int(sum(c["too_late"] for c in census)),
               "ambiguous_event_id_rows": int(sum(c["ambiguous"] for c in census)),
               "feature_service": cfg.feature_service, "days": len(census), "sampled_train_rows": int(
                   frame["sampled"].sum()), "held_rows": len(frame), "evaluation_sample": round(eval_frac, 6)}
    tl = None
    if truth is not None:
        scenario = np.where(frame["has_truth"], frame["scenario"], "")
        tl = feedback.TruthLabels(
            frame["y_truth"].to_numpy(np.int8), frame["known"].to_numpy(), scenario,
            feedback.summary(cat["event_time"], now, cfg.label_maturity_ms, cat["has_truth"], cat["truth_fraud"],
                             cat["declined"]),
            None if scores is None else frame["w"].to_numpy(np.float64))
    return Prepared(frame, tasks, summary, now, counts, tl, fired, seen,
                    {m: sorted(d) for m, d in train_days.items()})


def _dask_train(place: Any, prep: Prepared, mode: str) -> Any:
    import dask.dataframe as dd

    days = set(prep.train_days.get(mode, ()))
    tasks = [replace(t, mode=mode) for t in prep.tasks if t.day in days]
    if not tasks:
        raise DataError(f"no training rows for labels {mode!r}")
    return dd.from_map(_train_part, tasks, meta=_empty_train(), enforce_metadata=False)


def fit(place: Any, prep: Prepared, mode: str, model_type: str, params: dict[str, Any], seed: int,
        X_val: np.ndarray, y_val: np.ndarray, weighted: bool) -> models.Fitted:  # noqa: N803
    """The booster on the cluster's training rows of ``mode``, with the validation rows of
    this process for early stopping; returned as the in-process model types return it."""
    if place.client is None:
        raise TrainingError("training on Dask needs a cluster (--cluster local:N or tcp://host:port)")
    import dask.dataframe as dd

    ddf = _dask_train(place, prep, mode)
    X, y = ddf[list(MODEL_FEATURES)], ddf["y"]  # noqa: N806
    w = ddf["w"] if weighted else None
    n, pos, wneg, wpos = prep.counts[mode]
    pos_weight = (wneg / max(wpos, 1e-12)) if weighted else (n - pos) / max(1, pos)
    merged = {**models.get(model_type).defaults, **params}
    stop = merged.pop("early_stopping_rounds", 30)
    # (the validation rows as a frame with the training frame's column names)
    Xv = dd.from_pandas(pd.DataFrame(np.asarray(X_val, dtype=np.float32), columns=list(MODEL_FEATURES)),  # noqa: N806
                        npartitions=1)
    yv = dd.from_pandas(pd.Series(np.asarray(y_val, dtype=np.int8), name="y"), npartitions=1)
    if model_type == "xgboost":
        return _fit_xgb(place.client, X, y, w, Xv, yv, merged, stop, pos_weight, seed)
    return _fit_lgbm(place.client, X, y, w, np.asarray(X_val, dtype=np.float32), np.asarray(y_val), merged,
                     pos_weight, seed)


def _fit_xgb(client: Any, X: Any, y: Any, w: Any, Xv: Any, yv: Any, p: dict[str, Any], stop: int,  # noqa: N803
             pos_weight: float, seed: int) -> models.Fitted:
    import xgboost as xgb
    from xgboost import dask as dxgb

    est = dxgb.DaskXGBClassifier(**p, tree_method="hist", scale_pos_weight=pos_weight, random_state=seed,
                                 eval_metric="aucpr", early_stopping_rounds=stop)
    est.client = client
    est.fit(X, y, sample_weight=w, eval_set=[(Xv, yv)], verbose=False)
    booster = est.get_booster()
    best = est.best_iteration + 1 if est.best_iteration is not None else booster.num_boosted_rounds()
    sliced = booster[:best]  # (only the trees early stopping chose)
    sliced.feature_names = None  # f0..fn, as a fit on arrays has them (the ONNX converter wants those)
    local = xgb.XGBClassifier()
    local.load_model(bytearray(sliced.save_raw("ubj")))
    return models._Xgb(local)  # noqa: SLF001


def _fit_lgbm(client: Any, X: Any, y: Any, w: Any, X_val: np.ndarray, y_val: np.ndarray,  # noqa: N803
              p: dict[str, Any], pos_weight: float, seed: int) -> models.Fitted:
    """lightgbm.dask has no early stopping: every tree is grown, then this process scores the
    validation rows tree by tree and keeps the prefix with the best PR-AUC (the first k trees
    of a fit are the k-tree fit), as early stopping would have kept it."""
    import lightgbm as lgb
    from lightgbm import dask as dlgb
    from sklearn.metrics import average_precision_score

    est = dlgb.DaskLGBMClassifier(**p, client=client, scale_pos_weight=pos_weight, random_state=seed, verbose=-1)
    est.fit(X, y, sample_weight=w)
    local = est.to_local()
    booster = local.booster_
    trees = booster.current_iteration()
    best = trees
    if 0 < y_val.sum() < len(y_val):
        margin = np.zeros(len(X_val))
        curve = []
        for k in range(trees):
            margin += booster.predict(X_val, start_iteration=k, num_iteration=1, raw_score=True)
            curve.append(average_precision_score(y_val, margin))
        best = int(np.argmax(curve)) + 1
    local.set_params(n_estimators=best)
    local._Booster = models.float32_thresholds(  # noqa: SLF001
        lgb.Booster(model_str=booster.model_to_string(num_iteration=best)))
    return models._Lgbm(local)  # noqa: SLF001
