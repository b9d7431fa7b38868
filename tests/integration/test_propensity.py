"""The purchase-propensity endpoint against real Redis, Feast, MLflow and Kafka, with a model
trained by the training code on the stream's clicks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from core.model_inputs import PROPENSITY_FEATURES
from core.settings import StackSettings
from inference.app import create_app
from inference.settings import InferenceSettings
from stack.topics import ensure_topics
from tests.support.stream import published
from training import export, tracking
from training.config import TrainConfig
from training.dataset import load_clicks
from training.pipeline import train

TOKEN = "t0ken-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLICK_FIELDS = ["event_id", "event_time", "user_id", "session_id", "action", "dwell_ms", "device"]


@pytest.fixture(scope="module")
def served(stream_data: tuple[StackSettings, str], kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[TestClient, StackSettings, str, str]]:
    """(client, settings, propensity model name, propensity topic); no fraud model at all."""
    settings, feedback = stream_data
    name = f"propensity-api-{uuid.uuid4().hex[:6]}"
    train(settings, TrainConfig(task="personalization", model_type="lightgbm", registered_name=name,
                                experiment_name="purchase-propensity", feedback_topic=feedback, cv_folds=0,
                                force=True, min_positives=10, output_dir=tmp_path_factory.mktemp("propensity")),
          say=lambda _m: None)
    topic = f"propensity-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    cfg = InferenceSettings(model_name=f"no-fraud-{uuid.uuid4().hex[:6]}", propensity_model_name=name,
                            admin_token=TOKEN, poll_interval_s=0, propensity_topic=topic)
    with TestClient(create_app(settings, cfg), headers=AUTH) as client:
        yield client, settings, name, topic


def _offline(settings: StackSettings, n: int) -> pd.DataFrame:
    """The newest ``n`` clicks as training reads them: logged "before" features + own fields."""
    return load_clicks(settings).frame.tail(n).reset_index(drop=True)


def _body(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (int(row[k]) if k in ("event_time", "dwell_ms") else row[k]) for k in CLICK_FIELDS}


def test_online_propensity_equals_offline_of_the_same_clicks(served: tuple) -> None:
    """Re-scored as of its own time, a click gets exactly the score its offline training row
    gets from the champion's graph (online = offline parity of features and scores)."""
    client, settings, name, _ = served
    df = _offline(settings, 100)
    resp = client.post("/v1/admin/rescore/propensity", json={"clicks": [_body(r) for r in df.to_dict("records")]})
    assert resp.status_code == 200, resp.text
    scores = resp.json()["scores"]
    champ = tracking.load(name, tracking.CHAMPION)
    assert champ is not None and all(s["model_version"] == champ.version for s in scores)
    online = np.array([s["purchase_probability"] for s in scores])
    offline = export.score(export.session(champ.onnx), df[list(PROPENSITY_FEATURES)].to_numpy(dtype=np.float32))
    assert np.max(np.abs(online - offline)) <= 1e-6
    assert not any(s["features_missing"] for s in scores)
    assert all(s["scored_at"] == int(t) for s, t in zip(scores, df["event_time"], strict=True))


def test_a_live_click_gets_a_probability_tier_and_reasons(served: tuple) -> None:
    client, settings, name, _ = served
    row = _offline(settings, 1).to_dict("records")[0]
    live = {k: v for k, v in _body(row).items() if k not in ("event_id", "event_time")}
    s = client.post("/v1/propensity", json={**live, "page": "product-1"})
    assert s.status_code == 200, s.text
    body = s.json()
    assert 0 <= body["purchase_probability"] <= 1 and body["tier"] in ("low", "medium", "high")
    assert body["user_id"] == row["user_id"] and body["features_missing"] is False
    assert body["feature_age_ms"] is not None and body["event_id"] is None
    assert all(r["kind"] == "feature" and r["text"] for r in body["reasons"])
    new = client.post("/v1/propensity", json={**live, "user_id": f"never-seen-{uuid.uuid4().hex[:6]}"}).json()
    assert new["features_missing"] is True and new["feature_age_ms"] is None
    info = client.get("/v1/model", params={"task": "personalization"}).json()
    assert info["name"] == name and info["features"] == list(PROPENSITY_FEATURES)
    assert info["promotion"]["version"] == info["version"]
    assert client.get("/v1/model").status_code == 503  # no fraud model registered under that name


@pytest.mark.parametrize(("change", "needle"), [
    ({"surprise": 1}, "extra"),
    ({"action": "buy"}, "action"),
    ({"dwell_ms": -1}, "dwell_ms"),
    ({"dwell_ms": 4_000_000}, "dwell_ms"),
    ({"device": "watch"}, "device"),
    ({"user_id": ""}, "user_id"),
    ({"event_time": 12}, "event_time"),
])
def test_bad_propensity_input_answers_422_with_the_reason(served: tuple, change: dict, needle: str) -> None:
    client, settings, _, _ = served
    body = {**_body(_offline(settings, 1).to_dict("records")[0]), **change}
    resp = client.post("/v1/propensity", json=body)
    assert resp.status_code == 422 and needle in resp.json()["detail"].lower(), resp.text


