"""The paired difference's interval covers the true difference about 95% of the time, on
simulated held-out outcomes with a known difference and with none; the resolvable
difference is the one detected about 80% of the time."""

from __future__ import annotations

import numpy as np
import pytest

from rsft.compare.paired import ITEMS_ONLY, paired_difference
from rsft.compare.stats import SEEDS_AND_ITEMS

PROMPTS = 200
REPLICATES = 400  # coverage within about ±2.2 points of its true value (one s.e.)


def simulate(rng, delta: float, seeds: int, seed_spread: float):
    """Outcomes of two arms on the same freshly drawn prompts: each prompt has a solve rate
    p_i; the arm adds ``delta``; each seed's model adds its own offset in
    ±``seed_spread`` (mean 0), so the true difference is exactly ``delta``."""
    p = rng.uniform(0.1, 0.7, PROMPTS)
    offsets = rng.uniform(-seed_spread, seed_spread, (2, seeds, 1))
    base = rng.random((seeds, PROMPTS)) < p + offsets[0]
    arm = rng.random((seeds, PROMPTS)) < p + delta + offsets[1]
    return arm, base


def coverage(delta: float, seeds: int, seed_spread: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    covered = excluded = 0
    for _ in range(REPLICATES):
        d = paired_difference(*simulate(rng, delta, seeds, seed_spread))
        covered += d.low <= delta <= d.high
        excluded += d.excludes_zero
    return covered / REPLICATES, excluded / REPLICATES, d


@pytest.mark.parametrize("delta", [0.0, 0.06])
def test_one_seed_covers_the_difference_of_the_prompts(delta):
    rate, _, last = coverage(delta, seeds=1, seed_spread=0.0)
    assert last.kind == ITEMS_ONLY and last.prompts == PROMPTS and last.seeds == 1
    assert 0.92 <= rate <= 0.98


@pytest.mark.parametrize("delta", [0.0, 0.06])
def test_several_seeds_cover_the_difference_of_prompts_and_seeds(delta):
    rate, _, last = coverage(delta, seeds=3, seed_spread=0.08, seed=1)
    assert last.kind == SEEDS_AND_ITEMS
    assert 0.92 <= rate <= 0.995  # the seeds' t part is conservative with few seeds


def test_negative_control_a_one_seed_interval_misses_when_seeds_differ():
    """The prompts-only interval cannot see the seeds' spread: where seeds differ it covers
    far less than 95%, so the coverage tests above can fail."""
    rng = np.random.default_rng(2)
    covered = 0
    for _ in range(REPLICATES):
        arm, base = simulate(rng, 0.0, seeds=1, seed_spread=0.15)
        d = paired_difference(arm, base)
        covered += d.low <= 0.0 <= d.high
    assert covered / REPLICATES < 0.85


def test_a_difference_of_the_resolvable_size_is_detected_about_80_percent_of_the_time():
    _, _, probe = coverage(0.0, seeds=1, seed_spread=0.0, seed=3)
    _, detected, _ = coverage(probe.resolvable, seeds=1, seed_spread=0.0, seed=4)
    assert 0.05 < probe.resolvable < 0.15  # about 2.8 s.e. of a 200-prompt difference
    assert 0.72 <= detected <= 0.88
    _, false_alarms, _ = coverage(0.0, seeds=1, seed_spread=0.0, seed=5)
    assert false_alarms <= 0.08  # with no difference, about 5%


def test_arms_on_different_prompts_are_refused():
    with pytest.raises(ValueError, match="same prompts and seeds"):
        paired_difference(np.ones((1, 10)), np.ones((1, 12)))
