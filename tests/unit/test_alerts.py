"""The alert rules (deploy/prometheus/alerts.yml): valid, unit-tested with promtool, and naming
only metrics the services export; the Prometheus config `make up` writes is valid too."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from core.settings import REPO_ROOT, StackSettings
from stack.services import ALERT_RULES, SCRAPED, prometheus_conf

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "prometheus" / "alerts_test.yml"
SOURCES = ("streaming", "inference", "drift", "core")
#: PromQL words that look like metric names but are not
PROMQL = {"sum", "rate", "increase", "max", "min", "by", "le", "on", "unless", "clamp_min", "histogram_quantile",
          "and", "or", "time", "bool"}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: make install (scripts/bootstrap.sh) installs Debian's prometheus"
    return path


def exported() -> set[str]:
    """Every series name the project's code can export: counters get _total, histograms
    _bucket/_sum/_count (prometheus_client's naming), gauges their name; plus Prometheus's up."""
    names = {"up"}
    pattern = re.compile(r"\b(Counter|Gauge|Histogram)\(\s*\"([a-z_:][a-z0-9_:]*)\"")
    for package in SOURCES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            for kind, name in pattern.findall(path.read_text()):
                if kind == "Counter":
                    names.add(name if name.endswith("_total") else f"{name}_total")
                elif kind == "Histogram":
                    names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
                else:
                    names.add(name)
    return names


def referenced(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers, strings and numbers removed)."""
    expr = re.sub(r"\{[^}]*\}", "", re.sub(r'"[^"]*"', "", expr))
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # label lists
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {w for w in words - PROMQL if not re.fullmatch(r"\d+(e\d+)?", w)}


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERT_RULES.read_text())["groups"] for r in g["rules"]]


