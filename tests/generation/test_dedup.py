"""Deduplication keeps the first copy per prompt, and the cap bounds each prompt's share."""

from __future__ import annotations

import pytest

from rsft.generation.dedup import deduplicate, normalize


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("  The answer is 42.  ", "the answer is 42"),
        ("The\nanswer\t is   42", "the answer is 42"),
        ("42 !.", "42"),
        ("ＡＢＣ １２", "abc 12"),  # full-width forms (NFKC)
        ("Straße", "strasse"),  # casefold, not lower
        ("1,5", "1,5"),  # inner punctuation kept
        ("(x)", "(x)"),
        ("...", ""),
    ],
)
def test_normalize(text, key):
    assert normalize(text) == key


def test_dedup_modes():
    groups = ["a", "a", "a", "b", "a", "b"]
    texts = ["x = 1.", "x = 1.", "X  =  1", "x = 1.", "x = 2", "x = 1"]
    keep = [True] * 6
    assert deduplicate(groups, texts, keep, mode="exact") == [True, False, True, True, True, True]
    # Same text under another prompt is not a duplicate; only the first copy survives.
    assert deduplicate(groups, texts, keep) == [True, False, False, True, True, False]
    assert deduplicate(groups, texts, keep, mode="none") == keep


def test_dropped_candidates_stay_dropped_and_do_not_block_copies():
    groups, texts = ["a"] * 4, ["s", "s", "t", "s"]
    assert deduplicate(groups, texts, [False, True, False, True]) == [False, True, False, False]


def test_cap_per_group_keeps_the_first():
    groups = ["a"] * 5 + ["b"] * 2
    texts = ["1", "1", "2", "3", "4", "1", "2"]
    keep = [True] * 7
    out = deduplicate(groups, texts, keep, max_per_group=2)
    assert out == [True, False, True, False, False, True, True]  # the copy does not use a slot
    assert deduplicate(groups, texts, keep, mode="none", max_per_group=1) == [
        True,
        False,
        False,
        False,
        False,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("kwargs", "args", "match"),
    [
        ({"mode": "fuzzy"}, None, "unknown dedup mode 'fuzzy': choose one of exact, normalized"),
        ({"max_per_group": 0}, None, "max_per_group must be a whole number >= 1"),
        ({}, (["a"], ["x", "y"], [True, True]), "got 1, 2 and 2"),
    ],
)
def test_bad_arguments(kwargs, args, match):
    with pytest.raises(ValueError, match=match):
        deduplicate(*(args or (["a"], ["x"], [True])), **kwargs)
