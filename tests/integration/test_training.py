"""Training against the real parts: transactions go through Kafka and a real stream worker
into the Feast offline log; training reads them, logs to the MLflow server, registers with
aliases and exports ONNX that matches the native model."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pytest

from core.model_inputs import MODEL_FEATURES, model_row
from core.settings import REPO_ROOT, StackSettings
from stack.services import stack_env
from tests.support.fixtures import N_CLICKS, N_TXNS
from training import export, tracking
from training.config import TrainConfig
from training.models import MODEL_TYPES
from training.pipeline import train


@pytest.fixture(scope="module")
def data(stream_data: tuple[StackSettings, str]) -> tuple[StackSettings, str]:
    return stream_data


def _cfg(name: str, feedback: str, tmp_path: Path, **kw) -> TrainConfig:
    kw = {"cv_folds": 2, "min_auc": 0.6, "max_ece": 0.2, **kw}
    return TrainConfig(registered_name=name, feedback_topic=feedback, output_dir=tmp_path / "out", **kw)


@pytest.mark.parametrize("model_type", list(MODEL_TYPES))
def test_every_model_type_trains_registers_and_exports_onnx(data: tuple[StackSettings, str], tmp_path: Path,
                                                             model_type: str) -> None:
    settings, feedback = data
    name = f"fraud-{model_type}-{uuid.uuid4().hex[:6]}"
    r = train(settings, _cfg(name, feedback, tmp_path, model_type=model_type, force=True), say=lambda _m: None)
    assert r.dataset["rows"] >= N_TXNS * 0.95
    assert r.metrics["auc"] > 0.6 and 0 < r.threshold < 1
    assert r.parity["model"] <= 1e-5 and r.parity["calibration"] <= 1e-5
    assert r.version == "1" and r.alias == tracking.CHAMPION
    assert r.gate.passed or r.gate.note.startswith("forced")
    # the registry serves the graph we exported, with its features and threshold
    tracking.connect(settings, lambda _m: None)
    reg = tracking.load(name, tracking.CHAMPION)
    assert reg is not None and export.sha256(reg.onnx) == r.onnx_sha256 == reg.tags["onnx_sha256"]
    assert reg.features == list(MODEL_FEATURES) and reg.threshold == pytest.approx(r.threshold)
    assert r.ground_truth["rows_with_feedback"] > 0 and "per_scenario" in r.ground_truth
    assert r.ground_truth["training"]["fraud"] > 0 and r.ground_truth["training"]["scenarios"]
    run = mlflow.get_run(r.run_id)
    assert run.data.metrics["test_auc"] == pytest.approx(r.metrics["auc"])
    assert {"rule_high_velocity", "cv_auc_mean", "baseline_auc"} <= set(run.data.metrics)
    artifacts = {a.path for d in ("plots", "reports", "drift") for a in mlflow.MlflowClient().list_artifacts(
        r.run_id, d)}
    assert {"plots/roc.png", "plots/pr.png", "plots/calibration.png", "reports/gate.json",
            "reports/model_card.md", "drift/reference.parquet"} <= artifacts
    # scores from the registered graph are probabilities
    X = np.array([model_row({f: 0.0 for f in MODEL_FEATURES}, 50.0, "5411", "pos")], dtype=np.float32)
    p = export.score(export.session(reg.onnx), X)
    assert 0.0 <= p[0] <= 1.0


def test_the_gate_refuses_a_worse_model_and_promotes_a_better_one(data: tuple[StackSettings, str],
                                                                  tmp_path: Path) -> None:
    settings, feedback = data
    name = f"fraud-gate-{uuid.uuid4().hex[:6]}"
    weak = {"n_estimators": 2, "max_depth": 1}
    first = train(settings, _cfg(name, feedback, tmp_path, params=weak, force=True, ground_truth=False),
                  say=lambda _m: None)
    assert first.version == "1" and first.alias == tracking.CHAMPION
    better = train(settings, _cfg(name, feedback, tmp_path, ground_truth=False), say=lambda _m: None)
    assert better.gate.passed, better.gate.reasons()
    assert better.version == "2" and better.previous_champion == "1"
    assert next(c for c in better.gate.checks if c.name == "beats_champion").skipped is False
    # the weak one again, through the CLI: refused, exit 4, champion unchanged
    (tmp_path / "weak.yaml").write_text("params:\n  xgboost:\n    n_estimators: 2\n    max_depth: 1\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **stack_env(settings)}
    out = subprocess.run([sys.executable, "training/train.py", "--config", str(tmp_path / "weak.yaml"),
                          "--registered-name", name, "--cv-folds", "0", "--no-ground-truth", "--min-auc", "0.6",
                          "--max-ece", "0.2"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 4, out.stdout[-2000:] + out.stderr[-2000:]
    assert "FAIL beats_champion" in out.stdout and "not registered" in out.stdout
    tracking.connect(settings, lambda _m: None)
    champ = tracking.load(name, tracking.CHAMPION)
    assert champ is not None and champ.version == "2"

    # the lifecycle CLI on the same registered model
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "training", *args], cwd=REPO_ROOT, env={**env, "COLUMNS": "200"},
                              capture_output=True, text=True, timeout=300)

    hist = cli("history", "--name", name)
    assert hist.returncode == 0 and "champion" in hist.stdout and "challenger" in hist.stdout, hist.stderr
    cmp = cli("compare", "--name", name, "1", "2")
    assert cmp.returncode == 0 and "auc" in cmp.stdout and "v1" in cmp.stdout and "v2" in cmp.stdout, cmp.stderr
    ev = cli("evaluate", "--name", name)
    assert ev.returncode == 0 and f"{name} v2" in ev.stdout, ev.stderr
    db = tmp_path / "scores.db"
    sc = cli("score", "--name", name, "--db", f"sqlite:///{db}", "--max-samples", "500")
    assert sc.returncode == 0, sc.stderr
    import sqlalchemy as sa

    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        rows = conn.execute(sa.text("select risk_tier, fraud_probability, model_version from fraud_scores")).all()
    assert len(rows) == 500 and {r[2] for r in rows} == {"2"}
    assert all((r[0] == "high") == (r[1] >= 0.7) and (r[0] == "low") == (r[1] < 0.4) for r in rows)
    # every row, a day of the log per task: in-process into the database, on a local Dask
    # cluster as parquet written by the tasks; the same scores
    db_all = tmp_path / "all.db"
    every = cli("score", "--name", name, "--db", f"sqlite:///{db_all}")
    assert every.returncode == 0 and "day(s) on in-process" in every.stdout, every.stderr
    with sa.create_engine(f"sqlite:///{db_all}").connect() as conn:
        in_process = dict(conn.execute(sa.text("select event_id, fraud_probability from fraud_scores")).all())
    assert len(in_process) >= N_TXNS * 0.95
    pq = cli("score", "--name", name, "--parquet", str(tmp_path / "pq"), "--cluster", "local:2")
    assert pq.returncode == 0 and "day(s) on local:2" in pq.stdout, pq.stderr
    import pandas as pd

    written = pd.concat(pd.read_parquet(f) for f in (tmp_path / "pq").rglob("*.parquet"))
    assert dict(zip(written["event_id"], written["fraud_probability"], strict=True)) == in_process
    pr = cli("promote", "--name", name, "1", "--reason", "rollback drill")
    assert pr.returncode == 0 and "was v2" in pr.stdout, pr.stderr
    champ = tracking.load(name, tracking.CHAMPION)
    assert champ is not None and champ.version == "1" and champ.tags["promoted_reason"] == "rollback drill"
    missing = cli("promote", "--name", name, "99")
    assert missing.returncode == 1 and missing.stderr.strip().splitlines()[-1].startswith("error:")


def test_monotone_velocity_never_lowers_the_score(data: tuple[StackSettings, str], tmp_path: Path) -> None:
    settings, feedback = data
    r = train(settings, _cfg(f"fraud-mono-{uuid.uuid4().hex[:6]}", feedback, tmp_path, cv_folds=0, force=True,
                             ground_truth=False, monotone=["txn_count_5m", "velocity_score", "txn_count_1m"]),
              say=lambda _m: None)
    sess = export.session(r.onnx_path.read_bytes())
    rng = np.random.default_rng(0)
    base = {f: float(v) for f, v in zip(MODEL_FEATURES, rng.random(len(MODEL_FEATURES)), strict=True)}
    rows = []
    for n in range(0, 12):
        f = {**base, "txn_count_5m": n, "txn_count_1m": min(n, 3),
             "velocity_score": 1 - np.exp(-n / 4)}
        rows.append(model_row(f, 30.0, "5411", "online"))
    scores = export.score(sess, np.array(rows, dtype=np.float32))
    assert np.all(np.diff(scores) >= -1e-7), scores


def test_personalization_trains_a_purchase_propensity_model(data: tuple[StackSettings, str],
                                                            tmp_path: Path) -> None:
    from core.model_inputs import PROPENSITY_FEATURES

    settings, feedback = data
    name = f"propensity-{uuid.uuid4().hex[:6]}"
    r = train(settings, _cfg(name, feedback, tmp_path, task="personalization", model_type="lightgbm",
                             experiment_name="purchase-propensity", force=True, min_positives=10,
                             group_split=True),  # grouped by user (there is no card)
              say=lambda _m: None)
    assert "(grouped by user)" in (tmp_path / "out" / "model_card.md").read_text()
    assert r.dataset["rows"] >= N_CLICKS * 0.95 and "users" in r.dataset
    assert "purchase in the session" in r.label_summary and "rules fired" not in r.label_summary
    assert r.ground_truth == {}  # fraud feedback says nothing about purchases
    assert r.metrics["auc"] > 0.6, r.metrics
    tracking.connect(settings, lambda _m: None)
    reg = tracking.load(name, tracking.CHAMPION)
    assert reg is not None and reg.features == list(PROPENSITY_FEATURES)
    assert reg.metadata["task"] == "personalization"

    # batch scoring of the logged clicks with the same graph
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **stack_env(settings)}
    db = tmp_path / "scores.db"

    def score(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "training", "score", "--name", name, "--db", f"sqlite:///{db}",
                               "--max-samples", "300", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=300)

    wrong = score()  # the default task is fraud: refused with the reason, no traceback
    assert wrong.returncode == 1 and "pass --task personalization" in wrong.stderr, wrong.stderr
    assert "Traceback" not in wrong.stderr
    sc = score("--task", "personalization")
    assert sc.returncode == 0 and "propensity_scores" in sc.stdout, sc.stderr
    import sqlalchemy as sa

    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        rows = conn.execute(sa.text("select user_id, purchase_probability, tier, model_version "
                                    "from propensity_scores")).all()
    assert len(rows) == 300 and {r[3] for r in rows} == {reg.version}
    assert all((r[2] == "high") == (r[1] >= 0.7) and (r[2] == "low") == (r[1] < 0.4) for r in rows)

    # every logged click, a day of the click log per task on a local Dask cluster, as parquet:
    # the graph's scores of training's own rows
    import pandas as pd

    from training.dataset import load_clicks

    out = subprocess.run([sys.executable, "-m", "training", "score", "--name", name, "--task", "personalization",
                          "--cluster", "local:2", "--parquet", str(tmp_path / "pq")], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "day(s) on local:2" in out.stdout, out.stderr[-2000:]
    got = pd.concat([pd.read_parquet(f) for f in sorted((tmp_path / "pq").rglob("*.parquet"))])
    ds = load_clicks(settings)
    want = pd.Series(export.score(export.session(reg.onnx), ds.X), index=ds.frame["event_id"])
    assert len(got) == len(want) and set(got["tier"]) <= {"high", "medium", "low"}
    np.testing.assert_allclose(got.set_index("event_id").loc[want.index, "purchase_probability"], want, atol=1e-6)


def test_max_samples_and_time_ranges_are_pushed_into_the_read(data: tuple[StackSettings, str]) -> None:
    """``--max-samples`` reads only the newest part of the offline log (from the event_time
    column alone it finds where to start), and gives exactly the rows that reading everything
    and keeping the newest gave; a time range reads only its own rows."""
    import pandas as pd

    from core import feast_store
    from training import dataset

    settings, _ = data
    full = dataset.load(settings)
    k = len(full.frame) // 5
    recent = dataset.load(settings, max_samples=k)
    assert len(recent.frame) == k
    assert recent.summary["rows_in_log"] < full.summary["rows_in_log"] / 2  # it did not read the whole log
    cols = ["event_id", "event_time", *full.features]
    pd.testing.assert_frame_equal(recent.frame[cols], full.frame[cols].iloc[-k:].reset_index(drop=True))
    mid = int(full.frame["event_time"].median())
    later = dataset.load(settings, start_ms=mid)
    assert later.frame["event_time"].min() >= mid
    assert set(later.frame["event_id"]) == set(full.frame.loc[full.frame["event_time"] >= mid, "event_id"])
    root = feast_store.offline_dir(settings, "")
    raw = dataset._read(root / "card_txn_features", ["event_time"], (mid, None))
    assert len(raw) < full.summary["rows_in_log"] and raw["event_time"].min() >= mid


def test_no_data_is_a_clear_error(feast_repo: StackSettings, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **stack_env(feast_repo)}
    out = subprocess.run([sys.executable, "training/train.py", "--model-type", "lightgbm"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no transactions in the offline store") and "make up" in last


def test_a_rule_label_champion_is_replaced_by_a_feedback_model_once_truth_matures(
        data: tuple[StackSettings, str], tmp_path: Path) -> None:
    """The loop on ground truth: a champion trained on rule labels; the monitor's next retrain
    (train.py with its default --labels auto) finds enough matured fraud, trains on feedback,
    wins on the matured holdout with confidence and is promoted, with the evidence audited;
    then a weaker challenger is refused by the same ground-truth gate."""
    from drift.monitor import Monitor, MonitorSettings

    settings, feedback = data
    name = f"fraud-gt-{uuid.uuid4().hex[:6]}"
    common = {"test_size": 0.3, "cv_folds": 0, "min_auc": 0.6, "max_ece": 0.2, "min_feedback_fraud": 30}
    first = train(settings, _cfg(name, feedback, tmp_path / "rules", labels="rules", force=True, **common),
                  say=lambda _m: None)
    assert first.alias == tracking.CHAMPION and first.ground_truth["gate"]["decides"]
    args = ["--cv-folds", "0", "--test-size", "0.3", "--min-auc", "0.6", "--max-ece", "0.2",
            "--min-feedback-fraud", "30"]
    monitor = Monitor(settings, MonitorSettings(model_name=name, retrain_every_s=0.001, feedback_topic=feedback,
                                                scores_topic=f"absent-{uuid.uuid4().hex[:6]}", train_args=args))
    rec = monitor.once()
    assert rec["action"] == "retrained" and rec["gate"] == "passed", rec
    assert rec["labels"] in ("feedback", "combined") and rec["ground_truth_decided"] is True
    assert "excludes zero" in rec["ground_truth"]
    tracking.connect(settings, lambda _m: None)
    assert tracking.alias_version(name, tracking.CHAMPION) == rec["version"] != first.version
    from core import registry

    promotion = registry.signed_champion(name, registry.Verifier.of(settings))
    assert promotion is not None and promotion["evidence"]["labels"] == rec["labels"]
    assert "excludes zero" in promotion["evidence"]["ground_truth"]
    # a weaker challenger on ground truth: refused, the champion stays
    weak = train(settings, _cfg(name, feedback, tmp_path / "weak", labels="feedback", **common,
                                params={"n_estimators": 2, "max_depth": 1}), say=lambda _m: None)
    assert not weak.gate.passed and weak.version is None
    assert any(r.startswith("ground_truth:") for r in weak.gate.reasons())
    assert tracking.alias_version(name, tracking.CHAMPION) == rec["version"]


def test_a_shadow_challenger_that_wins_on_live_matured_truth_is_promoted(
        data: tuple[StackSettings, str], tmp_path: Path, kafka_bootstrap: str) -> None:
    """``python -m training compare --live --promote-if-better`` on the stream scorer's scores
    (champion and shadow challenger) joined with matured fraud feedback through real Kafka."""
    import orjson
    from confluent_kafka import Producer

    from core.contracts import FraudFeedback, encode
    from stack.topics import ensure_topics

    settings, feedback = data
    name = f"fraud-live-{uuid.uuid4().hex[:6]}"
    base = {"cv_folds": 0, "min_auc": 0.6, "max_ece": 0.2, "labels": "rules", "force": True}
    train(settings, _cfg(name, feedback, tmp_path / "a", **base), say=lambda _m: None)
    train(settings, _cfg(name, feedback, tmp_path / "b", promote=False, **base), say=lambda _m: None)
    tracking.connect(settings, lambda _m: None)
    assert tracking.alias_version(name, tracking.CHAMPION) == "1"
    assert tracking.alias_version(name, tracking.CHALLENGER) == "2"
    scores, fb = f"live-scores-{uuid.uuid4().hex[:6]}", f"live-fb-{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka_bootstrap, [scores, fb], partitions=2)
    rng = np.random.default_rng(4)
    p = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    now, n = 1_790_000_000_000, 4000
    for i in range(n):
        fraud = bool(rng.random() < 0.05)
        eid, t = f"live-{i:06d}", now - (n - i) * 60_000  # one a minute; the last 2 minutes are too young
        champ_p = float(np.clip(0.25 * fraud + rng.normal(0.2, 0.1), 0, 1))
        rec = {"event_id": eid, "card_id": f"c{i % 200}", "event_time": t, "source": "stream", "model_version": "1",
               "features": {},
               "fraud_probability": champ_p, "decision": "review" if champ_p > 0.5 else "approve",
               "shadow": {"model_version": "2", "fraud_probability": float(np.clip(0.8 * fraud + rng.normal(0.1, 0.05),
                                                                                     0, 1))}}
        p.produce(scores, key=eid.encode(), value=orjson.dumps(rec))
        if fraud:
            p.produce(fb, key=eid.encode(), value=encode(FraudFeedback(event_id=eid, card_id=rec["card_id"],
                                                                        event_time=t, is_fraud=True, scenario="x")))
    assert p.flush(30) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **stack_env(settings), "COLUMNS": "200"}
    cmd = ["compare", "--name", name, "--live", "--scores-topic", scores, "--feedback-topic", fb, "--alert-budget",
           "0.05", "--promote-if-better"]
    out = subprocess.run([sys.executable, "-m", "training", *cmd], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "v1 (served)" in out.stdout and "v2 (shadow)" in out.stdout and "excludes zero" in out.stdout
    assert f"{name} v2 is champion (was v1)" in out.stdout
    assert tracking.alias_version(name, tracking.CHAMPION) == "2"


def test_training_on_a_local_dask_cluster_registers_a_model_as_good_as_in_process(
        data: tuple[StackSettings, str], tmp_path: Path) -> None:
    """``train.py --cluster local:2``: the training set built a day per task and the booster
    trained with xgboost.dask; with the default --labels auto on the feedback topic, the
    same rows and label choice as in-process, registered with ONNX parity, and a test AUC
    within 0.03 of the in-process model's on the same test rows."""
    settings, feedback = data
    name = f"fraud-dask-{uuid.uuid4().hex[:6]}"
    common = {"test_size": 0.3, "cv_folds": 2, "min_feedback_fraud": 30, "force": True}
    here = train(settings, _cfg(name, feedback, tmp_path / "here", **common), say=lambda _m: None)
    said: list[str] = []
    there = train(settings, _cfg(name, feedback, tmp_path / "there", cluster="local:2", **common), say=said.append)
    assert any(m.startswith("  on Dask: local:2, 2 worker(s)") for m in said), said
    assert any("training xgboost on Dask" in m for m in said), said
    for key in ("rows", "cards", "start", "end", "too_late_rows", "ambiguous_event_id_rows"):
        assert there.dataset[key] == here.dataset[key], key
    assert there.label_summary == here.label_summary
    assert there.parity["model"] <= 1e-5 and there.parity["calibration"] <= 1e-5
    assert there.version == "2" and there.alias == tracking.CHAMPION
    assert abs(there.metrics["auc"] - here.metrics["auc"]) < 0.03, (there.metrics, here.metrics)
    assert there.ground_truth["training"] == here.ground_truth["training"]
    assert there.ground_truth["gate"]["decides"] == here.ground_truth["gate"]["decides"]
    run = mlflow.get_run(there.run_id)
    assert run.data.tags["cluster"] == "local:2"
    assert run.data.params["train_rows"] == mlflow.get_run(here.run_id).data.params["train_rows"]
