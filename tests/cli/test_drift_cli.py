"""The drift_check CLI run as a process on files: exit codes, the JSON and HTML reports, and
one-line errors (no services)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.settings import REPO_ROOT
from tests.support.drift_data import feed, scored

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def _fresh_rng() -> None:
    """Each test draws from its own seeded generator: results do not depend on which tests
    ran before it (or were deselected)."""
    global RNG
    RNG = np.random.default_rng(7)


def _frames(tmp: Path, shift: float) -> tuple[Path, Path]:
    n = 3000
    ref = pd.DataFrame({"amount": RNG.lognormal(3, 1, n), "txn_count_5m": RNG.poisson(1, n),
                        "is_weekend": (RNG.random(n) < 0.3).astype(int), "score": RNG.beta(1, 30, n),
                        "event_id": [f"e{i}" for i in range(n)]})
    cur = ref.copy()
    cur["amount"] = RNG.lognormal(3 + shift, 1, n)
    cur["score"] = RNG.beta(1 + 10 * shift, 30, n)
    ref.to_parquet(tmp / "ref.parquet")
    cur.to_csv(tmp / "cur.csv", index=False)
    return tmp / "ref.parquet", tmp / "cur.csv"



def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "drift_check.py", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "160"})



def test_cli_exit_codes_json_and_html(tmp_path: Path) -> None:
    ref, cur = _frames(tmp_path, 0.0)
    same = _cli("--reference", str(ref), "--current", str(cur), "--json", str(tmp_path / "a.json"))
    assert same.returncode == 0, same.stderr
    ref, cur = _frames(tmp_path, 1.0)
    out = _cli("--reference", str(ref), "--current", str(cur), "--json", str(tmp_path / "b.json"),
               "--html", str(tmp_path / "b.html"), "--significance-level", "0.01", "--max-samples", "2000")
    assert out.returncode == 3, out.stdout + out.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    by = {f["feature"]: f for f in result["features"]}
    assert by["amount"]["effective"] == "high" and by["is_weekend"]["test"] == "chi2"
    assert by["amount"]["effect_measure"] == "wasserstein" and by["amount"]["material"]
    assert by["is_weekend"]["effect_measure"] == "jensen_shannon" and not by["is_weekend"]["material"]
    assert result["thresholds"] == {"wasserstein": 0.1, "jensen_shannon": 0.1}
    assert result["prediction"]["psi_band"] == "critical" and result["status"] == "high"
    assert result["reference"]["rows"] == 2000
    page = (tmp_path / "b.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "amount" in page and "<th>effect</th>" in page
    assert "amount" in out.stdout and "overall" in out.stdout and "material" in out.stdout



def test_cli_a_shift_psi_calls_healthy_fails_the_gate_unless_the_threshold_says_otherwise(tmp_path: Path) -> None:
    """Amounts 30 % higher at 3,000 rows: PSI healthy, the effect size material, exit 3; with
    --wasserstein-threshold above its effect it is capped at low again, exit 0."""
    ref = pd.DataFrame({"amount": RNG.lognormal(3, 1, 3000)})
    cur = pd.DataFrame({"amount": 1.3 * RNG.lognormal(3, 1, 3000)})
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    files = ["--reference", str(tmp_path / "ref.parquet"), "--current", str(tmp_path / "cur.parquet")]
    out = _cli(*files, "--json", str(tmp_path / "a.json"))
    row = json.loads((tmp_path / "a.json").read_text())["features"][0]
    assert row["psi_band"] == "healthy" and row["material"] and row["effect"] > 0.15, row
    assert out.returncode == 3, out.stdout + out.stderr
    assert _cli(*files, "--wasserstein-threshold", "0.5").returncode == 0



@pytest.mark.parametrize(("args", "needle"), [
    (["--reference", "nope.parquet", "--current", "nope.csv"], "file not found"),
    (["--features", "nonexistent"], "mismatched columns"),
    (["--significance-level", "2"], "significance-level"),
    (["--wasserstein-threshold", "0"], "wasserstein-threshold"),
    (["--js-threshold", "-1"], "js-threshold"),
])
def test_cli_errors_are_one_line_and_exit_1(tmp_path: Path, args: list[str], needle: str) -> None:
    ref, cur = _frames(tmp_path, 0.0)
    base = [] if "--reference" in args else ["--reference", str(ref), "--current", str(cur)]
    out = _cli(*base, *args)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], out.stderr



def test_cli_empty_current_window_is_an_error(tmp_path: Path) -> None:
    ref, _ = _frames(tmp_path, 0.0)
    pd.DataFrame({"amount": []}).to_parquet(tmp_path / "empty.parquet")
    out = _cli("--reference", str(ref), "--current", str(tmp_path / "empty.parquet"))
    assert out.returncode == 1 and "empty" in out.stderr



def test_cli_reports_performance_from_a_labelled_current_file(tmp_path: Path) -> None:
    ref, _ = _frames(tmp_path, 0.0)
    scores, truth = scored(3000, 60, 30)
    cur = pd.read_parquet(ref).drop(columns=["event_id"]).assign(**{c: scores[c] for c in ("event_id", "score")},
                                                                  is_fraud=truth["is_fraud"])
    cur.to_parquet(tmp_path / "labelled.parquet")
    out = _cli("--reference", str(ref), "--current", str(tmp_path / "labelled.parquet"), "--threshold", "0.5",
               "--json", str(tmp_path / "p.json"), "--html", str(tmp_path / "p.html"))
    assert out.returncode in (0, 3), out.stderr
    perf = json.loads((tmp_path / "p.json").read_text())["performance"]
    assert perf["rows_labelled"] == 3000 and perf["recall"] == pytest.approx(0.5)
    assert "no champion" in perf["note"]  # a file reference has no champion metrics to compare with
    assert "performance on fraud feedback" in out.stdout
    assert "Performance on fraud feedback" in (tmp_path / "p.html").read_text()



def test_cli_reports_quality_multivariate_and_segments(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    ref, cur = feed(3000, rng), feed(3000, rng)
    online = cur["channel_online"] == 1
    cur.loc[online, "amount"] = cur.loc[online, "amount"] * 2  # the online segment's amounts double
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    files = ["--reference", str(tmp_path / "ref.parquet"), "--current", str(tmp_path / "cur.parquet"), "--all-hours"]
    out = _cli(*files, "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"))
    assert out.returncode == 3, out.stdout + out.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    seg = {s["segment"]: s for s in result["segments"]}
    assert seg["channel=online"]["status"] in ("medium", "high") and seg["channel=online"]["drifted"] == ["amount"]
    assert seg["channel=pos"]["status"] in ("none", "low") and seg["channel=atm"]["drifted"] == []
    assert result["multivariate"]["auc"] > 0.5 and "amount" in result["multivariate"]["top_features"]
    assert result["quality"]["status"] in ("none", "low")
    flat = " ".join(out.stdout.split())
    assert "multivariate (domain classifier)" in flat and "segment channel=online" in flat
    assert "data quality" in (tmp_path / "r.html").read_text()
    skipped = _cli(*files, "--no-multivariate", "--json", str(tmp_path / "s.json"))
    assert skipped.returncode == 3
    assert json.loads((tmp_path / "s.json").read_text())["multivariate"] is None



def test_cli_a_broken_feed_fails_the_check_and_says_so(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    ref, cur = feed(3000, rng), feed(3000, rng)
    cur.loc[:600, "txn_count_5m"] = np.nan
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    out = _cli("--reference", str(tmp_path / "ref.parquet"), "--current", str(tmp_path / "cur.parquet"),
               "--all-hours", "--json", str(tmp_path / "r.json"))
    assert out.returncode == 3, out.stdout + out.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["quality"]["status"] == "high" and result["quality"]["feed_broken"]
    assert result["actions"][0].startswith("data quality: fix the feed")
