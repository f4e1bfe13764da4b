"""Accept rules: each keeps what it claims; the tilted rule samples q·exp(r/β) exactly."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy import stats

from rsft.generation.selection import (
    RULES,
    BestOfK,
    Correct,
    RandomControl,
    Tilted,
    TopFraction,
    make_rule,
    select,
)
from rsft.rule import EnvelopeError

ALPHA = 1e-3  # statistical tests: a fixed seed, so a pass is reproducible, not luck each run


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- tilted


def test_tilted_acceptance_per_reward_level_is_exp_r_minus_rmax_over_beta():
    levels, per_level, beta = [-1.0, 0.0, 0.25, 0.5, 1.0], 4000, 0.5
    rewards = [r for r in levels for _ in range(per_level)]
    groups = [str(i // 4) for i in range(len(rewards))]
    sel = select("tilted", rewards, groups, beta=beta, r_max=1.0, generator=gen(1))
    for j, r in enumerate(levels):
        hits = sum(sel.accepted[j * per_level : (j + 1) * per_level])
        expected = math.exp((r - 1.0) / beta)
        if expected == 1.0:
            assert hits == per_level
        else:
            assert stats.binomtest(hits, per_level, expected).pvalue > ALPHA, (r, hits)
    want = np.mean([math.exp((r - 1.0) / beta) for r in rewards])
    assert sel.stats["expected_acceptance"] == pytest.approx(want)
    assert sel.stats["log_M"] == pytest.approx(2.0) and sel.stats["violations"] == 0
    assert sel.stats["r_max_source"] == "given"


def _draw_candidates(n: int, seed: int):
    """A proposal over five answers with known probabilities and rewards."""
    q = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
    r = np.array([0.0, 1.0, 0.5, 2.0, 1.5])
    answers = np.random.default_rng(seed).choice(len(q), size=n, p=q)
    return q, r, answers


def _accepted_counts(sel, answers, k):
    return np.bincount(answers[np.array(sel.accepted)], minlength=k)


def test_tilted_accepted_follow_q_times_exp_r_over_beta():
    q, r, answers = _draw_candidates(40_000, seed=2)
    beta = 0.7
    rewards = r[answers].tolist()
    groups = [str(i % 1000) for i in range(len(rewards))]
    target = q * np.exp(r / beta)
    target /= target.sum()
    for r_max in (2.0, None):  # a known bound, and the round's maximum (also 2.0 here)
        sel = select("tilted", rewards, groups, beta=beta, r_max=r_max, generator=gen(3))
        counts = _accepted_counts(sel, answers, len(q))
        assert stats.chisquare(counts, counts.sum() * target).pvalue > ALPHA
    # Power: the 'correct' filter (r >= 1) keeps a visibly different distribution.
    sel = select("correct", rewards, groups, threshold=1.0)
    counts = _accepted_counts(sel, answers, len(q))
    assert stats.chisquare(counts, counts.sum() * target).pvalue < 1e-12


def test_tilted_observed_max_equals_given_bound_at_that_value():
    rewards = [0.0, 0.3, 1.0, 0.7] * 50
    groups = [str(i) for i in range(200)]
    observed = select("tilted", rewards, groups, beta=0.3, generator=gen(5))
    given = select("tilted", rewards, groups, beta=0.3, r_max=1.0, generator=gen(5))
    assert observed.accepted == given.accepted
    assert observed.stats["r_max"] == 1.0 and observed.stats["r_max_source"] == "observed"
    higher = select("tilted", rewards, groups, beta=0.3, r_max=2.0, generator=gen(5))
    assert sum(higher.accepted) < sum(given.accepted)  # a loose bound wastes candidates


def test_tilted_reward_above_bound_raises():
    with pytest.raises(EnvelopeError, match=r"1 reward\(s\) exceed r_max=0.5 \(largest 1\)"):
        select("tilted", [0.0, 1.0, 0.5], ["a", "a", "b"], r_max=0.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beta": 0.0}, r"beta must be >= 2\.22507e-308, got 0\.0"),
        ({"beta": -1.0}, r"beta must be >= 2\.22507e-308, got -1\.0"),
        ({"r_max": math.inf}, "r_max must be finite"),
    ],
)
def test_tilted_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        select("tilted", [0.0, 1.0], ["a", "b"], **kwargs)


def test_tilted_handles_huge_rewards_in_log_space():
    """exp(r/β) overflows float64 here; the rule works with r/β and never exponentiates it."""
    sel = select("tilted", [900.0, 1000.0], ["a", "b"], beta=0.5, generator=gen(0))
    assert sel.accepted == [False, True]


# --------------------------------------------------------------------------- correct, best_of_k


def test_correct_keeps_at_or_above_threshold():
    sel = select("correct", [1.0, 0.0, None, 0.5, 2.0], list("abcde"), threshold=0.5)
    assert sel.accepted == [True, False, False, True, True]
    assert sel.stats["threshold"] == 0.5


def test_best_of_k_keeps_each_prompts_best():
    rewards = [0.1, 0.9, 0.5, None, -2.0, -1.0, None, None]
    groups = ["a", "a", "a", "b", "b", "b", "c", "c"]
    sel = select("best_of_k", rewards, groups, generator=gen(0))
    assert sel.indices == [1, 5]  # b's best is kept although negative; c failed entirely
    assert sel.stats["prompts_with_any"] == 2 and sel.stats["prompts"] == 3
    gated = select("best_of_k", rewards, groups, min_reward=0.0, generator=gen(0))
    assert gated.indices == [1]


def test_best_of_k_breaks_ties_uniformly():
    rewards, groups = [1.0, 1.0, 1.0, 0.0], ["a"] * 4
    picks = Counter(
        select("best_of_k", rewards, groups, generator=gen(s)).indices[0] for s in range(600)
    )
    assert set(picks) == {0, 1, 2}
    assert stats.chisquare([picks[0], picks[1], picks[2]]).pvalue > ALPHA


# --------------------------------------------------------------------------- top_fraction, random


def test_top_fraction_keeps_the_best_across_prompts():
    rewards = [0.1, 0.8, None, 0.3, 0.9, 0.2, 0.7, 0.4, 0.6]
    groups = list("aabbccdde")
    sel = select("top_fraction", rewards, groups, fraction=0.25, generator=gen(0))
    assert sel.indices == [1, 4]  # round(0.25 * 8 scored) = 2: rewards 0.9 and 0.8
    assert select("top_fraction", rewards, groups, fraction=0.01).indices == [4]  # at least 1
    everything = select("top_fraction", rewards, groups, fraction=1.0)
    assert everything.indices == [i for i, r in enumerate(rewards) if r is not None]


def test_top_fraction_ties_at_random():
    rewards, groups = [1.0, 0.5, 0.5, 0.5, 0.5], ["a"] * 5
    seen = {
        tuple(select("top_fraction", rewards, groups, fraction=0.4, generator=gen(s)).indices)
        for s in range(100)
    }
    assert seen == {(0, i) for i in range(1, 5)}


def test_random_control_has_size_and_is_uniform():
    rewards = [None if i % 5 == 0 else float(i) for i in range(50)]  # 40 scored
    groups = [str(i // 5) for i in range(50)]
    counts = np.zeros(50)
    for s in range(500):
        sel = select("random", rewards, groups, size=10, generator=gen(s))
        assert sum(sel.accepted) == 10 and sel.stats["size"] == 10
        counts += sel.accepted
    assert counts[::5].sum() == 0  # failed candidates never
    scored = counts[[i for i in range(50) if i % 5]]
    assert stats.chisquare(scored).pvalue > ALPHA  # each scored one with chance 10/40


@pytest.mark.parametrize(
    ("rule", "kwargs", "match"),
    [
        ("random", {}, "size .* is required"),
        ("random", {"size": 4}, "between 0 and the 3 scored candidates, got 4"),
        ("random", {"size": -1}, "between 0 and the 3 scored"),
        ("top_fraction", {"fraction": 0.0}, r"fraction must be in \(0, 1\]"),
        ("top_fraction", {"fraction": 1.5}, r"fraction must be in \(0, 1\]"),
        ("best", {}, "unknown selection rule 'best': choose one of correct, tilted, best_of_k"),
    ],
)
def test_bad_arguments_are_clear(rule, kwargs, match):
    with pytest.raises(ValueError, match=match):
        select(rule, [0.0, 1.0, None, 2.0], list("abcd"), **kwargs)


# --------------------------------------------------------------------------- all rules


@pytest.mark.parametrize("rule", RULES)
def test_failed_candidates_are_never_accepted(rule):
    rewards = [None, 5.0, None, 5.0, 5.0, None]
    sel = select(
        rule, rewards, list("aabbcc"), threshold=-math.inf, fraction=1.0, size=3, generator=gen(0)
    )
    assert sel.accepted == [False, True, False, True, True, False]
    assert sel.rule == rule
    s = sel.stats
    assert (s["candidates"], s["scored"], s["failed"], s["accepted"]) == (6, 3, 3, 3)
    assert s["acceptance_rate"] == 0.5 and s["prompts_with_any"] == 3
    assert s["mean_reward"] == s["mean_reward_accepted"] == 5.0


@pytest.mark.parametrize("rule", ["tilted", "best_of_k", "top_fraction", "random"])
def test_deterministic_given_the_generator(rule):
    rng = np.random.default_rng(0)
    rewards = rng.integers(0, 3, size=300).astype(float).tolist()
    groups = [str(i // 6) for i in range(300)]
    kwargs = {"size": 100, "fraction": 0.3}

    def run(seed):
        return select(rule, rewards, groups, **{**kwargs, "generator": gen(seed)}).accepted

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_no_scored_candidates():
    for rule in RULES:
        sel = select(rule, [None, None], ["a", "b"], size=0)
        assert sel.accepted == [False, False]
        assert sel.stats["accepted"] == 0 and sel.stats["mean_reward"] is None


@pytest.mark.parametrize(
    ("rewards", "groups", "match"),
    [
        ([1.0, 2.0], ["a"], "got 2 rewards and 1 groups"),
        ([1.0, math.nan], ["a", "b"], "reward at index 1 is nan"),
        ([1.0, "1"], ["a", "b"], "reward at index 1 is '1'"),
    ],
)
def test_bad_candidates(rewards, groups, match):
    with pytest.raises(ValueError, match=match):
        select("correct", rewards, groups)


# --------------------------------------------------------------------------- rule objects

RULE_OBJECTS = [
    (Correct(0.5), "correct", {"threshold": 0.5}),
    (Tilted(0.5, r_max=1.0), "tilted", {"beta": 0.5, "r_max": 1.0}),
    (BestOfK(min_reward=0.2), "best_of_k", {"min_reward": 0.2}),
    (TopFraction(0.3), "top_fraction", {"fraction": 0.3}),
    (RandomControl(5), "random", {"size": 5}),
]


@pytest.mark.parametrize(("rule", "name", "options"), RULE_OBJECTS, ids=lambda x: str(x))
def test_a_rule_object_selects_what_its_name_and_options_select(rule, name, options):
    rewards = [0.1 * (i % 11) for i in range(40)]
    groups = [i // 4 for i in range(40)]
    by_object = select(rule, rewards, groups, generator=gen(3))
    by_name = select(name, rewards, groups, **options, generator=gen(3))
    assert by_object.accepted == by_name.accepted and by_object.stats == by_name.stats
    assert by_object.rule == name and make_rule(name, **options) == rule


def test_make_rule_takes_only_the_options_of_its_rule():
    everything = {"threshold": 2.0, "beta": 0.1, "r_max": 1.0, "fraction": 0.5}
    assert make_rule("top_fraction", **everything) == TopFraction(0.5)
    assert make_rule("correct", **everything) == Correct(2.0)
    assert set(RULES) == {"correct", "tilted", "best_of_k", "top_fraction", "random"}
    with pytest.raises(ValueError, match="unknown selection rule 'kept'"):
        make_rule("kept")


def test_the_selection_section_gives_its_rule_as_an_object():
    from rsft.generation.config import SelectionConfig

    assert SelectionConfig(rule="tilted", beta=0.25).accept_rule() == Tilted(0.25, None)
    assert SelectionConfig(threshold=0.5).accept_rule() == Correct(0.5)
