"""python drift_check.py: compare recent features and scores with the champion's training
reference, and its performance on the ground truth that has arrived (fraud feedback for
fraud-detector; for purchase-propensity, ``--model purchase-propensity``, the purchases that
followed each scored click in the click stream). Exit 0 when the overall severity is none or
low, 3 when medium or high, 1 on error."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.contracts import REQUEST_FIELDS
from core.settings import StackSettings
from drift import quality, report, stats
from drift.multivariate import HIGH_AUC, MEDIUM_AUC, domain_classifier
from drift.sources import DriftInputError, champion_reference, read_file, recent_purchases, recent_scores

EXIT_OK, EXIT_ERROR, EXIT_DRIFT = 0, 1, 3
FEEDBACK_MARGIN_S = 300.0
NOT_FEATURES = {"event_id", "event_time", "model_version", "card_id", "user_id", "session_id", "score",
                "fraud_probability", "purchase_probability", "scored_at", "is_fraud"}
#: the topic of each task's live scores
SCORES_TOPIC = {"fraud": "scores", "personalization": "propensity-scores"}


def _window(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 900, 15m, 1h, 2d)") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python drift_check.py", description=__doc__)
    p.add_argument("--reference", type=Path, help="parquet/CSV (default: the champion's training reference in MLflow)")
    p.add_argument("--current", type=Path, help="parquet/CSV (default: scores published within --window)")
    p.add_argument("--window", type=_window, default=3600.0, help="recent window for the default current data "
                   "(seconds, or 15m, 1h, 2d; default 1h)")
    p.add_argument("--max-samples", type=int, default=20_000, help="at most this many rows of each side")
    p.add_argument("--significance-level", type=float, default=0.05, help="alpha of the tests (default 0.05)")
    p.add_argument("--correction", choices=["none", "bonferroni", "bh"], default="bh",
                   help="multiple-testing correction over features (default bh: Benjamini-Hochberg)")
    p.add_argument("--wasserstein-threshold", type=float, default=stats.WASSERSTEIN_MATERIAL,
                   help="a continuous feature's shift is material (its severity counts beyond low) from this "
                        "Wasserstein distance in reference standard deviations (default %(default)s)")
    p.add_argument("--no-multivariate", action="store_true",
                   help="skip the domain classifier (multivariate drift) and the per-segment drift")
    p.add_argument("--domain-auc", type=float, default=MEDIUM_AUC,
                   help="the domain classifier's held-out AUC from which multivariate drift is medium, when its "
                        "95%% interval is above 0.5 (default %(default)s; high from %(high)s)".replace(
                            "%(high)s", str(HIGH_AUC)))
    p.add_argument("--js-threshold", type=float, default=stats.JENSEN_SHANNON_MATERIAL,
                   help="a categorical feature's shift is material from this Jensen-Shannon distance of its "
                        "category shares (default %(default)s); a PSI of 0.1 or more is material either way")
    p.add_argument("--features", help="comma-separated features to check (default: every shared column)")
    p.add_argument("--json", type=Path, help="write every number here")
    p.add_argument("--html", type=Path, help="write a self-contained report with plots here")
    p.add_argument("--log-mlflow", action="store_true", help="log the result to MLflow (experiment drift-monitoring)")
    p.add_argument("--model", "--model-name", dest="model_name", default="fraud-detector",
                   help="the registered model: fraud-detector (default) or purchase-propensity; its task (from its "
                        "training run) chooses the scores topic and the ground truth")
    p.add_argument("--scores-topic", help="default: scores (fraud), propensity-scores (purchase propensity)")
    p.add_argument("--clicks-topic", default="clicks",
                   help="purchase propensity: where the purchases that label its scores are (default clicks)")
    p.add_argument("--label-window", type=_window,
                   help="purchase propensity: a scored click is positive when its session purchases within this "
                        "(default: the champion's training window, else 30m); younger scores are not judged")
    p.add_argument("--feedback-topic", default="fraud-feedback",
                   help="fraud feedback to judge recent performance (AUC, recall) against the champion's")
    p.add_argument("--no-performance", action="store_true", help="skip the performance (feedback) check")
    p.add_argument("--alert-budget", type=float, default=0.01,
                   help="share of transactions an alert budget flags (top scores): the estimated recall at it is "
                        "reported beside the recall at the served threshold (default %(default)s)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="for --current files with is_fraud but no decision column: score at or above is flagged")
    p.add_argument("--recall-drop", type=float, default=0.2,
                   help="a recall drop beyond this (on feedback, vs the champion's at training) is medium")
    p.add_argument("--all-hours", action="store_true",
                   help="compare with the whole reference; by default, when the current data covers only some "
                        "hours of the day (a 1 h window), the reference is cut to the same hours of day and "
                        "weekday/weekend, so that the daily cycle is not reported as drift")
    p.add_argument("--seed", type=int, default=0, help="sampling seed for --max-samples")
    p.add_argument("--verbose", "-v", action="store_true")
    return p


def _sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return df.sample(n, random_state=seed) if len(df) > n else df


def check(args: argparse.Namespace, settings: StackSettings) -> dict[str, Any]:
    if not 0 < args.significance_level < 1:
        raise DriftInputError(f"--significance-level must be in (0, 1), got {args.significance_level}")
    for flag, value in (("--wasserstein-threshold", args.wasserstein_threshold), ("--js-threshold", args.js_threshold)):
        if not value > 0:
            raise DriftInputError(f"{flag} must be above 0, got {value}")
    if not 0 < args.alert_budget <= 1:
        raise DriftInputError(f"--alert-budget must be in (0, 1], got {args.alert_budget}")
    if not 0.5 < args.domain_auc < HIGH_AUC:
        raise DriftInputError(f"--domain-auc must be in (0.5, {HIGH_AUC}), got {args.domain_auc}")
    if args.max_samples < 20:
        raise DriftInputError(f"--max-samples must be at least 20, got {args.max_samples}")
    champion_run = None
    if args.reference:
        ref, ref_source = read_file(args.reference), str(args.reference)
    else:
        ref, ref_source, champion_run = champion_reference(settings, args.model_name)
    task = _task(args.model_name, champion_run)
    topic = args.scores_topic or SCORES_TOPIC[task]
    if args.current:
        cur, cur_source = read_file(args.current), str(args.current)
    else:
        cur = recent_scores(settings, topic, args.window, task=task)
        cur_source = f"{topic} topic, last {args.window:.0f} s"
        if cur.attrs.get("invalid_records"):  # skipped, never a crash: but said
            cur_source += f" ({cur.attrs['invalid_records']} records breaking the scores contract skipped)"
    if ref.empty:
        raise DriftInputError(f"the reference ({ref_source}) is empty")
    if cur.empty:
        raise DriftInputError(f"the current data ({cur_source}) is empty")
    if args.no_performance:
        perf = None
    elif task == "personalization":
        perf = _purchase_performance(args, settings, cur, champion_run)
    else:
        perf = _performance(args, settings, cur, champion_run)
    all_hours = ref
    if not args.all_hours:
        ref, ref_source = same_hours(ref, cur, ref_source)
    ref, cur = _sample(ref, args.max_samples, args.seed), _sample(cur, args.max_samples, args.seed)
    numeric = {c for c in ref.columns if pd.api.types.is_numeric_dtype(ref[c])} - NOT_FEATURES
    shared = [c for c in ref.columns if c in numeric and c in cur.columns]
    if args.features:
        wanted = [f.strip() for f in args.features.split(",") if f.strip()]
        missing = [f for f in wanted if f not in ref.columns or f not in cur.columns]
        if missing:
            raise DriftInputError(f"mismatched columns: {', '.join(missing)} not in both reference and current")
        shared = wanted
    if not shared:
        raise DriftInputError(f"mismatched columns: reference and current share no feature column "
                              f"(reference: {', '.join(map(str, ref.columns[:8]))}...; current: "
                              f"{', '.join(map(str, cur.columns[:8]))}...)")
    to_arrays = lambda df, cols: {c: pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) for c in cols}  # noqa: E731
    # the reference's feature columns the current data lacks or breaks: data quality
    judged = [c for c in ref.columns if c in numeric] if not args.features else shared
    issues = quality.check(ref, cur, judged) + quality.check_categories(ref, cur, list(REQUEST_FIELDS))
    issues.sort(key=lambda i: -stats.SEVERITIES.index(i.severity))
    ref_a, cur_a = to_arrays(ref, shared), to_arrays(cur, shared)
    try:
        rows = stats.compare(shared, ref_a, cur_a, args.significance_level, args.correction,
                             wasserstein_threshold=args.wasserstein_threshold, js_threshold=args.js_threshold)
    except ValueError as exc:
        raise DriftInputError(str(exc)) from None
    prediction, prediction_note = None, None
    version = all_hours.attrs.get("model_version")
    by_champion = cur
    if version is not None and "model_version" in cur.columns:  # another version's scores are not comparable
        by_champion = cur[cur["model_version"].astype(str) == version]
    if "score" in ref.columns and "score" in cur.columns and len(by_champion) < MIN_PREDICTION_ROWS:
        prediction_note = (f"score drift not judged: {len(by_champion)} of the {len(cur)} current scores are by "
                           f"v{version}, the reference's model (at least {MIN_PREDICTION_ROWS} needed)")
    elif "score" in ref.columns and "score" in cur.columns:
        # the reference's scores are out of sample: its test rows, the latest hours of its data.
        # The hour of day is a model input, so scores at other hours are no comparison.
        ps, pc = to_arrays(ref, ["score"]), to_arrays(by_champion, ["score"])
        scored = int(np.isfinite(ps["score"]).sum())
        if scored >= MIN_PREDICTION_ROWS:
            prediction = stats.compare(["score"], ps, pc, args.significance_level,
                                       wasserstein_threshold=args.wasserstein_threshold)[0]
            ref_a["score"], cur_a["score"] = ps["score"], pc["score"]
        else:
            prediction_note = (f"score drift not judged: {scored} out-of-sample reference scores at these hours "
                               f"(at least {MIN_PREDICTION_ROWS} needed; the reference is scored on its test "
                               "period, the latest hours of the training data)")
    status, actions = stats.overall(rows, prediction)
    if prediction_note:
        actions.insert(0, prediction_note)
    domain, segments = None, []
    if not args.no_multivariate and len(ref) >= MIN_DOMAIN_ROWS and len(cur) >= MIN_DOMAIN_ROWS:
        domain = domain_classifier(shared, ref_a, cur_a, seed=args.seed, medium_auc=args.domain_auc)
        segments = segment_drift(ref, cur, shared, args)
        if domain.severity in ("medium", "high"):
            status = max(status, domain.severity, key=stats.SEVERITIES.index)
            actions.insert(0, f"multivariate drift: a classifier tells current from reference rows with AUC "
                              f"{domain.auc:.2f} (95% {domain.low:.2f}-{domain.high:.2f}); it separates most by "
                              f"{', '.join(list(domain.top_features)[:3])}")
        moved = [s["segment"] for s in segments if s["status"] in ("medium", "high")]
        if moved:
            actions.append(f"segments that moved: {', '.join(moved)}")
    quality_status, broken = quality.worst(issues), quality.feed_broken(issues)
    if quality_status in ("medium", "high"):
        status = max(status, quality_status, key=stats.SEVERITIES.index)
        bad = [f"{i.column} ({i.check})" for i in issues if i.severity in ("medium", "high")]
        actions.insert(0, ("data quality: fix the feed before judging drift or retraining on it: " if broken else
                           "data quality: values outside the reference's range (a real shift, or a unit change in "
                           "the feed): ") + f"{', '.join(bad[:6])}{' ...' if len(bad) > 6 else ''}")
    if perf is not None:
        status = max(status, perf["severity"], key=stats.SEVERITIES.index)
        if perf["severity"] in ("medium", "high") and task == "personalization":
            actions.insert(0, f"purchase-propensity performance on the purchases that followed dropped (AUC "
                              f"{perf['auc']:.2f} vs {perf['champion']['auc']:.2f} at training): retrain on recent "
                              "clicks (python training/train.py --task personalization)")
        elif perf["severity"] in ("medium", "high"):
            actions.insert(0, f"performance on fraud feedback dropped (recall {perf['recall']:.2f} vs "
                              f"{perf['champion']['recall']:.2f} at training): retrain with the feedback window")
    result = {
        "status": status, "exit_code": EXIT_DRIFT if status in ("medium", "high") else EXIT_OK,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "significance_level": args.significance_level, "correction": args.correction,
        "thresholds": {"wasserstein": args.wasserstein_threshold, "jensen_shannon": args.js_threshold},
        "reference": {"source": ref_source, "rows": len(ref)}, "current": {"source": cur_source, "rows": len(cur)},
        "features": [r.to_dict() for r in rows], "prediction": prediction.to_dict() if prediction else None,
        "actions": actions, "performance": perf,
        "counts": {s: sum(r.effective == s for r in rows) for s in stats.SEVERITIES},
        "quality": {"status": quality_status, "feed_broken": bool(broken), "issues": [i.to_dict() for i in issues]},
        "multivariate": domain.to_dict() if domain else None,
        "segments": segments,
    }
    result["_arrays"] = (ref_a, cur_a)
    return result


#: fewest rows on each side for the domain classifier and for a segment
MIN_DOMAIN_ROWS = 200
#: a segment's statistics on at most this many rows a side (a sample: material shifts are
#: judged by effect size, which needs no more)
MAX_SEGMENT_ROWS = 20_000
#: the segments judged on their own: by channel and by MCC risk group (from the model's flags)
SEGMENTS: dict[str, Any] = {
    "channel=online": lambda df: df["channel_online"] == 1,
    "channel=atm": lambda df: df["channel_atm"] == 1,
    "channel=pos": lambda df: (df["channel_online"] == 0) & (df["channel_atm"] == 0),
    "mcc_risk=high": lambda df: df["mcc_high_risk"] == 1,
    "mcc_risk=normal": lambda df: df["mcc_high_risk"] == 0,
}


def segment_drift(ref: pd.DataFrame, cur: pd.DataFrame, shared: list[str], args: argparse.Namespace
                  ) -> list[dict[str, Any]]:
    """The feature statistics within each segment (channel, MCC risk group) with at least
    ``MIN_DOMAIN_ROWS`` rows on both sides: its status and the features that moved in it. A
    shift of a small segment can hide in the whole. Reported, not added to the overall status
    (five more looks at the same data would raise its false alarms)."""
    out = []
    rng = np.random.default_rng(args.seed)
    for name, pick in SEGMENTS.items():
        try:
            at_r, at_c = np.flatnonzero(pick(ref).to_numpy(bool)), np.flatnonzero(pick(cur).to_numpy(bool))
        except KeyError:  # (the flags are not columns of this model)
            continue
        n_r, n_c = len(at_r), len(at_c)
        if n_r < MIN_DOMAIN_ROWS or n_c < MIN_DOMAIN_ROWS:
            continue
        # (sampled before anything is copied)
        r, c = (df.iloc[np.sort(rng.choice(at, MAX_SEGMENT_ROWS, replace=False)) if len(at) > MAX_SEGMENT_ROWS
                        else at] for df, at in ((ref, at_r), (cur, at_c)))
        ra, ca = ({f: pd.to_numeric(df[f], errors="coerce").to_numpy(dtype=float) for f in shared} for df in (r, c))
        # (a feature with no values on a side in this segment is not judged in it)
        cols = [f for f in shared if np.isfinite(ra[f]).any() and np.isfinite(ca[f]).any()]
        try:
            rows = stats.compare(cols, ra, ca, args.significance_level, args.correction,
                                 wasserstein_threshold=args.wasserstein_threshold, js_threshold=args.js_threshold)
        except ValueError:  # a feature with no values in the segment
            continue
        status, _ = stats.overall(rows, None)
        out.append({"segment": name, "rows_reference": n_r, "rows_current": n_c, "status": status,
                    "drifted": [x.feature for x in rows if x.effective in ("medium", "high")]})
    return out


#: fewest reference rows left after cutting it to the current hours, else the whole reference
MIN_SAME_HOURS_ROWS = 200
#: fewest scores on each side (current by the reference's model version; out-of-sample
#: reference scores at the current hours) to judge score drift
MIN_PREDICTION_ROWS = 100


def same_hours(ref: pd.DataFrame, cur: pd.DataFrame, ref_source: str) -> tuple[pd.DataFrame, str]:
    """The reference drawn at the current data's (hour of day, weekend) mix, when the current
    data has fewer than all 24 hours: traffic follows a daily and weekly cycle (amounts,
    channels, velocity), so a one-hour window compared with a whole day's reference always
    "drifts" in hour_of_day and in whatever follows the clock. Each (hour, weekend) cell of the
    reference gives rows in the proportion the current data has it (as many as the scarcest
    cell allows, without replacement). Returns the reference and its description; the whole
    reference when the current data covers every hour or too few rows would be left."""
    if "hour_of_day" not in ref or "hour_of_day" not in cur:
        return ref, ref_source
    hours = pd.to_numeric(cur["hour_of_day"], errors="coerce").dropna().astype(int)
    if hours.nunique() >= 24 or hours.empty:
        return ref, ref_source
    keys = ["hour_of_day"] + (["is_weekend"] if "is_weekend" in ref and "is_weekend" in cur else [])
    as_int = lambda df: [tuple(r) for r in df[keys].apply(pd.to_numeric, errors="coerce")  # noqa: E731
                         .fillna(-1).astype(int).to_numpy().tolist()]
    wanted = pd.Series(as_int(cur)).value_counts(normalize=True)
    cells: dict[tuple, list[int]] = {}
    for i, key in enumerate(as_int(ref)):
        cells.setdefault(key, []).append(i)
    size = min(len(cells.get(key, ())) / share for key, share in wanted.items())
    shown = ", ".join(f"{h:02d}h" for h in sorted(set(hours)))
    if size < min(MIN_SAME_HOURS_ROWS, len(ref)):
        return ref, (f"{ref_source} (all hours: only {int(size)} reference rows at the current hours {shown}; "
                     "hour_of_day drifts by construction)")
    rng = np.random.default_rng(0)
    picked = np.sort(np.concatenate([rng.choice(cells[key], min(len(cells[key]), round(size * share)), replace=False)
                                     for key, share in wanted.items()]))
    return ref.iloc[picked], (f"{ref_source} at the same hours of day ({shown} UTC"
                              f"{', same weekday/weekend' if len(keys) > 1 else ''}, in the current mix)")


def _task(model_name: str, run_id: str | None) -> str:
    """The model's task: its training run's ``task`` tag (fraud for older runs), or from the
    name when there is no run (--reference PATH)."""
    if run_id is not None:
        from mlflow import MlflowClient

        return str(MlflowClient().get_run(run_id).data.tags.get("task", "fraud"))
    return "personalization" if model_name == "purchase-propensity" else "fraud"


def _purchase_performance(args: argparse.Namespace, settings: StackSettings, cur: pd.DataFrame,
                          champion_run: str | None) -> dict[str, Any] | None:
    """Purchase propensity on real ground truth: each scored click older than the label
    window is positive when its session purchased within the window after it (the clicks
    topic, or an ``is_purchase_label`` column of a --current file)."""
    from drift.performance import performance, purchase_labels, run_metrics

    if "score" not in cur:
        return None
    champion, window_ms, threshold = None, 30 * 60_000, args.threshold
    if champion_run:
        from mlflow import MlflowClient

        champion, params = run_metrics(champion_run, MlflowClient())
        window_ms = int(float(params.get("label_window_min", 30)) * 60_000)
        threshold = float(params.get("threshold", threshold))
    if args.label_window is not None:
        window_ms = int(args.label_window * 1000)
    scores = cur.reset_index(drop=True).assign(event_id=lambda d: [f"row-{i}" for i in range(len(d))])
    if args.current:
        if "is_purchase_label" not in cur:
            return None
        truth = pd.DataFrame({"event_id": scores["event_id"], "is_fraud": cur["is_purchase_label"].astype(bool),
                              "scenario": "purchase"})
    else:
        if not {"user_id", "session_id", "event_time"} <= set(cur.columns):
            return None
        since = int(cur["event_time"].min()) - int(FEEDBACK_MARGIN_S * 1000)
        purchases = recent_purchases(settings, args.clicks_topic, since)
        truth = purchase_labels(scores, purchases, window_ms, int(time.time() * 1000))
    out = performance(scores.drop(columns=["decision"], errors="ignore"), truth, champion,
                      recall_drop=args.recall_drop, threshold=threshold, positive="purchase")
    out.update(label="the purchases that followed", positive="purchases", label_window_ms=window_ms)
    return out


def _performance(args: argparse.Namespace, settings: StackSettings, cur: pd.DataFrame, champion_run: str | None
                 ) -> dict[str, Any] | None:
    """AUC and recall on the feedback that has arrived for the current rows: from the
    ``is_fraud`` column of a --current file, or joined from --feedback-topic for live scores."""
    from drift.performance import champion_metrics, performance

    if "score" not in cur:
        return None
    champion, labels = None, None
    if champion_run:
        from mlflow import MlflowClient

        client = MlflowClient()
        champion = champion_metrics(champion_run, client)
        labels = client.get_run(champion_run).data.tags.get("labels")
    if args.current:
        if "is_fraud" not in cur or "event_id" not in cur:
            return None
        truth = cur[["event_id", "is_fraud"]].assign(
            scenario=cur["scenario"] if "scenario" in cur else "unknown").dropna(subset=["is_fraud"])
        scores = cur.drop(columns=[c for c in ("is_fraud", "scenario") if c in cur])
    else:
        from training import ground_truth

        # feedback for a score in the window is published after it was scored: read only the
        # window (and a margin) instead of the whole topic on every check
        since = int((time.time() - args.window - FEEDBACK_MARGIN_S) * 1000)
        truth, scores = ground_truth.read(settings, args.feedback_topic, since), cur
    out = performance(scores, truth, champion, recall_drop=args.recall_drop, threshold=args.threshold,
                      budget=args.alert_budget)
    if labels == "rules" and out.get("estimated"):
        # its probabilities are calibrated on what the rules call fraud, not on fraud
        out["estimated"]["note"] = ("the champion was trained and calibrated on rule labels: the estimate is of "
                                    "what the rules call fraud, not of real fraud (measured: 0.99 estimated vs 0.46 "
                                    "realized recall in tests/e2e/test_continuous_loop.py)")
    return out


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if not args.verbose:
        warnings.filterwarnings("ignore")
    from training.errors import TrainingError

    try:
        result = check(args, StackSettings())
    except (DriftInputError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    ref_a, cur_a = result.pop("_arrays")
    rows = [stats.FeatureDrift(**f) for f in result["features"]]
    if result["prediction"]:
        rows.append(stats.FeatureDrift(**{**result["prediction"], "feature": "score (prediction)"}))
    report.table(rows, result["status"], result["actions"],
                 f"drift: {result['current']['source']} vs {result['reference']['source']}", result["performance"],
                 result["quality"], result["multivariate"], result["segments"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.html:
        page_rows = dict(result)
        if result["prediction"]:
            page_rows["features"] = [*result["features"], result["prediction"]]
        args.html.write_text(report.html_page(page_rows, ref_a, cur_a))
    if args.log_mlflow:
        try:
            _log_mlflow(result, args)
        except TrainingError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
    return int(result["exit_code"])


def _log_mlflow(result: dict[str, Any], args: argparse.Namespace) -> None:
    import tempfile

    import mlflow

    from training import tracking

    settings = StackSettings()
    tracking.connect(settings, lambda _m: None)
    with mlflow.start_run(experiment_id=tracking.experiment("drift-monitoring", settings)):
        mlflow.set_tags({"status": result["status"], "reference": result["reference"]["source"]})
        mlflow.log_metrics({f"psi_{f['feature']}": f["psi"] for f in result["features"]})
        mlflow.log_metrics({f"severity_{s}": n for s, n in result["counts"].items()})
        if result["prediction"]:
            mlflow.log_metric("psi_score", result["prediction"]["psi"])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "drift.json"
            path.write_text(json.dumps(result, indent=2))
            mlflow.log_artifact(str(path))
            if args.html and args.html.exists():
                mlflow.log_artifact(str(args.html))


def main() -> None:
    from core.cli_exit import exit_now

    exit_now(run(sys.argv[1:]))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
