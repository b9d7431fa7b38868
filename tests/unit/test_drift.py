"""Drift statistics, the monitor's decisions and reports, in process (no services; the
drift_check CLI run as a process is tested in tests/cli/test_drift_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drift import stats
from tests.support.drift_data import feed, scored

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def _fresh_rng() -> None:
    """Each test draws from its own seeded generator: results do not depend on which tests
    ran before it (or were deselected)."""
    global RNG
    RNG = np.random.default_rng(7)


def test_severity_bands_are_seed_002s() -> None:
    assert [stats.severity(p, 0.05) for p in (0.05, 0.005, 0.0005, 0.00005)] == ["none", "low", "medium", "high"]


def test_psi_bands_and_values() -> None:
    a = RNG.normal(size=50_000)
    assert stats.psi(a, RNG.normal(size=50_000)) < 0.01
    assert stats.psi_band(stats.psi(a, RNG.normal(0.45, 1, size=50_000))) == "warning"
    assert stats.psi_band(stats.psi(a, RNG.normal(1.0, 1, size=50_000))) == "critical"
    flags = (RNG.random(10_000) < 0.1).astype(float)
    assert stats.psi(flags, (RNG.random(10_000) < 0.1).astype(float)) < 0.01
    assert stats.psi(flags, (RNG.random(10_000) < 0.5).astype(float)) > 0.25


def test_chi_square_merges_rare_categories_so_expected_counts_hold() -> None:
    ref = np.concatenate([np.zeros(500), np.ones(480), np.full(3, 2), np.full(2, 3)])
    cur = np.concatenate([np.zeros(490), np.ones(500), np.full(7, 4)])
    stat, p, bins = stats.chi_square(ref, cur)
    assert bins == 3 and p > 0.05  # categories 2, 3, 4 share one bin
    _, p_shift, _ = stats.chi_square(ref, np.concatenate([np.zeros(800), np.ones(200)]))
    assert p_shift < 1e-10


@pytest.mark.parametrize("n", [50, 3000, 300_000])
def test_ks_and_chi_square_equal_scipys(n: int) -> None:
    from scipy import stats as ss

    a, b = RNG.lognormal(3, 1, n), RNG.lognormal(3 + 1.5 / np.sqrt(n), 1, n + 7)  # p in the useful range
    a[: n // 10] = np.round(a[: n // 10])  # ties
    b[: n // 10] = np.round(b[: n // 10])
    d, p = stats.ks(a, b)
    ref = ss.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=0.01 if n > 100_000 else 1e-9, abs=1e-300)  # Kolmogorov's limit
    x, y = RNG.integers(0, 6, n).astype(float), RNG.integers(0, 6, n + 7).astype(float)
    stat, p2, bins = stats.chi_square(x, y)
    table = np.array([[np.sum(x == v) for v in range(6)], [np.sum(y == v) for v in range(6)]])
    want = ss.chi2_contingency(table, correction=False)
    if bins == 6:  # every category frequent enough: nothing merged
        assert (stat, p2) == pytest.approx((want[0], want[1]), rel=1e-9)


def test_psi_equals_the_textbook_histogram_formula() -> None:
    a, b = RNG.normal(size=20_000), RNG.normal(0.2, 1.1, size=20_000)
    edges = np.quantile(a, np.linspace(0, 1, 11))
    edges[0], edges[-1] = -np.inf, np.inf
    pa, pb = np.histogram(a, edges)[0] / len(a), np.histogram(b, edges)[0] / len(b)
    assert stats.psi(a, b) == pytest.approx(float(np.sum((pb - pa) * np.log(pb / pa))), rel=1e-9)


def test_a_quarter_standard_deviation_shift_is_found_with_high_power() -> None:
    found = 0
    for _ in range(200):
        row = stats.compare(["x"], {"x": RNG.normal(size=500)}, {"x": RNG.normal(0.25, 1, size=500)}, 0.05)[0]
        found += row.severity != "none"
    assert found / 200 >= 0.9  # the power of a two-sample KS at n=500, d=0.25 is about 0.95


@pytest.mark.parametrize("kind", ["continuous", "categorical"])
def test_identical_distributions_raise_false_alarms_at_about_alpha(kind: str) -> None:
    """The test's own false alarms (a severity at all), and those of what gates under the
    effect rule (an effective medium or high), from the same runs."""
    runs, alarms, gating = 1000, 0, 0
    for _ in range(runs):
        if kind == "continuous":
            ref, cur = RNG.normal(size=400), RNG.normal(size=400)
        else:
            ref, cur = RNG.integers(0, 5, 400).astype(float), RNG.integers(0, 5, 400).astype(float)
        row = stats.compare(["x"], {"x": ref}, {"x": cur}, 0.05)[0]
        alarms += row.severity != "none"
        gating += row.effective in ("medium", "high")
    # the binomial 99.9% band around 5% of 1000 runs is about 2.8% to 7.4%; the asymptotic KS
    # p-value with discrete steps is slightly conservative, so the lower bound is looser
    assert 0.02 <= alarms / runs <= 0.075
    assert gating / runs <= 0.015  # about alpha/10: binomial 99.9 % bound around 0.5 %


def test_benjamini_hochberg_and_bonferroni() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.5])
    assert stats.adjust(p, "bonferroni").tolist() == pytest.approx([0.04, 0.16, 0.12, 1.0])
    assert stats.adjust(p, "bh").tolist() == pytest.approx([0.04, 0.0533333, 0.0533333, 0.5], rel=1e-4)


def test_thirty_unchanged_features_do_not_cry_wolf_with_correction() -> None:
    cols = [f"f{i}" for i in range(30)]
    ref = {c: RNG.normal(size=2000) for c in cols}
    cur = {c: RNG.normal(size=2000) for c in cols}
    rows = stats.compare(cols, ref, cur, 0.05, "bh")
    assert all(r.effective in ("none", "low") for r in rows)
    status, _ = stats.overall(rows, None)
    assert status in ("none", "low")


def test_a_shifted_feature_is_high_and_a_negligible_one_is_capped_at_low() -> None:
    ref = {"big": RNG.normal(size=100_000), "tiny": RNG.normal(size=100_000)}
    cur = {"big": RNG.normal(1.0, 1, size=100_000), "tiny": RNG.normal(0.03, 1, size=100_000)}
    rows = {r.feature: r for r in stats.compare(["big", "tiny"], ref, cur, 0.05)}
    assert rows["big"].effective == "high" and rows["big"].test == "ks"
    assert rows["tiny"].severity in ("medium", "high") and rows["tiny"].effective == "low"  # significant, negligible


def test_effect_sizes_equal_scipys() -> None:
    import scipy.stats as ss
    from scipy.spatial.distance import jensenshannon

    for n in (1, 37, 5_000):
        a, b = RNG.lognormal(3, 1, n), RNG.lognormal(3.2, 0.8, n + 11)
        _, _, w = stats.ks_and_wasserstein(a, b)
        assert w == pytest.approx(ss.wasserstein_distance(a, b), rel=1e-9)
        x, y = RNG.integers(0, 4, n).astype(float), RNG.integers(1, 7, n + 5).astype(float)
        shares = [np.bincount(v.astype(int), minlength=7) / len(v) for v in (x, y)]
        assert stats.jensen_shannon(x, y) == pytest.approx(jensenshannon(*shares), rel=1e-9, abs=1e-12)
    assert stats.jensen_shannon(np.array([1.0, 2.0]), np.array([2.0, 1.0])) == 0.0
    assert stats.wasserstein_effect(np.ones(10), 0.0) == 0.0  # a constant reference: no division by 0


@pytest.mark.parametrize("n", [2_000, 20_000])
@pytest.mark.parametrize("shift", ["quarter_sd", "amount_30pct"])
def test_material_shifts_with_a_healthy_psi_are_medium_or_high(n: int, shift: str) -> None:
    """PSI calls these healthy (about 0.06-0.08): the old cap hid them at "low"."""
    runs, flagged, healthy = 20, 0, 0
    for _ in range(runs):
        if shift == "quarter_sd":
            ref, cur = RNG.normal(size=n), RNG.normal(0.25, 1, n)
        else:  # a typical transaction amount 30 % higher
            ref, cur = RNG.lognormal(3, 1, n), 1.3 * RNG.lognormal(3, 1, n)
        row = stats.compare(["x"], {"x": ref}, {"x": cur}, 0.05, "bh")[0]
        flagged += row.effective in ("medium", "high") and row.material
        healthy += row.psi_band == "healthy"
    assert flagged == runs
    assert healthy >= runs // 2  # (so it is the effect size that flags them)


def test_a_material_category_shift_counts_and_a_negligible_one_is_capped() -> None:
    n = 200_000
    ref = RNG.choice(4, n, p=[0.5, 0.3, 0.15, 0.05]).astype(float)
    moved = RNG.choice(4, n, p=[0.35, 0.3, 0.2, 0.15]).astype(float)  # JS about 0.14
    barely = RNG.choice(4, n, p=[0.49, 0.3, 0.155, 0.055]).astype(float)  # significant, JS about 0.01
    rows = {r.feature: r for r in stats.compare(["moved", "barely"], {"moved": ref, "barely": ref},
                                                {"moved": moved, "barely": barely}, 0.05)}
    assert rows["moved"].effect_measure == "jensen_shannon" and rows["moved"].effect >= 0.1
    assert rows["moved"].effective == "high"
    assert rows["barely"].severity == "high" and rows["barely"].effective == "low" and not rows["barely"].material
    # the threshold is a setting: a tighter one makes the negligible shift count
    tight = stats.compare(["barely"], {"barely": ref}, {"barely": barely}, 0.05, js_threshold=0.005)[0]
    assert tight.psi_band == "healthy" and tight.material and tight.effective == "high"


def test_the_effect_rule_keeps_high_power_on_a_quarter_sd_shift() -> None:
    found = 0
    for _ in range(200):
        row = stats.compare(["x"], {"x": RNG.normal(size=500)}, {"x": RNG.normal(0.25, 1, size=500)}, 0.05)[0]
        found += row.effective != "none" and row.material
    assert found / 200 >= 0.9


def test_thirty_unchanged_features_at_a_million_rows_stay_quiet() -> None:
    cols = [f"f{i}" for i in range(30)]
    ref = {c: RNG.normal(size=1_000_000) for c in cols}
    cur = {c: RNG.normal(size=1_000_000) for c in cols}
    rows = stats.compare(cols, ref, cur, 0.05, "bh")
    assert all(r.effective in ("none", "low") and not r.material for r in rows)
    assert max(r.effect for r in rows) < 0.01


def _ev(**kw) -> object:
    from drift.monitor import Evidence

    return Evidence(**{"champion_version": "3", "champion_age_s": 60.0, **kw})


def test_monitor_triggers() -> None:
    from drift.monitor import MonitorSettings, decide

    cfg = MonitorSettings()
    assert decide(_ev(), cfg) == []
    assert decide(_ev(champion_version=None, champion_age_s=None), cfg) == ["scheduled"]
    assert decide(_ev(champion_age_s=cfg.retrain_every_s + 1), cfg) == ["scheduled"]
    assert decide(_ev(drifted_key_features=["amount"]), cfg) == ["drift"]
    assert decide(_ev(score_psi=0.3), cfg) == ["drift"]
    assert decide(_ev(score_psi=0.2), cfg) == []
    assert decide(_ev(recent_recall=0.3, champion_recall=0.6), cfg) == ["performance"]
    assert decide(_ev(recent_recall=0.5, champion_recall=0.6), cfg) == []
    assert decide(_ev(recent_auc=0.85, champion_auc=0.95), cfg) == ["performance"]
    assert decide(_ev(recent_auc=0.93, champion_auc=0.95), cfg) == []
    assert decide(_ev(new_scenarios=["slow_drain"]), cfg) == ["new_pattern"]
    assert decide(_ev(recent_fraud_rate=0.05, champion_fraud_rate=0.02), cfg) == ["new_pattern"]
    assert decide(_ev(recent_fraud_rate=0.03, champion_fraud_rate=0.02), cfg) == []


def test_online_learner_validates_before_it_learns_and_reports_per_scenario() -> None:
    from drift.online import FeedbackJoin, OnlineLearner

    rng = np.random.default_rng(3)
    learner = OnlineLearner()
    first = learner.step({"v": 0.0}, False, "legit", 0.1, False)
    assert abs(first - 0.5) < 1e-9  # scored before any learning
    for _ in range(3000):
        fraud = rng.random() < 0.2
        v = rng.normal(2.0 if fraud else 0.0, 1.0)
        learner.step({"v": v}, fraud, "slow_drain" if fraud else "legit", 0.5, False)  # champion blind
    rep = learner.report(last=1000)
    assert rep["labels"] == 1000 and rep["online"]["auc"] > 0.85 and rep["champion"]["auc"] == 0.5
    s = rep["per_scenario"]["slow_drain"]
    assert s["champion_recall"] == 0.0 and s["online_recall"] > 0.3

    join = FeedbackJoin(capacity=2)
    assert join.add_feedback("e1", True, "x") is None  # feedback first: kept pending
    assert join.add_score({"event_id": "e1"})[1] is True
    for i in range(3):
        join.add_score({"event_id": f"s{i}"})
    assert join.evicted == 1 and join.add_feedback("s0", False, "legit") is None


def test_performance_drift_judges_recall_against_the_champion() -> None:
    from drift.performance import performance

    champion = {"auc": 0.97, "recall": 0.8, "fraud_rate": 0.02, "scenarios": ["card_testing"], "source": "t"}
    scores, truth = scored(5000, 100, 40)
    perf = performance(scores, truth.iloc[:4000], champion)  # feedback for 4000 of 5000 so far
    assert perf["rows_labelled"] == 4000 and perf["fraud"] == int(truth.iloc[:4000]["is_fraud"].sum())
    assert perf["recall"] == pytest.approx(scores.iloc[:4000]["decision"].eq("decline").sum() / perf["fraud"])
    lo, hi = perf["recall_ci95"]
    assert lo < perf["recall"] < hi and perf["recall_drop"] > 0.2
    assert perf["severity"] in ("medium", "high") and len(perf["windows"]) == 4
    assert sum(w["rows"] for w in perf["windows"]) == 4000
    same = performance(*scored(5000, 100, 80), champion)
    assert same["severity"] == "none" and abs(same["recall_drop"]) < 0.05
    few = performance(*scored(5000, 8, 1), champion)
    assert few["severity"] == "none" and "fraud labels" in few["note"] and "recall_drop" not in few
    none = performance(scores, None, champion)
    assert none["rows_labelled"] == 0 and none["severity"] == "none"


def test_refused_or_failed_retrains_in_a_row_back_off_the_cooldown_per_model() -> None:
    from drift.monitor import backoff, read_audit, retrain_history

    def line(action: str, at: float, gate: str | None = None, model: str = "m") -> str:
        return json.dumps({"action": action, "at_epoch": at, "gate": gate, "model_name": model})

    assert retrain_history([]) == (None, 0)
    audit = [line("retrained", 1, "passed"), line("none", 2), line("retrained", 3, "refused"),
             line("cooldown", 4), line("retrained", 5, "refused"), line("retrained", 5.5, "passed", model="other")]
    recs = read_audit(audit)
    assert retrain_history(recs, "m") == (5, 2)
    assert retrain_history(recs, "other") == (5.5, 0)
    assert retrain_history(read_audit([*audit, line("retrained", 6, "passed")]), "m") == (6, 0)
    # a failed run does not reset the backoff: it counts like a refusal
    assert retrain_history(read_audit([*audit, line("retrained", 6, "error")]), "m") == (6, 3)
    assert retrain_history(read_audit([*audit, line("interrupted", 7)]), "m") == (5, 2)
    # a torn last line (crash mid-write) and garbage are skipped, not fatal
    torn = [*audit, line("retrained", 8, "refused")[:25], "", "[1, 2]"]
    assert retrain_history(read_audit(torn), "m") == (5, 2)
    assert [backoff(1800, n) for n in (0, 1, 2, 4, 9)] == [1800, 3600, 7200, 28800, 28800]


def _monitor(tmp_path: Path, **kw: object):
    from core.settings import StackSettings
    from drift.monitor import Monitor, MonitorSettings

    return Monitor(StackSettings(data_dir=tmp_path), MonitorSettings(**{"model_name": "m", **kw}))


def test_a_stale_retrain_lock_is_taken_over_and_a_live_one_respected(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    monitor = _monitor(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    monitor.lock.write_text(str(dead.pid))  # left behind by a crashed monitor
    assert monitor._take_lock() == os.getpid() and monitor.lock.read_text() == str(os.getpid())
    monitor.lock.unlink()
    live = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])  # runs until killed
    try:
        monitor.lock.write_text(str(live.pid))
        assert monitor._take_lock() is None and monitor.lock.read_text() == str(live.pid)
    finally:
        live.kill()
        live.wait()
    assert _monitor(tmp_path, model_name="other").lock != monitor.lock  # one lock per model


def test_a_training_run_past_its_timeout_is_killed_and_reported(tmp_path: Path) -> None:
    import sys

    marker = tmp_path / "child.pid"
    hang = [sys.executable, "-c", f"import os, signal; open({str(marker)!r}, 'w').write(str(os.getpid())); "
                                  "signal.pause()"]  # hangs until a signal ends it
    monitor = _monitor(tmp_path, train_command=hang, train_timeout_s=2)
    result = monitor.retrain(["scheduled"])
    assert result["gate"] == "error" and "timed out after 2 s" in result["error"]
    from drift.monitor import _alive

    assert not _alive(int(marker.read_text()))


def test_purchase_labels_are_the_training_labels_of_matured_scores() -> None:
    """Each scored click old enough is positive when its session purchased within the window
    after it, as training labels clicks (training/labels.py); younger ones are not judged."""
    from drift.performance import purchase_labels
    from training.labels import purchase_labels as training_labels

    rng = np.random.default_rng(3)
    n = 400
    clicks = pd.DataFrame({"user_id": [f"u{i % 7}" for i in range(n)], "session_id": rng.integers(0, 40, n).astype(str),
                           "event_time": np.sort(rng.choice(np.arange(0, 10_000_000, 997), n, replace=False)),
                           "action": rng.choice(["view", "add_to_cart", "purchase"], n, p=[0.7, 0.2, 0.1])})
    clicks["session_id"] = clicks["user_id"] + "-" + clicks["session_id"]  # a session belongs to one user
    clicks["event_key"] = np.arange(n)
    clicks["event_id"] = [f"e{i}" for i in range(n)]
    window = 600_000
    purchases = clicks.loc[clicks["action"] == "purchase", ["user_id", "session_id", "event_time"]]
    now = int(clicks["event_time"].max()) + 1
    truth = purchase_labels(clicks, purchases, window, now)
    matured = clicks["event_time"] + window <= now
    assert list(truth["event_id"]) == list(clicks.loc[matured, "event_id"]) and 0 < matured.sum() < n
    want = training_labels(clicks, window).y.astype(bool)[matured.to_numpy()]
    assert truth["is_fraud"].to_numpy().tolist() == want.tolist() and want.any() and not want.all()


# -- data quality, multivariate and segment drift --------------------------------------------

def test_data_quality_finds_each_kind_of_broken_feed_and_nothing_in_a_healthy_one() -> None:
    from drift import quality

    ref, cur = feed(5000, RNG), feed(5000, RNG)
    cols = list(ref.columns)
    assert [i for i in quality.check(ref, cur, cols) if i.severity != "low"] == []
    broken = cur.copy()
    broken["amount"] = broken["amount"].astype(object)
    broken.loc[:99, "amount"] = "n/a-string"  # 2 %: not numbers
    broken.loc[:999, "txn_count_5m"] = np.nan  # 20 % missing
    broken.loc[:599, "hour_of_day"] = 24  # an hour the reference never had (12 %)
    broken["velocity_score"] = 0.0  # stuck
    broken.loc[:299, "channel_atm"] = 1  # (still known values: no issue)
    broken = broken.drop(columns=["mcc_high_risk"])
    found = {(i.column, i.check): i.severity for i in quality.check(ref, broken, cols)}
    assert found[("amount", "dtype")] == "medium"
    assert found[("txn_count_5m", "missing")] == "high"
    assert found[("hour_of_day", "unseen_category")] == "high"
    assert found[("velocity_score", "constant")] == "medium"
    assert found[("mcc_high_risk", "schema")] == "high"
    assert not any(c == "channel_atm" for c, _ in found)
    scaled = cur.assign(amount=cur["amount"] * 100)  # cents instead of units: out of range
    found = {(i.column, i.check): i.severity for i in quality.check(ref, scaled, cols)}
    assert found[("amount", "out_of_range")] == "high"


def test_data_quality_does_not_judge_what_chance_explains_in_a_small_sample() -> None:
    """The first minute of a stack: 40 rows. One row past the reference's range (2.5 %), one
    missing value, and a feature that is 0 in 90 % of the reference at 0 in all 40 rows are
    what an unchanged feed shows; 3 rows of an impossible hour are not."""
    from drift import quality

    ref = feed(800, RNG)
    ref["txn_count_1m"] = (RNG.random(800) < 0.1).astype(float)
    cur = feed(40, RNG).assign(txn_count_1m=0.0)
    cur.loc[0, "amount"] = ref["amount"].max() * 2
    cur.loc[1, "velocity_score"] = np.nan
    cols = list(ref.columns)
    assert [(i.column, i.check) for i in quality.check(ref, cur, cols) if i.severity not in ("none", "low")] == []
    cur.loc[:2, "hour_of_day"] = 24
    found = {(i.column, i.check): i.severity for i in quality.check(ref, cur, cols)}
    assert found[("hour_of_day", "unseen_category")] == "medium"


def test_the_domain_classifier_catches_a_joint_shift_no_single_feature_shows() -> None:
    from drift.multivariate import domain_classifier

    def pair(n: int, rho: float) -> dict[str, np.ndarray]:
        a = RNG.normal(size=n)
        out = {"a": a, "b": rho * a + np.sqrt(1 - rho ** 2) * RNG.normal(size=n)}
        out.update({f"noise{i}": RNG.normal(size=n) for i in range(8)})
        return out

    cols = ["a", "b", *[f"noise{i}" for i in range(8)]]
    ref, same, flipped = pair(4000, 0.8), pair(4000, 0.8), pair(4000, -0.8)
    rows = stats.compare(cols, ref, flipped, 0.05, "bh")
    assert all(r.effective in ("none", "low") for r in rows)  # every marginal is the same
    quiet = domain_classifier(cols, ref, same)
    assert quiet.severity == "none" and quiet.auc < 0.56, quiet
    caught = domain_classifier(cols, ref, flipped)
    assert caught.severity == "high" and caught.low > 0.75, caught
    assert set(list(caught.top_features)[:2]) == {"a", "b"}


def test_the_domain_classifier_stays_quiet_on_the_same_population() -> None:
    from drift.multivariate import domain_classifier

    cols = [f"f{i}" for i in range(10)]
    alarms = 0
    for seed in range(10):
        ref = {c: RNG.normal(size=1500) for c in cols}
        cur = {c: RNG.normal(size=1500) for c in cols}
        alarms += domain_classifier(cols, ref, cur, seed=seed).severity != "none"
    assert alarms == 0


def test_monitor_multivariate_drift_triggers_and_a_broken_feed_does_not() -> None:
    from drift.monitor import MonitorSettings, decide

    cfg = MonitorSettings()
    assert decide(_ev(multivariate_severity="high"), cfg) == ["drift"]
    assert decide(_ev(multivariate_severity="medium"), cfg) == []  # reported, not retrained on
    assert decide(_ev(multivariate_severity="none"), cfg) == []
    assert decide(_ev(drifted_key_features=["amount"], quality_status="high", feed_broken=True), cfg) == []
    # (values out of range only: a real shift shows them too)
    assert decide(_ev(drifted_key_features=["amount"], quality_status="high", feed_broken=False), cfg) == ["drift"]
    assert decide(_ev(recent_recall=0.3, champion_recall=0.6, feed_broken=True), cfg) == ["performance"]


# -- performance estimated before labels (CBPE) ----------------------------------------------

def test_expected_auc_equals_the_pairwise_definition_with_ties() -> None:
    from drift.estimate import expected_auc

    p = RNG.random(150) * 0.6
    s = np.round(p, 1)  # many ties
    num = den = 0.0
    for i in range(len(p)):
        for j in range(len(p)):
            if i != j:
                w = p[i] * (1 - p[j])
                den += w
                num += w * (1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0)
    assert expected_auc(p, s) == pytest.approx(num / den, rel=1e-12)


def test_estimates_from_calibrated_scores_match_the_realized_metrics() -> None:
    """Labels drawn from the scores themselves (calibration holds): the estimate is within a
    few points of the realized metrics and its 95 % interval covers them about 95 % of the time."""
    from sklearn.metrics import roc_auc_score

    from drift.estimate import estimate

    n = 20_000
    p = RNG.beta(0.3, 20, n)
    flagged = p >= 0.05
    est = estimate(p, flagged, budget=0.01, seed=1)
    covered, errors = 0, []
    for _ in range(100):
        y = RNG.random(n) < p
        recall = (y & flagged).sum() / y.sum()
        errors.append(recall - est["recall"]["value"])
        covered += est["recall"]["ci95"][0] <= recall <= est["recall"]["ci95"][1]
        assert abs(roc_auc_score(y, p) - est["auc"]["value"]) < 0.04
        assert abs((y & flagged).sum() / flagged.sum() - est["precision"]["value"]) < 0.03
    assert abs(np.mean(errors)) < 0.01  # unbiased
    assert 0.88 <= covered / 100 <= 1.0
    assert est["recall_at_budget"]["value"] < est["recall"]["value"]  # 1 % flagged vs ~7 %


def test_the_estimate_cannot_see_a_shift_that_breaks_calibration() -> None:
    """Where it fails (and the report says so): new fraud the model scores low. The realized
    recall falls; the estimate, reading only the scores, does not."""
    from drift.estimate import estimate

    n = 20_000
    p = RNG.beta(0.3, 20, n)
    flagged = p >= 0.05
    y = RNG.random(n) < p
    hidden = (~flagged) & (RNG.random(n) < 0.02)  # frauds at low scores: the champion is blind to them
    realized = ((y | hidden) & flagged).sum() / (y | hidden).sum()
    est = estimate(p, flagged)
    assert est["recall"]["value"] - realized > 0.2


def test_performance_reports_the_estimate_before_and_beside_the_labels() -> None:
    from drift.performance import performance

    n = 4000
    p = RNG.beta(0.5, 15, n)
    scores = pd.DataFrame({"event_id": [f"e{i}" for i in range(n)], "score": p,
                           "decision": np.where(p >= 0.1, "review", "approve"),
                           "scored_at": 1_767_225_600_000 + np.arange(n) * 1000})
    champion = {"auc": 0.9, "recall": 0.6, "fraud_rate": 0.03, "scenarios": [], "source": "test"}
    before = performance(scores, None, champion)
    assert before["rows_labelled"] == 0 and before["estimated"]["rows"] == n
    assert len(before["windows"]) == 4 and all(w["estimated"]["rows"] == n // 4 for w in before["windows"])
    y = RNG.random(n) < p
    truth = pd.DataFrame({"event_id": scores["event_id"][: n // 2], "is_fraud": y[: n // 2], "scenario": "x"})
    after = performance(scores, truth, champion)
    assert after["rows_labelled"] == n // 2 and after["estimated"]["rows"] == n  # every score, labelled or not
    assert [w["rows"] for w in after["windows"]] == [1000, 1000, 0, 0]  # labelled rows per window
    assert abs(after["recall"] - after["estimated"]["recall"]["value"]) < 0.1


def test_monitor_estimated_performance_is_an_opt_in_early_trigger() -> None:
    from drift.monitor import MonitorSettings, decide

    low = _ev(estimated_recall=0.2, estimated_recall_ci95=[0.15, 0.3], champion_recall=0.8)
    assert decide(low, MonitorSettings()) == []
    assert decide(low, MonitorSettings(estimate_trigger=True)) == ["performance_estimated"]
    close = _ev(estimated_recall=0.5, estimated_recall_ci95=[0.35, 0.65], champion_recall=0.8)
    assert decide(close, MonitorSettings(estimate_trigger=True)) == []


def test_new_request_categories_are_judged_against_the_reference_s_unseen_mass() -> None:
    """A new MCC now and then is what an unchanged feed shows (many codes are rare: Good-Turing);
    a code the reference never had on 5 % of transactions is not. It is a new pattern, not a
    broken feed."""
    from drift import quality

    codes = [f"{5000 + i}" for i in range(300)]
    weights = 1 / np.arange(1, 301)  # a long tail of rare codes
    weights /= weights.sum()
    ref = pd.DataFrame({"mcc": RNG.choice(codes, 5000, p=weights), "country": RNG.choice(["DE", "FR", "NL"], 5000)})
    cur = pd.DataFrame({"mcc": RNG.choice(codes, 3000, p=weights), "country": RNG.choice(["DE", "FR", "NL"], 3000)})
    same = quality.check_categories(ref, cur, ["mcc", "country", "channel"])
    assert all(i.severity in ("none", "low") for i in same), same
    cur.loc[:149, "mcc"] = "9999"  # 5 %: a code never seen
    cur.loc[:299, "country"] = "ZZ"  # 10 %
    found = {i.column: i for i in quality.check_categories(ref, cur, ["mcc", "country"])}
    assert found["mcc"].check == "new_category" and found["mcc"].severity == "medium" and "9999" in found["mcc"].detail
    assert found["country"].severity == "high"
    assert not quality.feed_broken(list(found.values()))


def test_a_large_window_draws_its_intervals_on_a_sample_and_its_values_on_every_row() -> None:
    from drift import estimate as est_mod

    n = est_mod.MAX_DRAW_ROWS * 3
    p = RNG.beta(0.3, 20, n)
    flagged = p >= 0.05
    big = est_mod.estimate(p, flagged, budget=0.01, draws=100)
    assert big["rows"] == n and big["interval_rows"] == est_mod.MAX_DRAW_ROWS
    e_recall = p[flagged].sum() / p.sum()
    assert big["recall"]["value"] == pytest.approx(e_recall, rel=1e-12)  # from every row
    low, high = big["recall"]["ci95"]
    assert low < e_recall < high and high - low < 0.1


def test_a_redis_clusters_memory_is_summed_over_its_masters_and_a_machine_counted_once() -> None:
    from drift.metrics import cluster_memory

    infos = {"127.0.0.1:7000": {"used_memory": 10, "maxmemory": 100, "total_system_memory": 1000},
             "127.0.0.1:7001": {"used_memory": 20, "maxmemory": 100, "total_system_memory": 1000},
             "redis-3:6379": {"used_memory": 30, "maxmemory": 0, "total_system_memory": 500}}
    assert cluster_memory(infos, "used_memory") == 60
    assert cluster_memory(infos, "maxmemory") == 200
    assert cluster_memory(infos, "total_system_memory") == 1500  # (two masters on one machine: its memory once)
