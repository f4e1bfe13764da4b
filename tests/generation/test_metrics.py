"""pass@k equals its definition by enumeration; distinct-n counts what it says."""

from __future__ import annotations

import itertools
import math

import pytest

from rsft.generation.metrics import distinct_n, mean_pass_at_k, pass_at_k


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """The share of k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_special_cases_and_large_n():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the mean correctness
    assert pass_at_k(10, 0, 5) == 0.0 and pass_at_k(10, 10, 1) == 1.0
    # C(2000, 1000) overflows a float; the product form does not.
    exact = 1 - math.comb(1990, 1000) / math.comb(2000, 1000)
    assert pass_at_k(2000, 10, 1000) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((4, 2, 5), "need 1 <= k <= n, got k=5 with n=4"),
        ((4, 2, 0), "need 1 <= k <= n"),
        ((4, 5, 1), "need 0 <= c <= n"),
        ((4, 2, 1.5), "k must be a whole number"),
    ],
)
def test_pass_at_k_validates(args, match):
    with pytest.raises(ValueError, match=match):
        pass_at_k(*args)


def test_mean_pass_at_k():
    correct = {"p1": [True, False, False, False], "p2": [False] * 4, "p3": [True, True]}
    want = (pass_at_k(4, 1, 2) + 0.0 + 1.0) / 3
    assert mean_pass_at_k(correct, 2) == pytest.approx(want)
    assert mean_pass_at_k(list(correct.values()), 2) == pytest.approx(want)
    with pytest.raises(ValueError, match="prompt 'p3' has 2 samples, fewer than k=3"):
        mean_pass_at_k(correct, 3)
    with pytest.raises(ValueError, match="no prompts"):
        mean_pass_at_k({}, 1)


def test_distinct_n():
    assert distinct_n(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)  # ab, bc, ab, bd
    assert distinct_n(["a  b\nc"], 3) == 1.0  # whitespace tokens
    assert distinct_n(["same text"] * 5, 2) == pytest.approx(1 / 5)
    assert distinct_n(["c a", "b c"], 2) == 1.0  # n-grams do not cross texts ("a b")
    assert distinct_n(["one", ""], 2) == 0.0 and distinct_n([], 1) == 0.0
    with pytest.raises(ValueError, match="n must be a whole number >= 1"):
        distinct_n(["a"], 0)
