"""Batch work past one process (issue 18): the backfill gives the same rows in-process, on a
local Dask cluster and on a Dask scheduler started here (real ``dask scheduler`` and
``dask worker`` processes), from Kafka and from the parquet log."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from core import cluster
from core.settings import REPO_ROOT, StackSettings
from stack import health
from stack.topics import ensure_topics
from streaming import backfill
from streaming.entities import CARD
from streaming.processor import ProcessorConfig
from streaming.sinks import OfflineLog, latest_feature_rows, read_dataset
from tests.support.stream import LATENESS_MS, Expected, generate, produce

CFG = ProcessorConfig(LATENESS_MS)


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A Dask scheduler and one worker process, as a deployment runs them."""
    from stack import dask_procs

    with dask_procs.scheduler(1, "2GiB") as address:
        yield address


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3-protocol server (S3Proxy from Maven Central) with a bucket; its endpoint and
    credentials in the environment, as a deployment sets them."""
    from pyarrow import fs

    from stack import s3proxy

    port = health.free_port()
    folder = tmp_path_factory.mktemp("s3")
    proc = s3proxy.start(StackSettings(), port, folder / "buckets", log=folder / "s3proxy.log")
    endpoint = f"http://127.0.0.1:{port}"
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ACCESS_KEY_ID", s3proxy.ACCESS_KEY)
    mp.setenv("AWS_SECRET_ACCESS_KEY", s3proxy.SECRET_KEY)
    mp.setenv("STACK_S3_ENDPOINT", endpoint)
    try:
        fs.S3FileSystem(endpoint_override=endpoint, region="us-east-1", access_key=s3proxy.ACCESS_KEY,
                        secret_key=s3proxy.SECRET_KEY, allow_bucket_creation=True).create_dir("offline")
        yield endpoint
    finally:
        mp.undo()
        proc.terminate()
        proc.wait(30)


def _rows(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events, latest feature rows) of an offline root, ordered, without revision numbers."""
    events = read_dataset(root, CARD.event_dataset)
    events = events.drop(columns=["event_timestamp"]).sort_values("event_id").reset_index(drop=True)
    rows = latest_feature_rows(read_dataset(root, CARD.feature_dataset))
    cols = [c for c in rows.columns if c not in ("revision", "event_timestamp")]
    return events, rows[cols].sort_values(["card_id", "event_key"]).reset_index(drop=True)


def _same(a: Path, b: Path) -> None:
    for x, y in zip(_rows(a), _rows(b), strict=True):
        assert len(x) > 0
        pd.testing.assert_frame_equal(x, y)


def test_backfill_is_the_same_in_process_on_a_local_cluster_and_on_a_scheduler(
        kafka_bootstrap: str, scheduler: str, tmp_path: Path) -> None:
    topic = f"bf-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [topic], partitions=3)
    records = generate(4000, seed=11, late_rate=0.03, max_delay_ms=120_000, bad_rate=0.003, fraud_rate=0.01)
    exp = Expected.of(records)
    assert exp.too_late > 0 and exp.bad > 0
    produce(kafka_bootstrap, topic, records)

    # today's single-process path: one iterator over every partition
    events, total = backfill.from_topic(kafka_bootstrap, topic, timestamps=True)
    single = backfill.run(events, total, OfflineLog(tmp_path / "single"), CFG, progress=False)
    assert single["invalid"] == exp.bad and single["too_late"] == exp.too_late

    counts = {}
    for where in ("in-process", "local:2", scheduler):
        out = tmp_path / where.replace("/", "_").replace(":", "_")
        tasks = backfill.plan("transactions", out, CFG, conn=kafka_bootstrap, topic=topic)
        assert sorted(t.partition for t in tasks) == [0, 1, 2]  # a task per partition
        with cluster.connect(where) as place:
            assert (place.client is None) == (where == "in-process")
            counts[where] = backfill.run_tasks(place, tasks)
        assert counts[where] == single, where
        _same(tmp_path / "single", out)
        # each task wrote its own files
        writers = {f.name.split("-")[3] for f in (out / CARD.feature_dataset).rglob("*.parquet")}
        assert writers == {"p0", "p1", "p2"}

    # from the parquet log, split into buckets of cards: the same rows as one task
    raw = tmp_path / "single" / CARD.event_dataset
    one = backfill.plan("transactions", tmp_path / "pq-one", CFG, parquet=raw)
    three = backfill.plan("transactions", tmp_path / "pq-three", CFG, parquet=raw, buckets=3)
    assert len(one) == 1 and [t.bucket for t in three] == [(0, 3), (1, 3), (2, 3)]
    with cluster.connect("in-process") as place:
        whole = backfill.run_tasks(place, one)
    with cluster.connect(scheduler) as place:
        split = backfill.run_tasks(place, three)
    assert whole == split and whole["too_late"] == 0  # (event-time order: nothing late)
    _same(tmp_path / "pq-one", tmp_path / "pq-three")