def test_the_rules_are_valid_and_their_unit_tests_pass() -> None:
    check = subprocess.run([promtool(), "check", "rules", str(ALERT_RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([promtool(), "test", "rules", FIXTURE.name], cwd=FIXTURE.parent, capture_output=True,
                          text=True)
    assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr


def test_every_rule_has_a_unit_test() -> None:
    tested = set(re.findall(r"alertname: (\w+)", FIXTURE.read_text()))
    assert {r["alert"] for r in rules()} <= tested


def test_every_rule_reads_metrics_the_services_export() -> None:
    have = exported()
    assert {"stream_events_in_total", "stream_feature_freshness_seconds_bucket", "monitor_drift_severity",
            "inference_request_seconds_bucket", "offline_log_disk_free_bytes"} <= have  # (the scan works)
    for rule in rules():
        names = referenced(rule["expr"])
        assert names, rule["alert"]
        assert names <= have, f"{rule['alert']} reads {sorted(names - have)}, which nothing exports"


def test_the_rules_cover_what_the_issue_asks() -> None:
    have = {r["alert"] for r in rules()}
    assert {"StreamConsumerLagHigh", "StreamFeaturesStale", "StreamDeadLetterRate", "ApiErrorRate",
            "ApiLatencyP99High", "ApiLoadShedding", "ModelStale", "DriftHigh", "RetrainsFailing",
            "OnlineStoreMemoryHigh", "OfflineLogDiskLow"} <= have


def test_make_ups_prometheus_config_is_valid_and_scrapes_every_service(tmp_path: Path) -> None:
    settings = StackSettings(data_dir=tmp_path / "data")
    conf = tmp_path / "prometheus.yml"
    conf.write_text(prometheus_conf(settings))
    (tmp_path / "data" / "secrets").mkdir(parents=True)
    (tmp_path / "data" / "secrets" / "prometheus-api-key").write_text("k")
    check = subprocess.run([promtool(), "check", "config", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    jobs = {j["job_name"] for j in yaml.safe_load(conf.read_text())["scrape_configs"]}
    assert jobs == {"prometheus", *SCRAPED}


def test_compose_prometheus_loads_the_same_rules_and_scrapes_the_same_jobs() -> None:
    conf = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus.yml").read_text())
    assert conf["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert {j["job_name"] for j in conf["scrape_configs"]} == {"prometheus", *SCRAPED}
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in volumes



DASHBOARDS = REPO_ROOT / "deploy" / "grafana" / "provisioning" / "dashboards"


def test_the_dashboards_query_only_metrics_the_services_export() -> None:
    """Grafana is not installable here: its dashboards are provisioned for compose users, and
    every panel's query must name series that exist."""
    import json

    have = exported()
    boards = {p.stem: json.loads(p.read_text()) for p in DASHBOARDS.glob("*.json")}
    assert set(boards) == {"stream", "api", "model"}
    for name, board in boards.items():
        assert board["uid"] and board["panels"], name
        for panel in board["panels"]:
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                names = referenced(target["expr"])
                assert names and names <= have, (name, panel["title"], sorted(names - have))
    provider = yaml.safe_load((DASHBOARDS / "streamfeat.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/etc/grafana/provisioning/dashboards"
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in compose["services"]["grafana"]["volumes"]


def test_make_up_serves_the_same_dashboards_as_prometheus_consoles(tmp_path: Path) -> None:
    """make up's Prometheus gets one console page per Grafana dashboard, with every panel's
    title, queries (so the check above covers them) and legends; the flags point at them."""
    import json

    from stack import consoles
    from stack.services import prometheus_service

    pages, libraries = consoles.write(tmp_path)
    boards = {p.stem: json.loads(p.read_text()) for p in DASHBOARDS.glob("*.json")}
    assert {p.name for p in pages.iterdir()} == {"index.html"} | {f"{b}.html" for b in boards}
    index = (pages / "index.html").read_text()
    assert '{{ range query "up"' in index and '{{ range query "ALERTS"' in index
    for name, board in boards.items():
        page = (pages / f"{name}.html").read_text()
        assert page.startswith('{{ template "head"') and page.rstrip().endswith('{{ template "tail" }}')
        assert f'href="{name}.html"' in index and f'href="{name}.html"' in (libraries / "streamfeat.lib").read_text()
        assert page.count("new PromConsole.Graph(") == len(board["panels"])
        for panel in board["panels"]:
            assert f"<h4>{panel['title']}</h4>" in page
            for target in panel["targets"]:
                assert json.dumps(target["expr"]) in page, target["expr"]
                legend = re.sub(r"\{\{(\w+)\}\}", r"[[\1]]", target.get("legendFormat") or panel["title"])
                assert json.dumps(legend) in page, legend
    # a Grafana-only "{{" in a query cannot go in a Go template: refused, not served broken
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "x.json").write_text(json.dumps({"title": "x", "panels": [
        {"title": "t", "gridPos": {"x": 0, "y": 0}, "targets": [{"expr": "up{job=\"{{job}}\"}"}]}]}))
    with pytest.raises(ValueError, match="console template"):
        consoles.write(tmp_path / "conf2", odd)
    settings = StackSettings(data_dir=tmp_path / "data")
    command = prometheus_service(settings).command
    assert f"--web.console.templates={settings.conf_dir / 'consoles'}" in command
    assert f"--web.console.libraries={settings.conf_dir / 'console_libraries'}" in command


def test_make_status_names_firing_and_pending_alerts() -> None:
    """`make status`'s alerts part, from Prometheus's /api/v1/alerts answer as it comes."""
    from stack.cli import alert_lines

    assert alert_lines(None) == ["alerts: Prometheus does not answer"]
    assert alert_lines([]) == ["alerts: 0 firing"]
    found = [
        {"labels": {"alertname": "StreamDeadLetterRate", "severity": "warning"}, "state": "firing",
         "annotations": {"summary": "2.4% of records dead-lettered"}},
        {"labels": {"alertname": "ApiErrorRate", "severity": "critical"}, "state": "pending", "annotations": {}},
        {"labels": {"alertname": "ModelAge"}, "state": "pending"},
        {"labels": {"alertname": "ModelAge"}, "state": "pending"},  # one per instance: named once
    ]
    assert alert_lines(found) == [
        "alerts: 1 firing; pending: ApiErrorRate, ModelAge",
        "  [red]StreamDeadLetterRate[/] (warning): 2.4% of records dead-lettered"]
