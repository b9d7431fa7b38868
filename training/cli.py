"""``python -m training {train,evaluate,promote,history,compare,score}``; ``python
training/train.py`` is ``train``. Errors print one line and exit 1; a model the gate
refuses exits 4 (its run is still logged)."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import cluster
from core.durations import duration_ms
from core.settings import StackSettings

EXIT_ERROR, EXIT_GATE_REFUSED = 1, 4


def _time_ms(text: str) -> int:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r} (e.g. 2026-11-23 or 2026-11-23T10:00)"
                                         ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _duration_ms(text: str) -> int:
    """90s, 30m, 12h, 3d, or plain seconds."""
    try:
        return duration_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> float:
    v = float(text)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return v


def add_train_args(p: argparse.ArgumentParser) -> None:
    from training.models import MODEL_TYPES

    g = p.add_argument_group("model")
    g.add_argument("--model-type", default="xgboost", choices=list(MODEL_TYPES), help="model family (default xgboost)")
    g.add_argument("--task", default="fraud", choices=["fraud", "personalization"],
                   help="fraud (registered as fraud-detector) or personalization (purchase-propensity)")
    g.add_argument("--config", type=Path, help="YAML with params: and search_spaces: per model type")
    g.add_argument("--search", default="none", choices=["none", "grid", "random", "optuna"],
                   help="hyperparameter search on the validation set (PR-AUC)")
    g.add_argument("--n-trials", type=int, default=10, help="trials for random/optuna search (default 10)")
    g.add_argument("--calibration", default="auto", choices=["auto", "isotonic", "sigmoid", "none"],
                   help="probability calibration; auto picks by Brier score on validation")
    g.add_argument("--target-precision", type=_fraction,
                   help="pick the threshold reaching this precision instead of the best F1")
    g.add_argument("--resample", action="store_true", help="SMOTETomek on the training set (sklearn models)")
    g.add_argument("--monotone", default="", help="comma-separated features the boosters keep monotone increasing")
    g.add_argument("--seed", type=int, default=42)
    d = p.add_argument_group("data")
    d.add_argument("--feature-service", default="fraud_v1", help="Feast feature service (default fraud_v1)")
    d.add_argument("--start", type=_time_ms, help="first event time (ISO, UTC)")
    d.add_argument("--end", type=_time_ms, help="end of the range (ISO, UTC, exclusive)")
    d.add_argument("--max-samples", type=int, help="use the most recent N transactions")
    d.add_argument("--fraud-rate", type=_fraction,
                   help="label the top R fraction by rule score instead of 'any rule fires'")
    d.add_argument("--labels", default="auto", choices=["auto", "rules", "feedback", "combined"],
                   help="rules (the cold start), feedback (matured ground truth from fraud-feedback), combined "
                        "(ground truth where matured, rule labels on younger rows), auto (default: rules until "
                        "--min-feedback-fraud matured fraud cases exist, then the better of feedback and combined "
                        "on the validation rows' ground truth)")
    d.add_argument("--label-maturity", type=_duration_ms, default=120_000,
                   help="a transaction without feedback counts as legit only once this old, e.g. 90s, 30m, 3d "
                        "(default 120s: twice the generator's default feedback delay); younger ones are left out")
    d.add_argument("--min-feedback-fraud", type=int, default=50,
                   help="matured fraud cases before ground truth trains (auto) and decides the gate (default 50)")
    d.add_argument("--alert-budget", type=_fraction,
                   help="share of traffic the team can review, for the ground-truth gate's recall and precision "
                        "(default: the champion's current flag rate)")
    d.add_argument("--scores-topic", default="scores",
                   help="the pipeline's scores, read for its decisions: a declined transaction gets no chargeback, "
                        "so it stays unlabelled however old (default scores; '' for none)")
    d.add_argument("--label-window-min", type=int, default=30,
                   help="personalization: positive when the session purchases within N minutes (default 30)")
    d.add_argument("--split", default="time", choices=["time", "stratified"], help="split method (default time)")
    d.add_argument("--test-size", type=_fraction, default=0.1)
    d.add_argument("--val-size", type=_fraction, default=0.1)
    d.add_argument("--group-split", action="store_true",
                   help="keep every card (fraud) or user (personalization) on one side of each split")
    d.add_argument("--cluster", help="where the fraud training set is built and xgboost/lightgbm train: in-process, "
                   "local:N (a local Dask cluster) or tcp://host:port (a Dask scheduler), a day of the offline log "
                   "per task; default STACK_CLUSTER (in-process)")
    d.add_argument("--cv-folds", type=int, default=3, help="stratified k-fold CV on the training rows (0: off)")
    d.add_argument("--downsample", type=float, help="keep N negatives per positive for training (evaluation untouched)")
    d.add_argument("--no-ground-truth", action="store_true", help="skip the fraud-feedback evaluation")
    d.add_argument("--feedback-topic", default="fraud-feedback",
                   help="Kafka topic of the delayed ground truth for that evaluation (default fraud-feedback)")
    r = p.add_argument_group("registry")
    r.add_argument("--experiment-name", help="default fraud-detection (purchase-propensity for personalization)")
    r.add_argument("--registered-name", help="registered model (default fraud-detector)")
    r.add_argument("--force", action="store_true", help="register and promote even if the gate fails (audited)")
    r.add_argument("--no-promote", action="store_true", help="register as challenger only")
    r.add_argument("--min-auc", type=float, default=0.75, help="gate: minimum test AUC")
    r.add_argument("--max-ece", type=float, default=0.05, help="gate: maximum expected calibration error")
    r.add_argument("--min-positives", type=int, default=20,
                   help="refuse to train with fewer positive labels in the training split (default 20)")
    r.add_argument("--output-dir", type=Path, help="keep plots, reports and model.onnx here")
    p.add_argument("--verbose", "-v", action="store_true")


def config_from(args: argparse.Namespace):  # -> TrainConfig
    from training.config import DEFAULT_SPACES, TrainConfig, load_yaml

    params, spaces = {}, dict(DEFAULT_SPACES)
    if args.config:
        raw = load_yaml(args.config)
        params = (raw.get("params") or {}).get(args.model_type, {})
        spaces.update(raw.get("search_spaces") or {})
    return TrainConfig(
        model_type=args.model_type, task=args.task,
        experiment_name=args.experiment_name or ("fraud-detection" if args.task == "fraud" else "purchase-propensity"),
        feature_service=args.feature_service, start_ms=args.start, end_ms=args.end, max_samples=args.max_samples,
        fraud_rate=args.fraud_rate, split=args.split, test_size=args.test_size, val_size=args.val_size,
        group_split=args.group_split, label_window_min=args.label_window_min, cv_folds=args.cv_folds,
        search=args.search, n_trials=args.n_trials,
        params=params, spaces=spaces, calibration=args.calibration, target_precision=args.target_precision,
        downsample=args.downsample, resample=args.resample, registered_name=args.registered_name,
        monotone=[f for f in args.monotone.split(",") if f], force=args.force, promote=not args.no_promote,
        ground_truth=not args.no_ground_truth, feedback_topic=args.feedback_topic, seed=args.seed,
        min_auc=args.min_auc, max_ece=args.max_ece, labels=args.labels, label_maturity_ms=args.label_maturity,
        min_feedback_fraud=args.min_feedback_fraud, alert_budget=args.alert_budget, scores_topic=args.scores_topic,
        output_dir=args.output_dir, verbose=args.verbose, min_positives=args.min_positives,
        cluster=getattr(args, "cluster", None))


def summary(r) -> None:  # r: TrainResult
    from rich.console import Console
    from rich.table import Table

    c = Console()
    t = Table(title=f"{r.registered_name} ({r.model_type}): test metrics", show_lines=False)
    t.add_column("metric")
    t.add_column("model", justify="right")
    t.add_column("LR baseline", justify="right")
    t.add_column("champion", justify="right")
    t.add_column(f"CV mean ± std ({len(r.cv) and 'k-fold'})", justify="right")
    for k in r.metrics:
        champ = f"{r.champion_metrics[k]:.4f}" if r.champion_metrics else "-"
        cv = f"{r.cv[k][0]:.4f} ± {r.cv[k][1]:.4f}" if k in r.cv else "-"
        t.add_row(k, f"{r.metrics[k]:.4f}", f"{r.baseline_metrics[k]:.4f}", champ, cv)
    c.print(t)
    uplift = r.metrics["auc"] - r.baseline_metrics["auc"]
    c.print(f"uplift over the baseline: AUC {uplift:+.4f}, PR-AUC "
            f"{r.metrics['pr_auc'] - r.baseline_metrics['pr_auc']:+.4f}")
    c.print(f"labels: {r.label_summary}")
    gt = r.ground_truth
    if gt.get("model"):
        c.print(f"ground truth ({gt['rows_with_feedback']:,} test rows with feedback, {gt['fraud']} fraud): "
                f"model recall {gt['model']['recall']:.3f} precision {gt['model']['precision']:.3f}"
                f"{' AUC {:.3f}'.format(gt['model']['auc']) if 'auc' in gt['model'] else ''}; rules recall "
                f"{gt['rules']['recall']:.3f} precision {gt['rules']['precision']:.3f}")
        for s, v in gt["per_scenario"].items():
            c.print(f"  {s:<22} {v['fraud']:>5} fraud  model recall {v['model_recall']:.2f}  "
                    f"rules recall {v['rules_recall']:.2f}")
    c.print(f"threshold {r.threshold:.4f}, calibration {r.calibration.get('method')}, ONNX parity "
            f"{r.parity.get('model', 0):.1e} (model) {r.parity.get('calibration', 0):.1e} (calibration)")
    colour = "green" if r.gate.passed else "red"
    c.print(f"gate: [{colour}]{r.gate.verdict}[/{colour}]")
    for ch in r.gate.checks:
        mark = "skip" if ch.skipped else ("ok" if ch.passed else "FAIL")
        c.print(f"  {mark:<4} {ch.name}: {ch.detail}")
    if r.version:
        prev = f" (was v{r.previous_champion})" if r.previous_champion else ""
        c.print(f"registered [bold]{r.registered_name} v{r.version}[/bold], alias {r.alias}{prev}")
    else:
        c.print("not registered (the gate refused it; --force overrides with an audit note)")
    c.print(f"run {r.run_id}; ONNX {r.onnx_path} sha256 {r.onnx_sha256[:16]}...; {r.timings.get('total', 0):.1f} s")


def cmd_train(args: argparse.Namespace, settings: StackSettings) -> int:
    from training.pipeline import train

    cfg = config_from(args)
    if cfg.cluster is None and settings.cluster != cluster.IN_PROCESS:
        cfg = cfg.model_copy(update={"cluster": settings.cluster})
    result = train(settings, cfg, say=print)
    summary(result)
    return 0 if result.gate.passed or args.force else EXIT_GATE_REFUSED


def cmd_history(args: argparse.Namespace, settings: StackSettings) -> int:
    from rich.console import Console
    from rich.table import Table

    from training import tracking

    tracking.connect(settings, print)
    rows = tracking.history(args.name)
    if not rows:
        print(f"no versions of {args.name} registered yet; train one with python training/train.py")
        return 0
    t = Table(title=args.name)
    for col in ("version", "aliases", "model_type", "auc", "f1", "gate", "created", "run_id"):
        t.add_column(col)
    for r in rows:
        created = datetime.fromtimestamp(r["created"] / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
        t.add_row(r["version"], r["aliases"], r["model_type"], r["auc"], r["f1"], r["gate"], created, r["run_id"][:8])
    Console().print(t)
    return 0


def cmd_promote(args: argparse.Namespace, settings: StackSettings) -> int:
    from training import tracking
    from training.errors import TrainingError

    tracking.connect(settings, print)
    mv = tracking.load(args.name, None, args.version)
    if mv is None:
        raise TrainingError(f"{args.name} has no version {args.version}")
    prev = tracking.promote(args.name, args.version, args.reason or "promoted by hand", settings)
    print(f"{args.name} v{args.version} is champion (was {('v' + prev) if prev else 'none'})")
    return 0


def _load_eval_data(settings: StackSettings, args: argparse.Namespace):
    from training.dataset import load
    from training.labels import label

    ds = load(settings, start_ms=args.start, end_ms=args.end, max_samples=args.max_samples)
    return ds, label(ds.frame, args.fraud_rate)


def cmd_evaluate(args: argparse.Namespace, settings: StackSettings) -> int:
    """Score a registered version on (a range of) the offline data with its own threshold."""
    from training import evaluate, export, ground_truth, tracking
    from training.errors import TrainingError

    tracking.connect(settings, print)
    mv = tracking.load(args.name, None if args.version else args.alias, args.version)
    if mv is None:
        raise TrainingError(f"{args.name}@{args.version or args.alias} not found")
    ds, labels = _load_eval_data(settings, args)
    if mv.features != ds.features:
        raise TrainingError(f"{args.name} v{mv.version} was trained on other features")
    p = export.score(export.session(mv.onnx), ds.X)
    m = evaluate.compute(labels.y, p, mv.threshold)
    print(f"{args.name} v{mv.version} on {len(p):,} transactions: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))
    truth = ground_truth.read(settings)
    if truth is not None:
        gt = evaluate.ground_truth_report(ground_truth.align(ds.frame["event_id"], truth), labels.y, p, mv.threshold)
        if gt.get("model"):
            print(f"ground truth: model recall {gt['model']['recall']:.3f} precision {gt['model']['precision']:.3f}; "
                  f"rules recall {gt['rules']['recall']:.3f} precision {gt['rules']['precision']:.3f}")
    return 0


def cmd_compare(args: argparse.Namespace, settings: StackSettings) -> int:
    """Two versions (default champion vs challenger) on the same data."""
    from rich.console import Console
    from rich.table import Table

    from training import evaluate, export, tracking
    from training.errors import TrainingError

    tracking.connect(settings, print)
    if args.live:
        return _compare_live(args, settings)
    sides = []
    for ref in (args.a, args.b):
        mv = tracking.load(args.name, None, ref) if ref.isdigit() else tracking.load(args.name, ref)
        if mv is None:
            raise TrainingError(f"{args.name}@{ref} not found")
        sides.append(mv)
    ds, labels = _load_eval_data(settings, args)
    t = Table(title=f"{args.name}: {len(ds.frame):,} transactions")
    t.add_column("metric")
    scored = []
    for mv in sides:
        t.add_column(f"v{mv.version} ({mv.alias or 'version'})", justify="right")
        if mv.features != ds.features:
            raise TrainingError(f"v{mv.version} was trained on other features")
        p = export.score(export.session(mv.onnx), ds.X)
        scored.append(evaluate.compute(labels.y, p, mv.threshold))
    for k in scored[0]:
        t.add_row(k, *(f"{s[k]:.4f}" for s in scored))
    Console().print(t)
    return 0


def _compare_live(args: argparse.Namespace, settings: StackSettings) -> int:
    import json

    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from training import ground_truth, live, tracking
    from training.errors import TrainingError

    truth = ground_truth.read(settings, args.feedback_topic)
    scores = ground_truth.stream_scores(settings, args.scores_topic)
    rep = live.report(scores if scores is not None else pd.DataFrame(columns=["p"]), truth, args.label_maturity,
                      args.alert_budget)
    if getattr(args, "json", None):
        print(json.dumps(rep, indent=2, default=str))
    if rep.get("note"):
        raise TrainingError(f"live comparison: {rep['note']} ({rep.get('rows', 0):,} scores, topic "
                            f"{args.scores_topic})")
    t = Table(title=f"{args.name} on live traffic: {rep['matured_rows']:,} matured rows, {rep['fraud']} fraud, "
                    f"alert budget {rep['budget']:.2%}")
    for col in ("model", "rows", "fraud", "recall", "precision"):
        t.add_column(col, justify="right")
    for v, m in rep["by_version"].items():
        t.add_row(f"v{v} (served)", f"{m['rows']:,}", str(m["fraud"]), f"{m.get('recall', float('nan')):.3f}",
                  f"{m.get('precision', float('nan')):.3f}")
    ch = rep.get("challenger")
    if ch:
        t.add_row(f"v{ch['version']} (shadow)", f"{ch['rows']:,}", str(ch.get("fraud", "")),
                  f"{ch.get('recall', float('nan')):.3f}", f"{ch.get('precision', float('nan')):.3f}")
    Console().print(t)
    if ch:
        print(f"challenger v{ch['version']}: {ch['detail']}")
        if args.promote_if_better and ch["wins"]:
            prev = tracking.promote(args.name, ch["version"], "won on live matured ground truth", settings,
                                    expected=rep["champion"]["version"],
                                    evidence={"labels": "live matured feedback", "ground_truth": ch["detail"]})
            print(f"{args.name} v{ch['version']} is champion (was v{prev})")
    else:
        print("no shadow challenger scores on live traffic")
    return 0


def safe_url(url: str) -> str:
    """A database URL fit to print: its password masked."""
    import sqlalchemy as sa

    return sa.engine.make_url(url).render_as_string(hide_password=True)


def cmd_score(args: argparse.Namespace, settings: StackSettings) -> int:
    """Batch scores with tiers into a database (SQLite file by default): fraud scores of the
    logged transactions, or (--task personalization) purchase propensities of the logged clicks."""
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa
    from tqdm import tqdm

    from training import batch, export, tracking
    from training.dataset import load, load_clicks
    from training.errors import TrainingError

    fraud = args.task == "fraud"
    name = args.name or tracking.REGISTERED[args.task]
    table = args.table or ("fraud_scores" if fraud else "propensity_scores")
    where = cluster.parse(args.cluster or settings.cluster)
    if (where.kind != "in-process" or args.parquet) and args.max_samples is not None:
        raise TrainingError("--cluster and --parquet score a day at a time, every row in the range: drop "
                            "--max-samples")
    tracking.connect(settings, print)
    mv = tracking.load(name, None if args.version else args.alias, args.version)
    if mv is None:
        raise TrainingError(f"{name}@{args.version or args.alias} not found; train a model first")
    task = mv.metadata.get("task", "fraud")
    if task != args.task:
        raise TrainingError(f"{name} v{mv.version} is a {task} model; pass --task {task}")
    if not args.high > args.medium > 0:
        raise TrainingError(f"tiers need high > medium > 0, got {args.high} and {args.medium}")
    url = args.db or f"sqlite:///{(settings.data_dir / 'scores.db').resolve()}"
    if args.max_samples is None:
        return _score_by_day(args, settings, mv, name, table, url, where)
    ds = (load if fraud else load_clicks)(settings, start_ms=args.start, end_ms=args.end,
                                           max_samples=args.max_samples)
    sess = export.session(mv.onnx)
    X = ds.X
    p = np.concatenate([export.score(sess, X[i:i + 50_000])
                        for i in tqdm(range(0, len(X), 50_000), desc="scoring", unit="batch", disable=None)])
    out = batch.scores_frame(args.task, ds.frame, p, mv.threshold, args.high, args.medium)
    tier = out[batch.TIER_COLUMN[args.task]]
    out = out.assign(model_name=name, model_version=mv.version, scored_at=pd.Timestamp.now(tz="UTC"))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        out.to_sql(table, conn, if_exists="append", index=False, chunksize=10_000)
    counts = pd.Series(tier).value_counts().to_dict()
    print(f"wrote {len(out):,} scores of {name} v{mv.version} to {safe_url(url)} table {table}: "
          + ", ".join(f"{k} {counts.get(k, 0):,}" for k in ("high", "medium", "low")))
    return 0


def _score_by_day(args: argparse.Namespace, settings: StackSettings, mv: Any, name: str, table: str, url: str,
                  where: Any) -> int:
    """Scores of every transaction (or click) in the range, a day of the log per task
    (training/batch.py), on the chosen place; into the database as each day finishes, or
    (``--parquet``) written by the tasks themselves."""
    import time

    import pandas as pd
    import sqlalchemy as sa

    from core import feast_store
    from training import batch

    root = feast_store.offline_root(settings)
    started, rows, tiers, days = time.monotonic(), 0, {"high": 0, "medium": 0, "low": 0}, 0
    engine = None if args.parquet else sa.create_engine(url)
    with cluster.connect(where) as place:
        for out in batch.score(place, root, mv.onnx, mv.features, mv.threshold, args.high, args.medium,
                               args.start, args.end, Path(args.parquet).resolve() if args.parquet else None,
                               f"{name}-v{mv.version}", progress=sys.stderr.isatty(), task=args.task):
            days += 1
            if engine is None:
                rows += out.attrs.get("rows", 0)
                for k, v in out.attrs.get("tiers", {}).items():
                    tiers[k] += v
                continue
            if out.empty:
                continue
            out = out.assign(model_name=name, model_version=mv.version, scored_at=pd.Timestamp.now(tz="UTC"))
            with engine.begin() as conn:
                out.to_sql(table, conn, if_exists="append", index=False, chunksize=10_000)
            rows += len(out)
            for k, v in out[batch.TIER_COLUMN[args.task]].value_counts().items():
                tiers[str(k)] += int(v)
    dest = args.parquet if engine is None else f"{safe_url(url)} table {table}"
    print(f"wrote {rows:,} scores of {name} v{mv.version} to {dest} ({days} day(s) on {where}, "
          f"{time.monotonic() - started:.1f} s): " + ", ".join(f"{k} {v:,}" for k, v in tiers.items()))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m training", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train, evaluate, gate, register and promote a model")
    add_train_args(tr)

    def registry_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--name", default="fraud-detector", help="registered model (default fraud-detector)")

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--start", type=_time_ms)
        p.add_argument("--end", type=_time_ms)
        p.add_argument("--max-samples", type=int)
        p.add_argument("--fraud-rate", type=_fraction)

    h = sub.add_parser("history", help="registered versions, aliases and metrics")
    registry_args(h)
    pr = sub.add_parser("promote", help="move the champion alias to a version")
    registry_args(pr)
    pr.add_argument("version")
    pr.add_argument("--reason")
    ev = sub.add_parser("evaluate", help="a registered version's metrics on offline data")
    registry_args(ev)
    ev.add_argument("--alias", default="champion")
    ev.add_argument("--version")
    data_args(ev)
    cp = sub.add_parser("compare", help="two versions on the same data, or (--live) the served champion and its "
                                        "shadow challenger on live traffic with matured ground truth")
    registry_args(cp)
    cp.add_argument("a", nargs="?", default="champion", help="alias or version (default champion)")
    cp.add_argument("b", nargs="?", default="challenger", help="alias or version (default challenger)")
    cp.add_argument("--live", action="store_true",
                    help="judge on the stream scorer's scores (champion and shadow challenger) joined with the "
                         "fraud feedback that has matured, instead of the offline log's rule labels")
    cp.add_argument("--scores-topic", default="scores")
    cp.add_argument("--feedback-topic", default="fraud-feedback")
    cp.add_argument("--label-maturity", type=_duration_ms, default=120_000,
                    help="rows younger than this (event time) are not judged (default 120s)")
    cp.add_argument("--alert-budget", type=_fraction, help="default: the champion's live decline rate")
    cp.add_argument("--promote-if-better", action="store_true",
                    help="with --live: promote the challenger when it wins on the live matured labels with "
                         "confidence (the ground-truth gate)")
    data_args(cp)
    sc = sub.add_parser("score", help="batch scores with tiers into a database (fraud, or purchase propensity)")
    sc.add_argument("--task", default="fraud", choices=["fraud", "personalization"],
                    help="fraud: the logged transactions; personalization: the logged clicks (default fraud)")
    sc.add_argument("--name", help="registered model (default fraud-detector, or purchase-propensity)")
    sc.add_argument("--alias", default="champion")
    sc.add_argument("--version")
    sc.add_argument("--db", help="SQLAlchemy URL (default sqlite:///.data/scores.db; postgresql://... works)")
    sc.add_argument("--table", help="default fraud_scores (propensity_scores for personalization)")
    sc.add_argument("--high", type=float, default=0.70, help="high-risk tier from this probability")
    sc.add_argument("--medium", type=float, default=0.40, help="medium-risk tier from this probability")
    sc.add_argument("--cluster", help="where scoring runs (either task), a day of the offline log per task: "
                    "in-process, local:N (a local Dask cluster) or tcp://host:port (a Dask scheduler); default "
                    "STACK_CLUSTER")
    sc.add_argument("--parquet", help="write the scores as parquet under this folder (date=YYYY-MM-DD/"
                    "<model>-v<version>.parquet, one per day, written by the tasks) instead of the database")
    data_args(sc)
    return top


COMMANDS = {"train": cmd_train, "history": cmd_history, "promote": cmd_promote, "evaluate": cmd_evaluate,
            "compare": cmd_compare, "score": cmd_score}


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("mlflow", "feast", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR if not getattr(args, "verbose", False) else logging.INFO)
    if not getattr(args, "verbose", False):
        warnings.filterwarnings("ignore")
    from core.registry import RegistryError
    from training.errors import TrainingError

    try:
        return COMMANDS[args.command](args, StackSettings())
    except (TrainingError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as exc:  # pydantic and model-type validation
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main() -> None:
    from core.cli_exit import exit_now

    exit_now(run(sys.argv[1:]))