def test_the_backfill_cli_runs_on_a_local_cluster(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = f"bf-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [topic], partitions=3)
    records = generate(600, seed=19)
    produce(kafka_bootstrap, topic, records)
    host, _, port = kafka_bootstrap.rpartition(":")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "STACK_KAFKA_HOST": host, "STACK_KAFKA_PORT": port}
    out = subprocess.run([sys.executable, "-m", "streaming", "backfill", "--topic", topic, "--output",
                          str(tmp_path / "out"), "--cluster", "local:2"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"backfilled {len(records):,} events" in out.stderr and "3 task(s), local:2" in out.stderr
    assert len(read_dataset(tmp_path / "out", CARD.event_dataset)) == len(records)


def _multi_day_log(root: Path) -> None:
    """About 3,000 transactions over two to three days (through the backfill, as the stream
    writes them), plus one crafted event whose id is another card's a day later."""
    import msgspec

    from core.contracts import Transaction, decode
    from streaming.entities import event_row
    from streaming.generators.transactions import GenConfig, TransactionStream

    stream = TransactionStream(GenConfig(seed=31, users=400, events_per_s=0.03, fraud_rate=0.03,
                                         start_ms=1_790_000_000_000))
    events = []
    for rec in stream:
        if rec.topic == "transactions":
            events.append(decode(rec.value, Transaction))
            if len(events) >= 3000:
                break
    raw = root / "raw"
    OfflineLog(raw).append(CARD.event_dataset, [event_row(e) for e in events])
    txns, total = backfill.from_parquet(raw / CARD.event_dataset)
    backfill.run(iter(txns), total, OfflineLog(root / "log"), CFG, progress=False)
    # (the parquet backfill keeps one event per id: the crafted one is processed on its own)
    crafted = msgspec.structs.replace(events[0], card_id="card-crafted", event_time=events[0].event_time + 86_400_000)
    backfill.run(iter([crafted]), 1, OfflineLog(root / "log"), CFG, progress=False)


def test_batch_scoring_a_day_per_task_equals_scoring_the_training_rows(
        feast_repo: StackSettings, scheduler: str, tmp_path: Path) -> None:
    import numpy as np

    from training import batch, calibration, export, models
    from training.dataset import load

    _multi_day_log(tmp_path)
    root = tmp_path / "log"
    days = batch.days(root)
    assert len(days) >= 2, days
    ds = load(feast_repo, offline_root=root)  # (the crafted id's two rows are left out there)
    assert ds.summary["ambiguous_event_id_rows"] == 2
    y = (ds.frame["txn_count_5m"] >= 2).to_numpy(np.int8)  # any labels: the scores are what is compared
    fitted = models.fit("logistic_regression", ds.X, y, None, None)
    cal, _ = calibration.choose(fitted.predict(ds.X), y)
    onnx = export.build(fitted, len(ds.features), cal, {"model_type": "logistic_regression"}).SerializeToString()
    want = pd.Series(export.score(export.session(onnx), ds.X), index=ds.frame["event_id"]).sort_index()

    for where in ("in-process", "local:2", scheduler):
        with cluster.connect(where) as place:
            parts = list(batch.score(place, root, onnx, ds.features, 0.5, 0.7, 0.4))
        assert len(parts) == len(days)
        got = pd.concat(parts).set_index("event_id").sort_index()
        assert got.index.equals(want.index), where
        np.testing.assert_allclose(got["fraud_probability"], want, rtol=0, atol=1e-6)
        p = got["fraud_probability"]
        assert ((got["risk_tier"] == "high") == (p >= 0.7)).all()
        assert ((got["decision"] == "review") == (p >= 0.5)).all()

    # written by the tasks as parquet, a file per day; a time range keeps to its days
    with cluster.connect("local:2") as place:
        written = list(batch.score(place, root, onnx, ds.features, 0.5, 0.7, 0.4, parquet=tmp_path / "out",
                                   name="m-v1"))
    assert sum(w.attrs["rows"] for w in written) == len(want)
    files = sorted((tmp_path / "out").rglob("*.parquet"))
    assert [f.parent.name for f in files] == [f"date={d}" for d in days] and {f.name for f in files} == {"m-v1.parquet"}
    back = pd.concat([pd.read_parquet(f) for f in files]).set_index("event_id").sort_index()
    np.testing.assert_allclose(back["fraud_probability"], want, rtol=0, atol=1e-6)
    second = int(pd.Timestamp(days[1], tz="UTC").value // 1_000_000)
    with cluster.connect("in-process") as place:
        late = pd.concat(batch.score(place, root, onnx, ds.features, 0.5, 0.7, 0.4, start_ms=second))
    # (the crafted id's first use is before the range: within it, it is ambiguous no more, for both)
    assert sorted(late["event_id"]) == sorted(load(feast_repo, offline_root=root, start_ms=second).frame["event_id"])
    assert len(late) == int((ds.frame["event_time"] >= second).sum()) + 1


def test_training_rows_labels_and_split_on_dask_equal_the_in_process_ones(
        feast_repo: StackSettings, scheduler: str, tmp_path: Path) -> None:
    """training/distributed.py: the rows a cluster run trains on, validates and tests on are
    in-process training's, to the row; with ground truth the feedback split is too; the
    boosters trained with xgboost.dask and lightgbm.dask score the test rows about as well as
    the in-process fit (AUC within 0.03 on these few thousand rows)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from training import distributed, feedback, ground_truth, models, splits
    from training.config import TrainConfig
    from training.dataset import load
    from training.labels import label
    from training.pipeline import _labels_and_split

    _multi_day_log(tmp_path)
    root = tmp_path / "log"
    ds = load(feast_repo, offline_root=root)
    df = ds.frame
    labels = label(df)
    sp = splits.split(df, labels.y, "time", 0.15, 0.2)
    # ground truth: every fraud-flagged row reported, as feedback would
    rng = np.random.default_rng(3)
    ids = df["event_id"][rng.random(len(df)) < 0.05]
    truth = pd.DataFrame({"event_id": ids.to_numpy(), "is_fraud": True, "scenario": "card_testing"})
    now = int(df["event_time"].max())
    maturity = 6 * 3_600_000
    tl = feedback.truth_labels(ground_truth.align(df["event_id"], truth), df["event_time"].to_numpy(), now, maturity)
    cfg = TrainConfig(val_size=0.15, test_size=0.2, label_maturity_ms=maturity, cv_folds=0)
    y_fb, sp_fb, _ = _labels_and_split(cfg, df, labels, tl, "feedback")
    y_comb, sp_comb, _ = _labels_and_split(cfg, df, labels, tl, "combined")
    aucs = {}
    for where in ("in-process", "local:2", scheduler):
        with cluster.connect(where) as place:
            prep = distributed.prepare(place, root, cfg, truth, None)
            assert prep.summary["rows"] == len(df) and prep.summary["cards"] == df["card_id"].nunique()
            assert prep.summary["ambiguous_event_id_rows"] == ds.summary["ambiguous_event_id_rows"] == 2
            f = prep.frame
            for mode, (yy, ss) in {"rules": (labels.y, sp), "feedback": (y_fb, sp_fb),
                                   "combined": (y_comb, sp_comb)}.items():
                y_c, sp_c = prep.split(mode)
                for part in ("val", "test"):
                    got, want = getattr(sp_c, part), getattr(ss, part)
                    assert list(f["event_id"].iloc[got]) == list(df["event_id"].iloc[want]), (where, mode, part)
                    assert list(y_c[got]) == list(yy[want]), (where, mode, part)
                assert prep.train_counts(mode) == (len(ss.train), int(yy[ss.train].sum())), (where, mode)
                # the sample's training rows are training rows
                assert set(f["event_id"].iloc[sp_c.train]) <= set(df["event_id"].iloc[ss.train])
            assert prep.truth is not None and prep.truth.summary["fraud"] == int(tl.y[tl.known].sum())
            if place.client is None:
                continue
            y_c, sp_c = prep.split("rules")
            X = f[list(ds.features)].to_numpy(np.float32)
            for model_type in ("xgboost", "lightgbm"):
                fitted = distributed.fit(place, prep, "rules", model_type, {}, 42, X[sp_c.val], y_c[sp_c.val], False)
                aucs[(where, model_type)] = roc_auc_score(y_c[sp_c.test], fitted.predict(X[sp_c.test]))
    # past EVAL_ROWS, the validation and test rows are a uniform sample of them
    distributed.EVAL_ROWS, keep = 150, distributed.EVAL_ROWS
    try:
        with cluster.connect("in-process") as place:
            small = distributed.prepare(place, root, cfg, truth, None)
    finally:
        distributed.EVAL_ROWS = keep
    _, sp_s = small.split("rules")
    share = small.summary["evaluation_sample"]
    assert 0 < share < 1
    for part in ("val", "test"):
        got, want = set(small.frame["event_id"].iloc[getattr(sp_s, part)]), set(df["event_id"].iloc[getattr(sp, part)])
        assert got < want and abs(len(got) / len(want) - share) < 0.25 * share + 0.03, (part, len(got), len(want))
    assert small.train_counts("rules") == (len(sp.train), int(labels.y[sp.train].sum()))  # (all rows still train)
    X = ds.X
    for model_type in ("xgboost", "lightgbm"):
        local = models.fit(model_type, X[sp.train], labels.y[sp.train], X[sp.val], labels.y[sp.val])
        base = roc_auc_score(labels.y[sp.test], local.predict(X[sp.test]))
        for where in ("local:2", scheduler):
            assert abs(aucs[(where, model_type)] - base) < 0.03, (where, model_type, aucs, base)


def test_the_offline_log_in_an_object_store_gives_the_same_rows(
        kafka_bootstrap: str, feast_repo: StackSettings, s3: str, tmp_path: Path) -> None:
    """STACK_OFFLINE_URL=s3://...: backfill tasks on a local Dask cluster write one log into a
    real S3-protocol server; the events, the feature rows, training's rows, a cluster
    training set and batch scores read from it equal those of the same backfill on disk."""
    import numpy as np

    from core import storage
    from training import batch, distributed, export, models
    from training.config import TrainConfig
    from training.dataset import load

    topic = f"s3-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [topic], partitions=3)
    records = generate(3000, seed=5, late_rate=0.02, max_delay_ms=120_000, bad_rate=0.003, fraud_rate=0.02)
    produce(kafka_bootstrap, topic, records)
    url = f"s3://offline/run-{uuid.uuid4().hex[:6]}"
    with cluster.connect("local:2") as place:
        on_s3 = backfill.run_tasks(place, backfill.plan("transactions", url, CFG, conn=kafka_bootstrap, topic=topic))
    events, total = backfill.from_topic(kafka_bootstrap, topic, timestamps=True)
    on_disk = backfill.run(events, total, OfflineLog(tmp_path / "disk"), CFG, progress=False)
    assert on_s3 == on_disk
    remote = storage.root(url)
    assert remote.remote and remote.endpoint == s3
    assert len(remote.files()) >= 3 and all(f.startswith(remote.path + "/") for f in remote.files())

    # the same events and latest feature rows, through read_dataset
    for kind in (CARD.event_dataset, CARD.feature_dataset):
        a, b = read_dataset(url, kind), read_dataset(tmp_path / "disk", kind)
        assert len(a) == len(b) > 0
    # training's rows
    here, there = load(feast_repo, offline_root=tmp_path / "disk"), load(feast_repo, offline_root=url)
    cols = [c for c in here.frame.columns if c != "revision"]
    key = ["card_id", "event_key"]
    pd.testing.assert_frame_equal(there.frame[cols].sort_values(key).reset_index(drop=True),
                                  here.frame[cols].sort_values(key).reset_index(drop=True))
    # a cluster training set, and batch scores, read by the workers from the object store
    cfg = TrainConfig(val_size=0.2, test_size=0.2)
    with cluster.connect("local:2") as place:
        prep = distributed.prepare(place, url, cfg, None, None)
        y, sp = prep.split("rules")
        assert prep.summary["rows"] == len(here.frame)
        X = prep.frame[list(here.features)].to_numpy(np.float32)
        fitted = models.fit("logistic_regression", X[sp.train], y[sp.train], None, None)
        from training import calibration

        onnx = export.build(fitted, len(here.features), calibration.Calibrator("none"),
                            {"model_type": "logistic_regression"}).SerializeToString()
        got = pd.concat(batch.score(place, url, onnx, here.features, 0.5, 0.7, 0.4)).set_index("event_id")
    want = export.score(export.session(onnx), here.X)
    np.testing.assert_allclose(got.loc[here.frame["event_id"], "fraud_probability"].to_numpy(), want, atol=1e-6)


def test_mlflow_keeps_models_and_drift_references_in_the_object_store(
        s3: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``STACK_ARTIFACTS_URL=s3://...``: ``make up``'s MLflow server writes every artifact to
    the bucket (none to its local folder) and serves them to clients that hold no object-store
    credentials; the drift check's champion reference is read back from there."""
    import mlflow
    from mlflow import MlflowClient
    from pyarrow import fs

    from drift.sources import champion_reference
    from stack import lifecycle
    from tests.conftest import local_settings

    settings = local_settings(tmp_path_factory.mktemp("mlflow-s3")).model_copy(
        update={"artifacts_url": "s3://offline/mlflow-artifacts", "s3_endpoint": s3})
    lifecycle.up(settings, say=lambda _m: None, only=("mlflow",))
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    # this server for runs and the registry alike (the session's earlier tests left both
    # pointing at the session's server, the variable too)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.mlflow_uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    from training import tracking

    assert tracking.connect(settings) == settings.mlflow_uri
    try:
        ref = pd.DataFrame({"amount": [1.5, 20.0, 300.0], "score": [0.1, 0.5, 0.9]})
        ref.to_parquet(tmp_path / "reference.parquet", index=False)
        (tmp_path / "model.onnx").write_bytes(b"\x08\x07onnx-bytes")
        client = MlflowClient()
        assert client._registry_uri == settings.mlflow_uri  # noqa: SLF001
        with mlflow.start_run(experiment_id=client.create_experiment(f"s3-{uuid.uuid4().hex[:6]}")) as run:
            mlflow.log_artifact(str(tmp_path / "reference.parquet"), "drift")
            mlflow.log_artifact(str(tmp_path / "model.onnx"), "model")
        name = f"s3-model-{uuid.uuid4().hex[:6]}"
        client.create_registered_model(name)
        version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
        client.set_registered_model_alias(name, "champion", version.version)
        # the objects are in the bucket, under the prefix; nothing in the server's own folder
        bucket = fs.S3FileSystem(endpoint_override=s3, region="us-east-1")
        keys = [f.path for f in bucket.get_file_info(fs.FileSelector("offline/mlflow-artifacts", recursive=True))
                if f.type == fs.FileType.File]
        assert any(k.endswith(f"{run.info.run_id}/artifacts/drift/reference.parquet") for k in keys), keys
        assert any(k.endswith(f"{run.info.run_id}/artifacts/model/model.onnx") for k in keys), keys
        local = settings.data_dir / "mlflow" / "artifacts"
        assert not [p for p in local.rglob("*") if p.is_file()]
        # read back through the server by a client without the bucket's credentials
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STACK_S3"))}
        code = ("import mlflow, sys; mlflow.set_tracking_uri(sys.argv[1]); "
                "print(open(mlflow.artifacts.download_artifacts(run_id=sys.argv[2], artifact_path='model/model.onnx'),"
                " 'rb').read().hex())")
        out = subprocess.run([sys.executable, "-c", code, settings.mlflow_uri, run.info.run_id], env=env,
                             capture_output=True, text=True, timeout=120, check=True).stdout
        assert bytes.fromhex(out.strip().splitlines()[-1]) == b"\x08\x07onnx-bytes"
        got, what, run_id = champion_reference(settings, name)
        assert run_id == run.info.run_id and what == f"{name} v{version.version} training reference"
        pd.testing.assert_frame_equal(got, ref)
        # make up says so at once when the bucket is missing (not at the first training run)
        from stack.errors import StackError
        from stack.init import _artifact_store

        with pytest.raises(StackError, match="STACK_ARTIFACTS_URL=s3://nope/x: no bucket 'nope' there"):
            _artifact_store(settings.model_copy(update={"artifacts_url": "s3://nope/x"}))
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
        lifecycle.down(settings, say=lambda _m: None)


def test_compaction_of_the_log_in_the_object_store_keeps_what_readers_keep(s3: str) -> None:
    """``python -m streaming compact`` on ``STACK_OFFLINE_URL``: one object per day folder,
    readers see exactly the rows they saw, later appends are kept."""
    from pyarrow import fs

    from core import storage
    from tests.unit.test_compact import _rows

    url = f"s3://offline/compact-{uuid.uuid4().hex[:8]}"
    log = OfflineLog(url)
    log.append("card_txn_features", _rows(40, 1))
    log.append("card_txn_features", _rows(10, 5, shift=100))  # corrections: higher revision wins
    log.append("card_txn_features", _rows(5, 9, status="too_late", shift=500))  # accepted beats too-late
    want = latest_feature_rows(read_dataset(url, "card_txn_features"))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "STACK_OFFLINE_URL": url}
    out = subprocess.run([sys.executable, "-m", "streaming", "compact", "--dataset", "card_txn_features"], env=env,
                         capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    assert "card_txn_features: 2 day folders, 6 files -> 2, 55 rows -> 40" in out.stderr
    root = storage.root(url)
    for day in (root / "card_txn_features").dirs():
        infos = root.fs.get_file_info(fs.FileSelector(f"{root.path}/card_txn_features/{day}"))
        assert len(infos) == 1 and "compacted" in infos[0].base_name
    got = latest_feature_rows(read_dataset(url, "card_txn_features"))
    cols = sorted(want.columns)
    pd.testing.assert_frame_equal(got[cols].sort_values(["card_id", "event_key"]).reset_index(drop=True),
                                  want[cols].sort_values(["card_id", "event_key"]).reset_index(drop=True),
                                  check_dtype=False)
    assert got.set_index("event_key").loc[3, "txn_count_5m"] == 103
    log.append("card_txn_features", _rows(3, 20, shift=1000))  # kept, and folded in by the next run
    from streaming.compact import compact

    again = {r.dataset: r for r in compact(root)}["card_txn_features"]
    assert (again.files_before, again.files_after) == (4, 2)
    assert latest_feature_rows(read_dataset(url, "card_txn_features")).set_index("event_key").loc[
        1, "txn_count_5m"] == 1001
