"""Pure training logic: rule labels, top-R labelling, splits, threshold, gate, calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.rules import RULE_INPUTS, RULES, fired
from core.settings import StackSettings
from training import calibration, evaluate, gate, splits
from training.errors import DataError
from training.labels import label

QUIET = {"velocity_score": 0.2, "txn_count_5m": 1, "geo_diversity_score": 0.0, "unique_countries_5m": 1,
         "has_high_risk_mcc": 0, "amount_avg_5m": 40.0, "is_weekend": 0, "hour_of_day": 14, "amount_max_5m": 40.0}
FIRING = {
    "high_velocity": {"velocity_score": 0.85, "txn_count_5m": 7, "amount_max_5m": 40.0},
    "geo_hopping": {"geo_diversity_score": 0.86, "unique_countries_5m": 3},
    "high_risk_merchant": {"has_high_risk_mcc": 1, "amount_avg_5m": 600.0, "amount_max_5m": 600.0},
    "night_weekend": {"is_weekend": 1, "hour_of_day": 3},
    "large_single": {"amount_max_5m": 1500.0, "amount_avg_5m": 1500.0, "txn_count_5m": 1},
}
EDGES = {  # just outside each rule
    "high_velocity": {"velocity_score": 0.85, "txn_count_5m": 5},
    "geo_hopping": {"geo_diversity_score": 0.86, "unique_countries_5m": 2},
    "high_risk_merchant": {"has_high_risk_mcc": 1, "amount_avg_5m": 500.0},
    "night_weekend": {"is_weekend": 1, "hour_of_day": 6},
    "large_single": {"amount_max_5m": 1500.0, "txn_count_5m": 2},
}


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{**{f"after_{k}": v for k, v in r.items()}, "event_key": i} for i, r in enumerate(rows)])


def test_quiet_transaction_fires_nothing() -> None:
    assert fired(QUIET) == []


@pytest.mark.parametrize("rule", [r.name for r in RULES])
def test_each_rule_fires_alone_and_not_at_its_edge(rule: str) -> None:
    assert fired({**QUIET, **FIRING[rule]}) == [rule]
    assert fired({**QUIET, **EDGES[rule]}) == []


def test_rule_weights_are_seed_002s() -> None:
    assert [r.weight for r in RULES] == [0.4, 0.3, 0.2, 0.1, 0.3]
    assert set(RULE_INPUTS) == set(QUIET)


def test_labels_record_which_rules_fired_and_use_the_after_view() -> None:
    rows = [QUIET, {**QUIET, **FIRING["geo_hopping"]}, {**QUIET, **FIRING["high_velocity"], **FIRING["geo_hopping"]}]
    df = _frame(rows)
    df["velocity_score"] = 0.99  # a before-view column must not matter
    lab = label(df)
    assert lab.y.tolist() == [0, 1, 1]
    assert lab.fired_names(2) == ["high_velocity", "geo_hopping"]
    assert lab.score.tolist() == pytest.approx([0.0, 0.3, 0.7])
    assert lab.rule_counts()["geo_hopping"] == 2


def test_top_rate_ties_are_deterministic_and_never_label_zero_scores() -> None:
    rows = [{**QUIET, **FIRING["night_weekend"]}] * 4 + [QUIET] * 96
    df = _frame(rows)
    a = label(df, fraud_rate=0.02)
    b = label(df.iloc[::-1].reset_index(drop=True), fraud_rate=0.02)
    assert a.y.sum() == 2
    assert sorted(df["event_key"][a.y == 1]) == sorted(df.iloc[::-1]["event_key"].to_numpy()[b.y == 1])
    # asks for 50 %, only 4 rows score above zero: only those are fraud (seed 002's bug)
    assert label(df, fraud_rate=0.5).y.sum() == 4
    with pytest.raises(DataError):
        label(df, fraud_rate=1.5)


def _data(n: int = 1000, cards: int = 50) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"event_time": rng.permutation(n) * 1000, "card_id": [f"c{i % cards}" for i in range(n)]})
    return df, (rng.random(n) < 0.1).astype(np.int8)


def test_time_split_is_ordered_and_disjoint() -> None:
    df, y = _data()
    s = splits.split(df, y, "time", 0.1, 0.2)
    t = df["event_time"].to_numpy()
    assert len(s.train) == 700 and len(s.val) == 100 and len(s.test) == 200
    assert t[s.train].max() < t[s.val].min() and t[s.val].max() < t[s.test].min()


def test_stratified_split_keeps_the_fraud_rate() -> None:
    df, y = _data(4000)
    s = splits.split(df, y, "stratified", 0.1, 0.2)
    assert len(set(s.train) | set(s.val) | set(s.test)) == 4000
    assert abs(y[s.test].mean() - y.mean()) < 0.01


@pytest.mark.parametrize("method", ["time", "stratified"])
def test_group_split_keeps_each_card_on_one_side(method: str) -> None:
    df, y = _data(2000, cards=200)
    s = splits.split(df, y, method, 0.1, 0.2, group=True)
    sides = [set(df["card_id"].to_numpy()[idx]) for idx in (s.train, s.val, s.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert len(s.train) + len(s.val) + len(s.test) == 2000


@pytest.mark.parametrize("method", ["time", "stratified"])
def test_group_split_by_user_keeps_each_user_on_one_side(method: str) -> None:
    df, y = _data(2000, cards=200)
    df = df.rename(columns={"card_id": "user_id"})  # personalization rows have no card
    s = splits.split(df, y, method, 0.1, 0.2, group=True, group_key="user_id")
    sides = [set(df["user_id"].to_numpy()[idx]) for idx in (s.train, s.val, s.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert sorted(np.concatenate([s.train, s.val, s.test]).tolist()) == list(range(2000))
    with pytest.raises(DataError, match="needs the card_id column"):
        splits.split(df, y, method, 0.1, 0.2, group=True)


def test_bad_split_sizes_are_a_clear_error() -> None:
    df, y = _data()
    with pytest.raises(DataError, match="split sizes"):
        splits.split(df, y, "time", 0.5, 0.5)


def test_threshold_maximises_f1_or_meets_the_target_precision() -> None:
    y = np.array([0, 0, 0, 0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    thr = evaluate.choose_threshold(y, p)
    best_f1 = max(evaluate.compute(y, p, t)["f1"] for t in p)
    assert evaluate.compute(y, p, thr)["f1"] == pytest.approx(best_f1)
    thr_p = evaluate.choose_threshold(y, p, target_precision=1.0)
    assert thr_p == pytest.approx(0.7)
    assert evaluate.compute(y, p, thr_p)["precision"] == 1.0


METRICS = {"auc": 0.9, "f1": 0.6, "ece": 0.01}


def test_gate_passes_a_better_model_and_lists_every_check() -> None:
    r = gate.evaluate(METRICS, {"auc": 0.8}, {"auc": 0.88, "f1": 0.55}, gate.GateConfig(),
                      psi_vs_champion=0.05, importance_overlap=0.8)
    assert r.passed
    assert [c.name for c in r.checks] == ["min_auc", "calibration", "beats_baseline", "beats_champion",
                                          "prediction_shift", "importance_stability"]


@pytest.mark.parametrize(("kw", "failing"), [
    ({"candidate": {**METRICS, "auc": 0.7}}, {"min_auc", "beats_baseline", "beats_champion"}),
    ({"candidate": {**METRICS, "ece": 0.2}}, {"calibration"}),
    ({"champion": {"auc": 0.95, "f1": 0.5}}, {"beats_champion"}),
    ({"champion": {"auc": 0.85, "f1": 0.7}}, {"beats_champion"}),
    ({"psi": 0.4, "champion": {"auc": 0.895, "f1": 0.55}}, {"prediction_shift"}),
    ({"overlap": 0.1, "champion": {"auc": 0.895, "f1": 0.55}}, {"importance_stability"}),
])
def test_gate_refuses_with_reasons(kw: dict, failing: set[str]) -> None:
    r = gate.evaluate(kw.get("candidate", METRICS), {"auc": 0.8}, kw.get("champion", {"auc": 0.88, "f1": 0.55}),
                      gate.GateConfig(), psi_vs_champion=kw.get("psi", 0.05),
                      importance_overlap=kw.get("overlap", 0.8))
    assert not r.passed
    assert {c.name for c in r.checks if not c.passed} == failing
    assert all(reason.split(":")[0] in failing for reason in r.reasons())


def test_a_clear_gain_explains_a_shift_but_not_a_worse_f1() -> None:
    r = gate.evaluate(METRICS, {"auc": 0.8}, {"auc": 0.85, "f1": 0.55}, gate.GateConfig(),
                      psi_vs_champion=0.6, importance_overlap=0.1)
    assert r.passed and "clear AUC gain" in r.checks[-1].detail
    r = gate.evaluate(METRICS, {"auc": 0.8}, {"auc": 0.85, "f1": 0.65}, gate.GateConfig(),
                      psi_vs_champion=0.6, importance_overlap=0.1)
    assert [c.name for c in r.checks if not c.passed] == ["beats_champion"]


def test_gate_without_champion_skips_the_comparisons() -> None:
    r = gate.evaluate(METRICS, {"auc": 0.8}, None, gate.GateConfig(), champion_note="no champion yet")
    assert r.passed
    assert {c.name for c in r.checks if c.skipped} == {"beats_champion", "prediction_shift", "importance_stability"}


def test_calibration_improves_a_miscalibrated_score() -> None:
    rng = np.random.default_rng(3)
    truth = rng.random(20_000)
    y = (rng.random(20_000) < truth).astype(int)
    raw = truth ** 3  # monotone but badly calibrated
    cal, scores = calibration.choose(raw, y)
    assert cal.method in ("isotonic", "sigmoid")
    assert evaluate.ece(y, cal(raw)) < evaluate.ece(y, raw) / 3


def test_score_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(4)
    a = rng.beta(1, 30, size=20_000)
    assert evaluate.score_psi(a, rng.beta(1, 30, size=20_000)) < 0.01
    assert evaluate.score_psi(a, rng.beta(3, 10, size=20_000)) > 0.25


def test_purchase_labels_look_ahead_within_the_session_only() -> None:
    from training.labels import purchase_labels

    minute = 60_000
    df = pd.DataFrame({
        "session_id": ["s1", "s1", "s1", "s2", "s2", "s3"],
        "event_time": [0, 5 * minute, 10 * minute, 0, 50 * minute, 1 * minute],
        "event_key": [1, 2, 3, 4, 5, 6],
        "action": ["view", "add_to_cart", "purchase", "view", "purchase", "view"],
    }).sample(frac=1.0, random_state=3)  # row order must not matter
    lab = purchase_labels(df, 30 * minute)
    got = dict(zip(df["event_key"], lab.y.tolist(), strict=True))
    # s1: both clicks before the purchase are positive, the purchase itself has none after it;
    # s2: the purchase is 50 min later (outside 30); s3: never purchases
    assert got == {1: 1, 2: 1, 3: 0, 4: 0, 5: 0, 6: 0}
    assert lab.names == () and lab.rule_counts() == {}


@pytest.mark.parametrize("kind", ["grid", "random", "optuna"])
def test_search_finds_the_best_params_of_a_known_objective(kind: str) -> None:
    from training import search

    space = {"a": [1, 2, 3], "b": [0.1, 0.5]}

    def objective(p: dict) -> float:
        return -(p["a"] - 2) ** 2 - abs(p["b"] - 0.5)

    best, trials = search.run(kind, space, objective, n_trials=6 if kind != "optuna" else 25, seed=1)
    assert all(t["score"] == objective(t["params"]) for t in trials)
    assert best == {"a": 2, "b": 0.5}  # the known optimum: a search that ignored the objective would miss it
    if kind != "optuna":  # six trials over six combinations: each exactly once
        assert sorted((t["params"]["a"], t["params"]["b"]) for t in trials) == [
            (a, b) for a in (1, 2, 3) for b in (0.1, 0.5)]


def test_random_search_draws_within_ranges_not_just_their_ends() -> None:
    """Reproduced: a {low, high} range was searched as the two values low and high."""
    import statistics

    from training import search
    from training.errors import TrainingError

    space = {"lr": {"low": 0.001, "high": 1.0, "log": True}, "depth": {"low": 2, "high": 9},
             "frac": {"low": 0.5, "high": 1.0}, "kind": ["a", "b"]}
    _, trials = search.run("random", space, lambda p: p["frac"], n_trials=200, seed=3)
    lr, depth, frac = ([t["params"][k] for t in trials] for k in ("lr", "depth", "frac"))
    assert all(0.001 <= v <= 1.0 for v in lr) and len(set(lr)) == 200
    assert 0.01 < statistics.median(lr) < 0.1  # log-uniform: the median near the geometric mean (0.03)
    assert set(depth) == set(range(2, 10)) and all(isinstance(d, int) for d in depth)
    assert all(0.5 <= f <= 1.0 for f in frac) and len(set(frac)) == 200
    assert {t["params"]["kind"] for t in trials} == {"a", "b"}
    with pytest.raises(TrainingError, match="grid needs lists"):
        search.run("grid", space, lambda p: 0.0, 5, 0)


def test_search_space_errors_are_clear() -> None:
    from training import search
    from training.errors import TrainingError

    with pytest.raises(TrainingError, match="non-empty list"):
        search.run("grid", {"a": []}, lambda p: 0.0, 3, 0)


def test_smote_tomek_balances_the_sklearn_models_only() -> None:
    from training import models

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4)).astype(np.float32)
    y = (X[:, 0] > 1.6).astype(np.int8)
    assert 0.02 < y.mean() < 0.1
    X_res, y_res = models._resample(X, y, True, 0)
    assert 0.45 < y_res.mean() <= 0.5 and len(y_res) > len(y)  # minority oversampled to balance
    assert X_res.shape[1] == 4 and models._resample(X, y, False, 0)[1] is y
    weighted = models.fit("logistic_regression", X, y, None, None, resample=False)
    resampled = models.fit("logistic_regression", X, y, None, None, resample=True)
    # resampled data is balanced already: no class weights on top of it
    assert weighted.estimator.named_steps["lr"].class_weight == "balanced"
    assert resampled.estimator.named_steps["lr"].class_weight is None
    assert resampled.predict(X).shape == (600,)
    with pytest.raises(ValueError, match="sklearn models"):
        models.fit("xgboost", X, y, None, None, resample=True)


def test_yaml_config_errors_are_one_line(tmp_path) -> None:
    from training.config import load_yaml
    from training.errors import TrainingError

    (tmp_path / "bad.yaml").write_text("params: [1, 2\n")
    with pytest.raises(TrainingError, match="not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "odd.yaml").write_text("parms: {}\n")
    with pytest.raises(TrainingError, match="unknown keys parms"):
        load_yaml(tmp_path / "odd.yaml")


@pytest.mark.parametrize("model_type", ["xgboost", "lightgbm"])
def test_warm_start_continues_the_saved_booster_and_exports_it_exactly(model_type: str, tmp_path) -> None:
    """A booster trained on an old pattern, saved as training saves it, continued on a window
    where fraud looks different: more trees, better on the new pattern, ONNX parity holds."""
    from drift.warmstart import continue_booster
    from training import export, models
    from training.pipeline import save_native

    rng = np.random.default_rng(5)
    n, k = 6000, 6
    X_old = rng.normal(size=(n, k)).astype(np.float32)  # noqa: N806
    y_old = (X_old[:, 0] > 1.6).astype(np.int8)
    X_new = rng.normal(size=(n, k)).astype(np.float32)  # noqa: N806
    y_new = ((X_new[:, 0] > 1.6) | (X_new[:, 3] > 1.8)).astype(np.int8)  # a new fraud pattern on feature 3
    fitted = models.fit(model_type, X_old, y_old, None, None, {"n_estimators": 40})
    booster = save_native(fitted, model_type, tmp_path)
    assert booster is not None
    cont, before, after = continue_booster(model_type, booster, X_new[:4000], y_new[:4000], extra_trees=40)
    assert before > 0 and after == before + 40
    hold, y_hold = X_new[4000:], y_new[4000:]
    new_only = (y_hold == 1) & (hold[:, 0] <= 1.6)
    assert new_only.sum() > 10
    assert cont.predict(hold[new_only]).mean() > 2 * fitted.predict(hold[new_only]).mean()
    cal, _ = calibration.choose(cont.predict(X_new[:4000]), y_new[:4000])
    onnx_model = export.build(cont, k, cal, {"model_type": model_type})
    parity = export.parity(onnx_model, cont, cal, hold)
    assert parity["model"] <= 1e-5 and parity["calibration"] <= 1e-5
    with pytest.raises(Exception, match="boosters"):
        continue_booster("random_forest", booster, X_new, y_new)


def test_an_event_id_repeated_across_cards_is_left_out_not_fatal() -> None:
    from training.dataset import drop_ambiguous_event_ids

    df = pd.DataFrame({"event_id": ["a", "b", "b", "c", "c"], "card_id": ["1", "1", "2", "3", "3"],
                       "event_key": [1, 2, 2, 3, 3]})
    kept, dropped = drop_ambiguous_event_ids(df)
    assert dropped == 2 and list(kept["event_id"]) == ["a", "c", "c"]  # "c" twice on one card: readers dedupe
    same, none = drop_ambiguous_event_ids(df[df["event_id"] != "b"])
    assert none == 0 and len(same) == 3


@pytest.mark.security
def test_printed_database_urls_hide_their_password() -> None:
    from training.cli import safe_url

    shown = safe_url("postgresql+psycopg://scorer:s3cr3t-pw@db.internal:5432/risk")
    assert "s3cr3t-pw" not in shown and "scorer:***@db.internal" in shown
    assert safe_url("sqlite:////tmp/scores.db") == "sqlite:////tmp/scores.db"


@pytest.mark.parametrize("model_type", ["xgboost", "lightgbm", "random_forest", "logistic_regression"])
def test_a_weighted_row_counts_like_its_copies(model_type: str) -> None:
    """Inverse-propensity weights: an explored decline observed with probability 1/4 weighs 4,
    like four copies of it (exactly for the linear model; the trees only need to move the
    same way)."""
    from training import models

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    y = (X[:, 0] + rng.normal(0, 1, 600) > 1.2).astype(np.int8)
    w = np.where((y == 1) & (X[:, 1] > 0), 4.0, 1.0)
    reps = w.astype(int)
    Xd, yd = np.repeat(X, reps, axis=0), np.repeat(y, reps)
    params = {"n_estimators": 30} if model_type != "logistic_regression" else {}
    weighted = models.fit(model_type, X, y, None, None, params, sample_weight=w).predict(X)
    copied = models.fit(model_type, Xd, yd, None, None, params).predict(X)
    plain = models.fit(model_type, X, y, None, None, params).predict(X)
    if model_type == "logistic_regression":
        assert np.max(np.abs(weighted - copied)) < 1e-3
    assert np.mean(np.abs(weighted - copied)) < np.mean(np.abs(plain - copied))


def test_an_unreachable_mlflow_is_an_error_not_a_silent_local_registry(tmp_path: Path) -> None:
    """Reproduced: with MLflow down, training registered into a local sqlite store that the
    API never sees, saying so only in a note. Now an error with the fix, unless asked for."""
    import os

    from stack import health
    from training import tracking
    from training.errors import TrainingError

    before = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:  # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: restored by hand, whatever happens
        down = StackSettings(data_dir=tmp_path, mlflow_port=health.free_port())
        with pytest.raises(TrainingError, match="no MLflow tracking server answers .* 'make up'"):
            tracking.connect(down, say=lambda _m: None)
        assert not (tmp_path / "mlflow-local").exists()
        assert tracking.connect(down, say=lambda _m: None, check=False) == down.mlflow_uri  # services retry
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        local = down.model_copy(update={"mlflow_local": True})
        said: list[str] = []
        assert tracking.connect(local, say=said.append).startswith("sqlite:///")
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = before
    assert said and "services do not see it" in said[0]
    assert "MLFLOW_TRACKING_URI" not in os.environ or os.environ["MLFLOW_TRACKING_URI"] == before
