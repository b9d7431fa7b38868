"""The first run, as README tells a new user: the commands of its "From nothing to a served,
monitored model" block, read from README and run exactly as written, in a shell, on a stack of
their own (free ports, a fresh data dir and offline log; the Kafka jars and .venv are shared).

- ``make up`` on a stack with no history seeds two days of it (STACK_SEED_HISTORY's default)
  through Kafka and the stream worker, once;
- ``python training/train.py --model-type xgboost`` right after trains a model that passes the
  gate on matured ground truth, and registers and promotes it;
- ``make status`` shows the API serving it within 15 s (polled, as a user would re-run it);
- ``python drift_check.py`` compares like with like: exit 0 (no medium or high drift) on
  live traffic from the very world the history came from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from core.settings import REPO_ROOT
from stack import health

PORTS = ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "REDIS_PORT", "MLFLOW_PORT", "API_PORT", "WORKER_METRICS_PORT",
         "SCORER_METRICS_PORT", "LEARNER_METRICS_PORT", "MONITOR_METRICS_PORT", "PROMETHEUS_PORT", "FEAST_UI_PORT")


def readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"<!-- first-run:.*?-->\s*```bash\n(.*?)```\s*<!-- /first-run -->", text, re.S)
    assert block, "README has no first-run block"
    return [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_lists_the_first_run() -> None:
    assert readme_commands() == ["make up", "source .venv/bin/activate",
                                 "python training/train.py --model-type xgboost", "make status",
                                 "python drift_check.py"]


@pytest.fixture
def own_env(tmp_path: Path):
    repo = tmp_path / "feature_repo"
    shutil.copytree(REPO_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STACK_", "STREAMING_", "INFERENCE_", "MLFLOW_", "KAFKA_", "REDIS_", "MONITOR_"))}
    env.update({f"STACK_{p}": str(port) for p, port in zip(PORTS, health.free_ports(len(PORTS)), strict=True)})
    env.update({"STACK_DATA_DIR": str(tmp_path / "data"), "STACK_FEATURE_REPO": str(repo),
                "STACK_TOPIC_PARTITIONS": "3", "STACK_KAFKA_HEAP": "512m", "STACK_HEALTH_TIMEOUT_S": "180",
                "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
    yield env
    subprocess.run(["make", "down"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=180)


def _run(line: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """One README line in bash, after the block's ``source`` (each line sees the venv)."""
    return subprocess.run(["bash", "-c", f"source .venv/bin/activate && {line}"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_from_nothing_to_a_served_monitored_model(own_env: dict[str, str]) -> None:
    commands = readme_commands()
    assert commands[1] == "source .venv/bin/activate"
    took: dict[str, float] = {}

    t0 = time.monotonic()
    up = _run(commands[0], own_env, 900)
    took["make up"] = time.monotonic() - t0
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    seeded = json.loads((Path(own_env["STACK_DATA_DIR"]) / "seed.json").read_text())
    assert seeded["status"] == "done" and seeded["history"] == "2d", seeded
    assert seeded["records"]["transactions"] > 50_000 and seeded["records"]["clicks"] > 50_000
    assert "seed: " in up.stdout and "stack healthy" in up.stdout
    # no service was down long enough to alert while the history was seeded (the API once was)
    assert "Down (critical)" not in up.stdout, up.stdout[-3000:]

    _prometheus_sees_everything_and_alerts_on_dead_letters(own_env)
    # ...and make status names it (pending or firing; the bad records stay in the rule's 5 min
    # window for minutes)
    status = _run(commands[3], own_env, 120)
    assert status.returncode == 0, status.stdout[-3000:] + status.stderr[-3000:]
    alerts_part = status.stdout[status.stdout.index("\nalerts: "):]
    assert re.search(r"pending: .*StreamDeadLetterRate|StreamDeadLetterRate \(\w+\): ", alerts_part), alerts_part
    _the_feast_ui_shows_the_feature_views_in_a_browser(own_env, Path(own_env["STACK_DATA_DIR"]).parent)
    _the_dashboards_draw_live_graphs(own_env, Path(own_env["STACK_DATA_DIR"]).parent)

    t0 = time.monotonic()
    train = _run(commands[2], own_env, 900)
    took["train"] = time.monotonic() - t0
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    # matured ground truth (alone, or with rule labels on rows too young for it)
    assert re.search(r"^labels: (fraud feedback|combined)", train.stdout, re.M), train.stdout[-3000:]
    assert "alias champion" in train.stdout

    t0 = time.monotonic()
    deadline = time.monotonic() + 60
    while True:
        status = _run(commands[3], own_env, 120)
        assert status.returncode == 0, status.stdout[-3000:] + status.stderr[-3000:]
        if "serving model v1" in status.stdout:
            break
        assert time.monotonic() < deadline, status.stdout[-3000:]
        time.sleep(0.5)  # (make status itself takes seconds)
    took["served"] = time.monotonic() - t0
    assert re.search(r"drift-monitor\s.*RUNNING.*ok", status.stdout), status.stdout
    assert "Feast UI: http://127.0.0.1:" in status.stdout
    # make status reports Prometheus's alerts (the dead-letter alert raised above may be over
    # by now: once the bad records stop, their share of the 5 min window falls under 1 %)
    assert re.search(r"prometheus\s.*RUNNING.*ok", status.stdout) and "\nalerts: " in status.stdout, status.stdout

    # the scorer has scored live traffic with the new champion (a minute of it, as a user would wait)
    time.sleep(max(0.0, 60 - took["served"]))
    t0 = time.monotonic()
    drift = _run(commands[4], own_env, 300)
    took["drift_check"] = time.monotonic() - t0
    out = drift.stdout + drift.stderr
    assert drift.returncode == 0, out[-4000:]
    flat = " ".join(out.split())  # (rich wraps the table's title)
    assert "training reference at the same hours of day" in flat and "overall:" in flat
    print("first run:", {k: round(v, 1) for k, v in took.items()}, "seed:", seeded)

    again = _run(commands[0], own_env, 300)  # a second make up: no second history
    assert again.returncode == 0 and "seed: simulating" not in again.stdout, again.stdout[-3000:]
    assert json.loads((Path(own_env["STACK_DATA_DIR"]) / "seed.json").read_text()) == seeded


def _get(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _prometheus_sees_everything_and_alerts_on_dead_letters(env: dict[str, str]) -> None:
    """make up's Prometheus scrapes every service and has loaded the rules; a burst of
    malformed records (a producer on a new schema) raises StreamDeadLetterRate from the
    worker's real counters."""
    from confluent_kafka import Producer

    prom = f"http://127.0.0.1:{env['STACK_PROMETHEUS_PORT']}"
    deadline = time.monotonic() + 60
    while True:
        targets = _get(f"{prom}/api/v1/targets")["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        if set(health.values()) == {"up"}:
            break
        assert time.monotonic() < deadline, health
        time.sleep(2)
    assert set(health) == {"prometheus", "stream-worker", "stream-scorer", "online-learner", "drift-monitor",
                           "inference-api"}
    groups = _get(f"{prom}/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) >= 15 and {r["health"] for r in rules} == {"ok"}, rules
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{env['STACK_KAFKA_PORT']}"})
    deadline = time.monotonic() + 120
    i = 0
    # a producer that keeps sending what the contract refuses, ~200 records a second: the 5 min
    # window of the rule still holds the history just seeded (360k records), which a trickle
    # would not reach 1 % of
    while True:
        for _ in range(100):
            producer.produce("transactions", key=f"bad-{i}".encode(), value=b"{not json")
            i += 1
        producer.flush(10)
        alerts = {a["labels"]["alertname"]: a["state"] for a in _get(f"{prom}/api/v1/alerts")["data"]["alerts"]}
        if alerts.get("StreamDeadLetterRate") in ("pending", "firing"):
            break
        assert time.monotonic() < deadline, alerts
        time.sleep(0.5)


def _the_feast_ui_shows_the_feature_views_in_a_browser(env: dict[str, str], out: Path) -> None:
    """make up's Feast UI in headless Chromium (Debian's): the feature views page, after its
    JavaScript ran, lists the card and user feature views (DOM), and its screenshot is a real
    rendered page, not a blank or error screen."""
    import numpy as np
    from matplotlib import image

    chromium = shutil.which("chromium")
    assert chromium, "chromium not found: make install (scripts/bootstrap.sh) installs Debian's"
    url = f"http://127.0.0.1:{env['STACK_FEAST_UI_PORT']}/p/streamfeat/feature-view"
    browser = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--virtual-time-budget=20000", "--window-size=1400,900"]
    dom = subprocess.run([*browser, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    for view in ("card_txn_features", "card_window_state", "user_click_features", "user_click_state"):
        assert re.search(rf">\s*{view}\s*</a>", dom), (view, dom[-2000:])
    assert "Feature Views" in dom
    shot = out / "feast-ui.png"
    subprocess.run([*browser, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    pixels = image.imread(shot)
    assert pixels.shape[:2] == (900, 1400)
    assert float(np.std(pixels[:, :, :3])) > 0.05  # text, tables and the logo: not a blank page


def _the_dashboards_draw_live_graphs(env: dict[str, str], out: Path) -> None:
    """make up's dashboards (Prometheus console pages made from the Grafana dashboards) in
    headless Chromium: the stream page draws the seeded stream's events, lag, freshness and the
    dead letters just raised as graphs (no query refused), and the overview lists every
    scraped service as up."""
    import numpy as np
    from matplotlib import image

    from stack import consoles

    chromium = shutil.which("chromium")
    assert chromium, "chromium not found: make install (scripts/bootstrap.sh) installs Debian's"
    base = f"http://127.0.0.1:{env['STACK_PROMETHEUS_PORT']}/consoles"
    browser = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--virtual-time-budget=20000", "--window-size=1400,1600"]
    index = subprocess.run([*browser, "--dump-dom", f"{base}/index.html"], capture_output=True, text=True,
                           timeout=120).stdout
    for job in ("stream-worker", "inference-api", "drift-monitor"):
        assert re.search(rf"<td>{job}</td>\s*<td>yes</td>", index), (job, index[-3000:])
    stream = next(b for b in consoles.boards() if b.page == "stream.html")
    dom = subprocess.run([*browser, "--dump-dom", f"{base}/stream.html"], capture_output=True, text=True,
                         timeout=120).stdout
    assert "Error loading data" not in dom and dom.count("prom_graph_loading") == 0, dom[-3000:]
    drawn = []
    for i, panel in enumerate(stream.panels):
        assert f"<h4>{panel.title}</h4>" in dom, panel.title
        start = dom.index(f'id="panel-{i}"')
        end = dom.find(f'id="panel-{i + 1}"', start)
        if "<svg" in dom[start:end if end > 0 else None]:
            drawn.append(panel.title)
    for title in ("Events in per second, by topic", "Consumer lag (records)", "Feature freshness p50 / p99",
                  "Dead letters per second, by reason"):
        assert title in drawn, (title, drawn)
    shot = out / "dashboard-stream.png"
    subprocess.run([*browser, f"--screenshot={shot}", f"{base}/stream.html"], capture_output=True, timeout=120)
    pixels = image.imread(shot)
    assert pixels.shape[:2] == (1600, 1400) and float(np.std(pixels[:, :, :3])) > 0.05
