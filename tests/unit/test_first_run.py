"""What the first run relies on, without services: durations as typed, a generator world that
survives a restart, a drift reference over the whole day, and drift checks that compare a
window with the same hours of the reference (issue 16)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from core.durations import duration_ms
from drift import stats
from drift.cli import same_hours
from streaming.generators.clicks import ClickStream
from streaming.generators.transactions import GenConfig, TransactionStream
from training.pipeline import drift_reference


@pytest.mark.parametrize(("text", "ms"), [("90s", 90_000), ("30m", 1_800_000), ("12h", 43_200_000),
                                          ("2d", 172_800_000), ("1.5h", 5_400_000), ("45", 45_000), ("0", 0)])
def test_durations(text: str, ms: int) -> None:
    assert duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "d", "2w", "-1h", "nan", "inf"])
def test_bad_durations_say_what_is_wrong(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        duration_ms(text)


def test_a_restarted_generator_keeps_its_world_but_not_its_events() -> None:
    """A live generator restarts with a fresh --seed: same cards, users, homes and devices (so
    the history's card states go on), other events and event ids."""
    a = TransactionStream(GenConfig(seed=1, world_seed=42, users=300, start_ms=1_790_000_000_000))
    b = TransactionStream(GenConfig(seed=2, world_seed=42, users=300, start_ms=1_790_000_000_000))
    assert a.world.cards == b.world.cards and a.world.merchants == b.world.merchants
    ids = [{r.value for r in itertools.islice(s, 300)} for s in (a, b)]
    assert not ids[0] & ids[1]
    cards = {c.card_id for c in a.world.cards}
    other = TransactionStream(GenConfig(seed=2, world_seed=7, users=300))
    assert not cards & {c.card_id for c in other.world.cards}  # another world: other cards
    # without a world seed the stream is what it always was under its seed
    t0 = 1_790_000_000_000
    assert [r.value for r in itertools.islice(TransactionStream(GenConfig(seed=5, users=50, start_ms=t0)), 50)] == \
        [r.value for r in itertools.islice(TransactionStream(GenConfig(seed=5, world_seed=5, users=50,
                                                                        start_ms=t0)), 50)]
    c1, c2 = ClickStream(1, 100, world_seed=42), ClickStream(2, 100, world_seed=42)
    assert c1.users == c2.users
    assert ClickStream(1, 100).users != c2.users


def test_the_drift_reference_is_the_last_day_with_out_of_sample_scores() -> None:
    n = 10_000
    df = pd.DataFrame({"event_id": [f"e{i}" for i in range(n)], "event_time": np.arange(n) * 30_000,
                       "x": np.arange(n, dtype=float)})  # 3.5 days
    test = np.arange(9_000, n)  # a time split: the last tenth
    p_test = np.linspace(0, 1, len(test))
    ref = drift_reference(df, ["x"], test, p_test, 2_000, seed=3)
    assert len(ref) == 2_000 and ref["event_id"].is_unique
    last_day = df["event_time"].max() - 86_400_000
    assert ref["event_time"].min() > last_day and ref["event_time"].min() < last_day + 3_600_000  # all of it
    scored = ref[ref["score"].notna()]
    assert 550 < len(scored) < 850 and (scored["x"] >= 9_000).all()  # scores only out of sample ...
    np.testing.assert_allclose(scored["score"], p_test[(scored["x"] - 9_000).astype(int)])  # ... and the right ones
    assert ref[ref["x"] < 9_000]["score"].isna().all()
    # under two days: the test period, the latest rows (earlier windows are still filling)
    short = df.assign(event_time=np.arange(n) * 10_000)  # 28 h
    ref = drift_reference(short, ["x"], test, p_test, 2_000, seed=3)
    assert len(ref) == 1_000 and ref["x"].min() == 9_000 and ref["score"].notna().all()
    # the request's categories are kept (drift's data quality finds new ones)
    with_mcc = drift_reference(df.assign(mcc="5411", country="DE"), ["x"], test, p_test, 100, seed=3)
    assert (with_mcc["mcc"] == "5411").all() and (with_mcc["country"] == "DE").all() and "channel" not in with_mcc


def _day(rng: np.random.Generator, hours: np.ndarray) -> pd.DataFrame:
    """Traffic with a daily cycle: busy evenings, quiet nights (count and amount follow it)."""
    rate = 0.2 + 1.8 * np.exp(-((hours - 20) % 24) ** 2 / 18)
    return pd.DataFrame({"hour_of_day": hours, "is_weekend": 0, "txn_count_1h": rng.poisson(rate),
                         "amount": rng.lognormal(3 + rate, 1.0)})


def test_a_one_hour_window_is_compared_with_the_same_hours_of_the_reference() -> None:
    """An unchanged world at 3 am against a whole day: every feature that follows the clock
    'drifts' (p < 1e-6); against the reference's own 3 am, nothing does."""
    rng = np.random.default_rng(11)
    ref = _day(rng, rng.integers(0, 24, 48_000))
    cur = _day(rng, np.full(1_000, 3))
    cols = ["hour_of_day", "txn_count_1h", "amount"]

    def worst(reference: pd.DataFrame) -> list[stats.FeatureDrift]:
        arrays = lambda d: {c: d[c].to_numpy(dtype=float) for c in cols}  # noqa: E731
        return stats.compare(cols, arrays(reference), arrays(cur), 0.05, "bh")

    assert all(r.p_adjusted < 1e-6 for r in worst(ref))
    cut, source = same_hours(ref, cur, "v1 training reference")
    assert set(cut["hour_of_day"]) == {3} and len(cut) > 1_500 and "same hours of day (03h UTC" in source
    assert all(r.severity == "none" for r in worst(cut))
    two = _day(rng, np.array([3] * 750 + [4] * 250))  # a window across 3 and 4 am, three to one
    cut, _ = same_hours(ref, two, "r")
    assert cut["hour_of_day"].value_counts(normalize=True).round(2).to_dict() == {3: 0.75, 4: 0.25}
    assert cut.index.is_unique and len(cut) > 1_500


def test_the_same_hours_cut_keeps_the_whole_reference_when_it_must() -> None:
    rng = np.random.default_rng(12)
    ref = _day(rng, rng.integers(0, 24, 2_400))
    every_hour = _day(rng, np.arange(240) % 24)
    assert same_hours(ref, every_hour, "r") == (ref, "r")  # a window of a day or more: all of it
    sparse = pd.concat([_day(rng, np.full(50, 4)), _day(rng, rng.integers(5, 24, 2_000))])
    cut, source = same_hours(sparse, _day(rng, np.full(100, 4)), "r")
    assert cut is sparse and "only 50 reference rows at the current hours 04h" in source
    weekend = _day(rng, np.full(100, 4)).assign(is_weekend=1)  # the reference has weekdays only
    cut, source = same_hours(ref, weekend, "r")
    assert cut is ref and "only 0 reference rows" in source
    no_clock = ref.drop(columns=["hour_of_day"])
    assert same_hours(no_clock, _day(rng, np.full(10, 1)), "r") == (no_clock, "r")


def test_a_critical_score_psi_on_a_few_scores_is_not_high_drift_by_itself() -> None:
    """On 15 scores from the very distribution of the reference, PSI is critical almost every
    time (195 of 200 draws here) while the test rarely finds a shift: the PSI band alone made
    every quiet minute 'high'. Now it counts when the test agrees."""
    rng = np.random.default_rng(13)
    draws = [stats.compare(["score"], {"score": rng.beta(1, 30, 5_000)}, {"score": rng.beta(1, 30, 15)}, 0.05)[0]
             for _ in range(200)]
    assert sum(d.psi_band == "critical" for d in draws) > 150
    assert sum(stats.overall([], d)[0] == "high" for d in draws) <= 20  # (the test's own false alarms, ~5%)
    shifted = stats.compare(["score"], {"score": rng.beta(1, 30, 5_000)}, {"score": rng.beta(3, 30, 400)}, 0.05)[0]
    assert shifted.psi_band == "critical" and stats.overall([], shifted)[0] == "high"


def test_chi_square_pools_every_category_too_rare_to_judge() -> None:
    """Bursts of a rare fraud scenario give a feature like txn_count_1m a sparse tail (4, 6, 7,
    8, 9 a few times each in the reference, none now). Only the rarest bin used to be pooled, so
    bins expecting 3 rows stayed and the burst rows of two or three scenarios (rows that are
    not independent) made it 'high' (p 1e-6); every bin left must expect 5 on both sides."""
    ref = np.array([0] * 412 + [1] * 3 + [3] * 1 + [4] * 9 + [6, 7, 8] + [9] * 4, float)
    cur = np.array([0] * 778 + [1] * 6 + [2] * 1 + [3] * 13, float)
    stat, p, bins = stats.chi_square(ref, cur)
    assert bins == 2 and 0.01 < p < 0.1
    wide = np.repeat(np.arange(6.0), 200)  # enough of each: nothing pooled
    assert stats.chi_square(wide, wide)[2] == 6
