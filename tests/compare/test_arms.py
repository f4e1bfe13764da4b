"""Arms on the same held-out prompts: metrics per prompt, intervals, paired differences and
the table's account of what the design resolves (simulated outcomes, fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from rsft.compare.arms import per_prompt, smallest_resolvable, summarize_arms
from rsft.compare.arms_table import format_arm_table
from rsft.generation.metrics import pass_at_k
from rsft.generation.results import HeldOutOutcomes


def outcomes(rate: float, rng: np.random.Generator, prompts: int = 200, n: int = 4):
    """One run whose greedy and sampled answers are right with a per-prompt chance."""
    difficulty = np.linspace(0.0, 1.0, prompts)  # the same prompts for every arm
    p = np.clip(rate + 0.8 * (0.5 - difficulty), 0.0, 1.0)
    sampled = rng.binomial(n, p)
    return HeldOutOutcomes(
        prompt_ids=[f"eval-{i}" for i in range(prompts)],
        correct=list(rng.random(prompts) < p),
        samples=n,
        sampled_correct=[int(c) for c in sampled],
        majority_correct=list(sampled > n / 2),
        groups=["seen" if i % 2 else "unseen" for i in range(prompts)],
    )


def test_metrics_per_prompt():
    o = HeldOutOutcomes(["a", "b"], [True, False], 4, [3, 0], [True, False])
    m = per_prompt(o)
    assert m["pass@1"] == [1.0, 0.0]
    assert m["pass@1 sampled"] == [0.75, 0.0]
    assert m["pass@4"] == [pass_at_k(4, 3, 4), 0.0] == [1.0, 0.0]
    assert m["maj@4"] == [1.0, 0.0]
    assert set(per_prompt(HeldOutOutcomes(["a"], [True]))) == {"pass@1"}


def test_a_large_difference_is_resolved_and_none_is_warned_about():
    rng = np.random.default_rng(0)
    arms = {
        "base": [outcomes(0.3, rng) for _ in range(3)],
        "same": [outcomes(0.3, rng) for _ in range(3)],  # the negative control
        "better": [outcomes(0.6, rng) for _ in range(3)],
    }
    rows = {s.arm: s for s in summarize_arms(arms, "base")}
    assert not rows["base"].deltas
    better, same = rows["better"].deltas["pass@1"], rows["same"].deltas["pass@1"]
    assert better.excludes_zero and better.low > 0.15 and not better.below_resolution
    assert not same.excludes_zero and same.below_resolution
    assert better.kind == "seeds+items" and better.seeds == 3 and better.prompts == 200
    assert 0.03 < smallest_resolvable(rows.values()) < 0.2
    assert set(rows["better"].groups) == {"seen", "unseen"}
    table = format_arm_table(list(rows.values()), "base")
    assert (
        "200 held-out prompts × 3 seed(s)" in table and "over seeds and held-out prompts" in table
    )
    assert "Warning: same differs from base" in table
    assert "Warning: better" not in table
    header = table.splitlines()[0]
    for column in ("pass@4", "maj@4", "Δ pass@4", "pass@1 seen", "pass@1 unseen"):
        assert f" {column} |" in header


def test_one_seed_says_its_interval_covers_prompts_only():
    rng = np.random.default_rng(1)
    arms = {"base": [outcomes(0.3, rng)], "rft": [outcomes(0.4, rng)]}
    summaries = summarize_arms(arms, "base")
    assert summaries[1].deltas["pass@1"].kind == "items"
    assert "another seed's runs may differ by more" in format_arm_table(summaries, "base")


def test_arms_on_other_prompts_are_refused():
    rng = np.random.default_rng(2)
    arms = {"base": [outcomes(0.3, rng)], "rft": [outcomes(0.3, rng, prompts=100)]}
    with pytest.raises(ValueError, match="other held-out prompts"):
        summarize_arms(arms, "base")
    with pytest.raises(ValueError, match="baseline 'x'"):
        summarize_arms({"base": arms["base"]}, "x")
