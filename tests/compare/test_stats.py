"""The interval pieces of rsft.compare.stats (coverage itself: tests/reliability)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from rsft.compare.stats import (
    interval,
    item_bootstrap,
    mean_ci,
    outcome_matrix,
    seeds_items_ci,
    shared_item_share,
)


def test_item_bootstrap_matches_resampling_indices() -> None:
    """Drawing counts of the distinct values is the ordinary bootstrap of the mean."""
    x = np.random.default_rng(0).choice([0.0, 0.5, 1.0], size=60, p=[0.3, 0.2, 0.5])
    low, high = item_bootstrap(x, replicates=20_000)
    rng = np.random.default_rng(1)
    means = x[rng.integers(0, len(x), (20_000, len(x)))].mean(axis=1)
    want = np.quantile(means, [0.025, 0.975])
    assert (low, high) == pytest.approx(tuple(want), abs=0.01)
    assert item_bootstrap(x) == item_bootstrap(x)  # a fixed seed: the same table every time


def test_shared_item_share() -> None:
    rng = np.random.default_rng(2)
    items = (rng.random(200) < 0.7).astype(float)
    assert shared_item_share(np.tile(items, (4, 1))) == pytest.approx(1.0)  # seeds agree
    noise = (rng.random((4, 200)) < 0.7).astype(float)  # no item effect: each seed's own luck
    assert shared_item_share(noise) < 0.35
    assert shared_item_share(np.ones((3, 10))) == 0.0


def test_one_seed_has_no_interval_and_failures_stay_nan() -> None:
    mean, low, high = seeds_items_ci(np.array([[1.0, 0.0, 1.0, 1.0]]))
    assert mean == 0.75 and math.isnan(low) and math.isnan(high)
    mean, low, high, kind = interval([0.7, math.nan], np.ones((2, 3)))
    assert math.isnan(mean) and kind == "seeds"


@pytest.mark.parametrize(
    "records",
    [
        [{"test_correct": [1, 0]}, {}],
        [{"test_correct": [1, 0]}, {"test_correct": [1, 0, 1]}],
        [{"test_correct": []}],
        [],
    ],
    ids=["one-missing", "sizes-differ", "empty", "no-records"],
)
def test_outcome_matrix_refuses_what_cannot_be_resampled(records) -> None:
    assert outcome_matrix(records) is None


def test_mean_ci_matches_scipy_t_interval() -> None:
    values = np.array([0.81, 0.79, 0.84, 0.80, 0.78])
    mean, low, high = mean_ci(values, confidence=0.95)
    exp_low, exp_high = stats.t.interval(
        0.95, df=len(values) - 1, loc=values.mean(), scale=stats.sem(values)
    )
    # And by hand: t quantile * s / sqrt(n).
    half = stats.t.ppf(0.975, 4) * values.std(ddof=1) / math.sqrt(5)
    assert mean == pytest.approx(values.mean())
    assert (low, high) == pytest.approx((exp_low, exp_high))
    assert (low, high) == pytest.approx((values.mean() - half, values.mean() + half))
    # A lower confidence gives a narrower interval.
    _, low90, high90 = mean_ci(values, confidence=0.90)
    assert low < low90 < high90 < high


def test_mean_ci_edge_cases() -> None:
    mean, low, high = mean_ci([0.7])
    assert mean == 0.7 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(x) for x in mean_ci([0.7, float("nan"), 0.8]))
    assert all(math.isnan(x) for x in mean_ci([]))
    assert mean_ci([0.6, 0.6, 0.6]) == (0.6, 0.6, 0.6)
    with pytest.raises(ValueError):
        mean_ci([0.1, 0.2], confidence=1.5)


def test_item_bootstrap_of_continuous_scores_is_bounded_in_memory(monkeypatch):
    """A custom task.metric (an IoU per image) gives n distinct per-item values: the normal
    interval of their mean, and the same draws in chunks as at once."""
    import rsft.compare.stats as stats_module

    x = np.random.default_rng(0).uniform(0, 1, 500)
    low, high = item_bootstrap(x)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert low == pytest.approx(x.mean() - half, abs=0.003)
    assert high == pytest.approx(x.mean() + half, abs=0.003)
    monkeypatch.setattr(stats_module, "MAX_BOOTSTRAP_CELLS", 7 * len(x))  # chunks of 7
    assert item_bootstrap(x) == (low, high)
