"""Deduplicate accepted candidates per prompt, and cap how many each prompt keeps.

Sampling k answers at a low temperature often returns the same text several times; training on
copies overweights easy prompts. RFT (Yuan et al. 2023) keeps distinct reasoning paths only, and
ReST-EM caps the kept solutions at 10 per problem so that easy problems do not dominate.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Hashable, Sequence

MODES = ("exact", "normalized", "none")
_SPACE = re.compile(r"\s+")
_TRAILING_PUNCT = ".,;:!?"


def normalize(text: str) -> str:
    """The key two answers share when they differ only in form.

    Exactly: Unicode NFKC (full-width digits, ligatures), casefold, every run of whitespace
    (newlines, tabs) becomes one space, then leading and trailing whitespace and trailing
    ``. , ; : ! ?`` are stripped (repeatedly: "42 !." -> "42"). Inner punctuation is kept, since
    it can change the meaning ("1,5" vs "15").
    """
    text = _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold())
    return text.strip().rstrip(_TRAILING_PUNCT + " ").strip()


def deduplicate(
    groups: Sequence[Hashable],
    completions: Sequence[str],
    keep: Sequence[bool],
    *,
    mode: str = "normalized",
    max_per_group: int | None = None,
) -> list[bool]:
    """A new keep mask: the first of each (group, text) among kept candidates, at most
    ``max_per_group`` per group.

    Candidates are visited in order, so the earliest copy survives and the cap keeps a group's
    first candidates: pass them in generation (random) order, not sorted by reward, unless the
    best should survive. ``mode`` compares the exact text, its :func:`normalize` key, or
    nothing (``"none"``: only the cap applies). Candidates with ``keep`` False stay dropped
    and never block a later copy.
    """
    if mode not in MODES:
        raise ValueError(f"unknown dedup mode {mode!r}: choose one of {', '.join(MODES)}.")
    if max_per_group is not None and (isinstance(max_per_group, bool) or max_per_group < 1):
        raise ValueError(
            f"max_per_group must be a whole number >= 1 (or None for no cap), got {max_per_group}."
        )
    if not len(groups) == len(completions) == len(keep):
        raise ValueError(
            f"groups, completions and keep need one entry per candidate; got {len(groups)}, "
            f"{len(completions)} and {len(keep)}."
        )
    seen: set[tuple[Hashable, str]] = set()
    per_group: Counter[Hashable] = Counter()
    out = [False] * len(keep)
    for i, (group, text, kept) in enumerate(zip(groups, completions, keep)):
        if not kept:
            continue
        if mode != "none":
            key = (group, text if mode == "exact" else normalize(text))
            if key in seen:
                continue
            seen.add(key)
        if max_per_group is not None and per_group[group] >= max_per_group:
            continue
        per_group[group] += 1
        out[i] = True
    return out