def test_propensity_needs_the_score_scope_and_rescore_needs_admin(served: tuple, tmp_path: Path) -> None:
    client, settings, _, _ = served
    body = _body(_offline(settings, 1).to_dict("records")[0])
    assert client.post("/v1/propensity", json=body, headers={"Authorization": ""}).status_code == 401
    assert client.post("/v1/admin/rescore/propensity", json={"clicks": [body]},
                       headers={"Authorization": "Bearer wrong"}).status_code == 403
    no_time = {k: v for k, v in body.items() if k != "event_time"}
    r = client.post("/v1/admin/rescore/propensity", json={"clicks": [no_time]})
    assert r.status_code == 422 and "event_time" in r.json()["detail"]


def test_live_propensity_scores_are_published(served: tuple, kafka_bootstrap: str) -> None:
    client, settings, name, topic = served
    rows = _offline(settings, 5).to_dict("records")
    for r in rows:
        assert client.post("/v1/propensity", json=_body(r)).status_code == 200
    want = {r["event_id"] for r in rows}

    def check(rec: dict) -> None:
        assert list(rec["features"]) == list(PROPENSITY_FEATURES) and rec["model_name"] == name
        assert 0 <= rec["purchase_probability"] <= 1 and rec["source"].startswith("api:")

    assert want <= published(kafka_bootstrap, topic, want, check)


def test_without_a_propensity_model_the_endpoint_answers_503_with_the_reason(
        stream_data: tuple[StackSettings, str]) -> None:
    settings, _ = stream_data
    cfg = InferenceSettings(model_name=f"none-{uuid.uuid4().hex[:6]}", propensity_model_name="no-such-model",
                            admin_token=TOKEN, poll_interval_s=0, publish_scores=False)
    click = {"user_id": "user-1", "session_id": "s-1", "action": "view", "dwell_ms": 10, "device": "mobile"}
    with TestClient(create_app(settings, cfg), headers=AUTH) as client:
        r = client.post("/v1/propensity", json=click)
        assert r.status_code == 503 and "no purchase-propensity model loaded" in r.json()["detail"]
        assert "not set" in r.json()["detail"]


def test_a_propensity_challenger_is_scored_in_shadow(served: tuple, tmp_path: Path) -> None:
    """A registered (not promoted) second version is the challenger: each answer carries its
    score beside the champion's, which alone is the answer."""
    client, settings, name, _ = served
    champion = tracking.load(name, tracking.CHAMPION)
    r = train(settings, TrainConfig(task="personalization", model_type="logistic_regression", registered_name=name,
                                    experiment_name="purchase-propensity", cv_folds=0, force=True, min_positives=10,
                                    promote=False, output_dir=tmp_path / "challenger"), say=lambda _m: None)
    assert r.alias == tracking.CHALLENGER and champion is not None
    assert client.post("/v1/admin/reload").status_code == 200
    body = _body(_offline(settings, 1).to_dict("records")[0])
    s = client.post("/v1/propensity", json=body).json()
    assert s["model_version"] == champion.version
    assert s["shadow"] is not None and s["shadow"]["model_version"] == r.version
    assert 0 <= s["shadow"]["purchase_probability"] <= 1


