"""Labels from matured ground truth and the ground-truth gate (training/feedback.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training import feedback, gate

NOW = 1_800_000_000_000
DAY = feedback.DAY_MS


def _aligned(is_fraud: list, scenario: list | None = None) -> pd.DataFrame:
    return pd.DataFrame({"is_fraud": pd.array(is_fraud, dtype="boolean"),
                         "scenario": scenario or [("x" if v is not None else None) for v in is_fraud]})


def test_rows_are_labelled_only_once_matured_and_silence_then_means_legit() -> None:
    # feedback fraud (young), feedback legit (young), silent old, silent young, fraud old
    aligned = _aligned([True, False, None, None, True])
    t = np.array([NOW - 1, NOW - 1, NOW - 3 * DAY, NOW - DAY // 2, NOW - 5 * DAY])
    tl = feedback.truth_labels(aligned, t, NOW, maturity_ms=2 * DAY)
    # young rows are unknown, reported or not (keeping only the reported ones would enrich fraud)
    assert tl.known.tolist() == [False, False, True, False, True]
    assert tl.y[tl.known].tolist() == [0, 1]
    assert tl.summary == {"with_feedback": 3, "matured_silent": 1, "declined_unlabelled": 0, "unknown_young": 3,
                          "fraud": 1}


def test_a_declined_transaction_stays_unknown_and_an_explored_one_weighs_for_the_rest() -> None:
    """Selection bias: a decline gets no chargeback, so its silence is not "legit" however old;
    a would-be decline approved for exploration (probability 0.05) weighs 20 in evaluation."""
    aligned = _aligned([None, None, True, None])
    t = np.full(4, NOW - 10 * DAY)
    declined = np.array([True, False, False, True])
    prob = np.array([1.0, 1.0, 0.05, 1.0])
    tl = feedback.truth_labels(aligned, t, NOW, DAY, declined=declined, label_probability=prob)
    assert tl.known.tolist() == [False, True, True, False]
    assert tl.w is not None and tl.w.tolist() == [1.0, 1.0, 20.0, 1.0]
    assert tl.summary["declined_unlabelled"] == 2
    # weighted recall: the explored fraud stands for 20 like it
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.1, 0.5, 0.2])
    w = np.array([20.0, 1.0, 1.0, 1.0])
    assert feedback.at_budget(y, p, 0.25, w)["recall"] == pytest.approx(20 / 21)


def test_combined_labels_use_rules_only_where_truth_is_unknown() -> None:
    aligned = _aligned([True, None, None, False])
    t = np.array([NOW - 10 * DAY, NOW - 10 * DAY, NOW - 10, NOW - 10])
    tl = feedback.truth_labels(aligned, t, NOW, maturity_ms=DAY)
    rules = np.array([0, 1, 0, 1], dtype=np.int8)
    # truth 1; matured silent 0 (the rule's 1 ignored); young unknown -> the rules' 0 and 1
    assert feedback.combined(tl, rules).tolist() == [1, 0, 0, 1]


def test_recall_and_precision_at_an_alert_budget() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    p = np.array([.9, .8, .7, .1, .1, .1, .1, .1, .1, .05])
    got = feedback.at_budget(y, p, budget=0.3)  # top 3 rows reviewed
    assert got == {"recall": pytest.approx(2 / 3), "precision": pytest.approx(2 / 3), "flagged": 3}


def test_card_precision_at_k_counts_cards_per_day() -> None:
    cards = np.array(["a", "a", "b", "c", "a", "b"])
    days = np.array([0, 0, 0, 0, 1, 1])
    y = np.array([0, 1, 0, 0, 0, 0])
    p = np.array([.2, .9, .8, .1, .7, .6])
    # day 0: top-2 cards by max score: a (fraud), b (no) -> 0.5; day 1: a, b, neither -> 0
    assert feedback.card_precision_at_k(cards, days, y, p, k=2) == pytest.approx(0.25)


def _holdout(n: int = 20_000, fraud: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=np.int8)
    y[rng.choice(n, fraud, replace=False)] = 1
    strong = rng.normal(0, 1, n) + 3.0 * y  # separates fraud well
    weak = rng.normal(0, 1, n) + 1.0 * y
    return y, strong, weak


def _gate(y: np.ndarray, new: np.ndarray, old: np.ndarray | None, **kw) -> feedback.GroundTruthVerdict:
    n = len(y)
    return feedback.gate(y, new, old, 0.02, np.array([f"c{i % 500}" for i in range(n)]), np.arange(n) // 5000, **kw)


def test_the_gate_promotes_only_a_confident_win() -> None:
    y, strong, weak = _holdout()
    win = _gate(y, strong, weak)
    assert win.decides and win.passed and win.evidence["recall_diff_ci"][0] > 0
    assert "excludes zero" in win.detail
    lose = _gate(y, weak, strong)
    assert lose.decides and not lose.passed
    # the same model against itself: no confident win, so no flip of champions
    tie = _gate(y, strong, strong + 1e-9)
    assert tie.decides and not tie.passed
    # a hair better by chance: the interval includes zero
    rng = np.random.default_rng(7)
    assert not _gate(y, strong + rng.normal(0, 0.05, len(y)), strong).passed


def test_the_gate_does_not_decide_with_too_few_matured_fraud_cases() -> None:
    y, strong, weak = _holdout(fraud=30)
    v = _gate(y, weak, strong, min_fraud=50)
    assert not v.decides and v.passed and "does not decide yet" in v.detail
    first = _gate(*_holdout()[:2], None)
    assert first.decides and first.passed and "no comparable champion" in first.detail


def test_the_bootstrap_interval_covers_the_truth_about_95_percent_of_the_time() -> None:
    """Two models whose true recall difference is known: over many holdouts drawn from the
    same world, the 95% interval contains it in roughly 95% of them."""
    rng = np.random.default_rng(3)
    covered, runs = 0, 120
    for s in range(runs):
        n, m = 5000, 200
        y = np.zeros(n, dtype=np.int8)
        y[:m] = 1
        # at a 4% budget (200 rows) each model flags exactly the fraud it "catches" plus filler
        p_new = np.where(y == 1, rng.random(n) < 0.7, False).astype(float) + rng.random(n) * 0.01
        p_old = np.where(y == 1, rng.random(n) < 0.6, False).astype(float) + rng.random(n) * 0.01
        _, lo, hi = feedback.paired_bootstrap(y, p_new, p_old, budget=0.04, n_boot=400, seed=s)
        covered += lo <= 0.1 <= hi
    assert 0.88 <= covered / runs <= 0.995


def test_ground_truth_replaces_the_rule_label_champion_checks() -> None:
    r = gate.evaluate({"auc": 0.9, "ece": 0.01, "f1": 0.5}, None, {"auc": 0.99, "f1": 0.9},
                      gate.GateConfig(min_auc=0.5), psi_vs_champion=0.5, importance_overlap=0.0)
    assert not r.passed  # on rule labels the challenger loses
    won = gate.with_ground_truth(r, decides=True, passed=True, detail="recall +0.30")
    assert won.passed and {c.name for c in won.checks if c.skipped} >= set(gate.CHAMPION_CHECKS)
    lost = gate.with_ground_truth(r, decides=True, passed=False, detail="recall -0.1")
    assert not lost.passed and lost.reasons() == ["ground_truth: recall -0.1"]
    undecided = gate.with_ground_truth(r, decides=False, passed=True, detail="too few")
    assert not undecided.passed  # rule labels still decide


def test_the_live_report_judges_the_shadow_challenger_on_matured_rows() -> None:
    from training import live

    rng = np.random.default_rng(2)
    n = 6000
    y = rng.random(n) < 0.05
    t = NOW - np.arange(n)[::-1] * 60_000  # one a minute, the newest now
    champ = np.clip(0.3 * y + rng.normal(0.2, 0.1, n), 0, 1)  # weak
    chall = np.clip(0.8 * y + rng.normal(0.1, 0.05, n), 0, 1)  # strong
    scores = pd.DataFrame({"event_id": [f"e{i}" for i in range(n)], "card_id": [f"c{i % 300}" for i in range(n)],
                           "event_time": t, "version": "3", "p": champ, "declined": champ > 0.45,
                           "label_probability": 1.0, "shadow_version": "4", "shadow_p": chall})
    truth = pd.DataFrame({"event_id": [f"e{i}" for i in np.flatnonzero(y)], "is_fraud": True, "scenario": "x"})
    rep = live.report(scores, truth, maturity_ms=DAY, budget=0.05)
    young = int((t > NOW - DAY).sum())
    assert rep["matured_rows"] <= n - young  # a day of the newest rows has no ground truth yet
    assert rep["champion"]["version"] == "3" and rep["labels"]["declined_unlabelled"] > 0
    ch = rep["challenger"]
    assert ch["version"] == "4" and ch["decides"] and ch["wins"], ch
    assert ch["recall"] > rep["champion"]["recall"]
    empty = live.report(scores.iloc[:0], truth, DAY)
    assert empty["rows"] == 0 and "no scores" in empty["note"]