def _drift(settings: StackSettings, out: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    import json
    import os
    import subprocess
    import sys

    from core.settings import REPO_ROOT
    from stack.services import stack_env

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **stack_env(settings), "COLUMNS": "160"}
    done = subprocess.run([sys.executable, "drift_check.py", *args, "--window", "1h", "--json", str(out)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 3), done.stderr
    return done.returncode, json.loads(out.read_text()), done.stdout


def test_drift_check_of_purchase_propensity_judges_on_the_purchases_that_followed(
        served: tuple, stream_run: Any, tmp_path: Path) -> None:
    """``drift_check.py --model purchase-propensity`` (here the test's model name): the
    champion's training reference against the published propensity scores, and performance
    on real ground truth (each scored click's session purchased within the label window, from
    the clicks topic). The same clicks as history: quiet; their dwell times multiplied by 20
    (a shifted click stream): the dwell features drift and the check exits 3."""
    client, settings, name, _ = served
    rows = [_body(r) for r in _offline(settings, 400).to_dict("records")]

    def publish(topic: str, clicks: list[dict[str, Any]]) -> None:
        ensure_topics(settings.kafka_bootstrap, [topic], partitions=1)
        cfg = InferenceSettings(model_name=f"no-fraud-{uuid.uuid4().hex[:6]}", propensity_model_name=name,
                                admin_token=TOKEN, poll_interval_s=0, propensity_topic=topic)
        with TestClient(create_app(settings, cfg), headers=AUTH) as own:
            for i in range(0, len(clicks), 100):
                r = own.post("/v1/admin/rescore/propensity?publish=true", json={"clicks": clicks[i:i + 100]})
                assert r.status_code == 200, r.text

    same, shifted = (f"propensity-{k}-{uuid.uuid4().hex[:6]}" for k in ("same", "shifted"))
    publish(same, rows)
    code, result, stdout = _drift(settings, tmp_path / "same.json", "--model", name, "--scores-topic", same,
                                  "--clicks-topic", stream_run.clicks)
    assert "training reference" in result["reference"]["source"] and result["current"]["rows"] == len(rows)
    assert {f["feature"] for f in result["features"]} == set(PROPENSITY_FEATURES)
    perf = result["performance"]
    assert perf is not None and perf["label"] == "the purchases that followed"
    assert perf["rows_labelled"] == len(rows) and 0 < perf["fraud"] < len(rows)  # purchases and non-purchases
    assert perf["champion"]["auc"] is not None and perf["auc"] > 0.6, perf
    assert perf["severity"] in ("none", "low"), perf
    assert "performance on the purchases that followed" in stdout
    # the labels are the training labels' definition: recomputed here from the offline log
    from training.labels import purchase_labels

    df = load_clicks(settings).frame
    y = purchase_labels(df, int(perf["label_window_ms"])).y
    assert perf["fraud"] == int(y[-len(rows):].sum())

    publish(shifted, [{**r, "dwell_ms": min(3_600_000, r["dwell_ms"] * 20 + 5_000)} for r in rows])
    code, result, _ = _drift(settings, tmp_path / "shifted.json", "--model", name, "--scores-topic", shifted,
                             "--clicks-topic", stream_run.clicks)
    severity = {f["feature"]: f["effective"] for f in result["features"]}
    assert severity["dwell_ms"] in ("medium", "high") and code == 3, severity


def test_the_monitor_watches_purchase_propensity_with_its_own_triggers_and_retrain(
        served: tuple, stream_run: Any) -> None:
    """The loop's monitor for the second model: its check reads the propensity scores and
    judges performance on the purchases that followed; a trigger retrains it with
    ``train.py --task personalization``, audited under its own name, then it cools down
    (its own cooldown: the fraud model's history does not count)."""
    from drift.monitor import Monitor, MonitorSettings, last_decisions

    client, settings, name, _ = served
    topic = f"propensity-mon-{uuid.uuid4().hex[:6]}"
    ensure_topics(settings.kafka_bootstrap, [topic], partitions=1)
    cfg = InferenceSettings(model_name=f"no-fraud-{uuid.uuid4().hex[:6]}", propensity_model_name=name,
                            admin_token=TOKEN, poll_interval_s=0, propensity_topic=topic)
    rows = [_body(r) for r in _offline(settings, 300).to_dict("records")]
    with TestClient(create_app(settings, cfg), headers=AUTH) as own:
        for i in range(0, len(rows), 100):
            assert own.post("/v1/admin/rescore/propensity?publish=true",
                            json={"clicks": rows[i:i + 100]}).status_code == 200
    mcfg = MonitorSettings(model_name=f"absent-{uuid.uuid4().hex[:6]}", propensity_model_name=name,
                           propensity_scores_topic=topic, clicks_topic=stream_run.clicks, min_scores=20,
                           retrain_every_s=0.001, watch=["personalization"],
                           train_args=["--cv-folds", "0", "--min-auc", "0.6", "--max-ece", "0.2", "--force",
                                       "--min-positives", "10"])
    monitor = Monitor(settings, mcfg, "personalization")
    assert monitor.lock.name == f"retrain-{name}.lock"
    before = tracking.load(name, tracking.CHAMPION)
    first = monitor.once()
    ev = first["evidence"]
    assert first["model_name"] == name and "scheduled" in first["triggers"], first
    assert ev["scores_seen"] == len(rows) and ev["recent_auc"] is not None and ev["champion_auc"] is not None, ev
    assert ev["performance_severity"] in ("none", "low") and not ev["new_scenarios"], ev
    assert first["action"] == "retrained" and first["gate"] == "passed", first
    after = tracking.load(name, tracking.CHAMPION)
    assert after is not None and before is not None and int(after.version) > int(before.version)
    assert after.metadata["task"] == "personalization" and after.tags["monitor_triggers"].startswith("scheduled")
    second = monitor.once()
    assert second["action"] == "cooldown" and second["model_name"] == name
    assert last_decisions(settings, model_name=name)[-1]["action"] == "cooldown"
    # the API picks up the new champion on reload
    with TestClient(create_app(settings, cfg), headers=AUTH) as own:
        assert own.get("/v1/model", params={"task": "personalization"}).json()["version"] == after.version
