"""One round's choice of candidates: the rule, deduplication and the per-prompt cap, and the
random selection of the same size (the ``random`` arm, or the in-run ``control``).

The random selection is drawn from the same scored candidates with its own seed stream
(``control``), as many as the ``correct`` rule keeps after deduplication and the cap, so
``selection.rule: random`` in one run folder and ``selection.control: random`` beside the
``correct`` rule in another choose the same candidates from the same candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rsft.generation.dedup import deduplicate
from rsft.generation.selection import Correct, RandomControl, select
from rsft.seeding import torch_generator


@dataclass
class RoundChoice:
    """Per candidate: accepted by the rule, kept for fine-tuning, in the random control."""

    accepted: list[bool]
    kept: list[bool]
    rule_stats: dict[str, Any]
    control: list[bool] | None = None


def choose(
    cfg: Any, rnd: int, rewards: Sequence[float | None], groups: Sequence[str], texts: Sequence[str]
) -> RoundChoice:
    """Apply ``cfg.selection`` to one round's scored candidates (``cfg``: an RFTConfig)."""
    s = cfg.selection
    rule = Correct(s.threshold) if s.rule == "random" else s.accept_rule()
    chosen = select(rule, rewards, groups, generator=torch_generator(cfg.seed, "select", rnd))
    kept = deduplicate(groups, texts, chosen.accepted, mode=s.dedup, max_per_group=s.max_per_prompt)
    if s.rule != "random" and s.control != "random":
        return RoundChoice(chosen.accepted, kept, chosen.stats)
    gen = torch_generator(cfg.seed, "control", rnd)
    random = select(RandomControl(sum(kept)), rewards, groups, generator=gen)
    if s.rule == "random":  # the arm learns from the random draw, as the control would
        stats = {"rule": "random", **random.stats, "size_of": {"rule": "correct", **chosen.stats}}
        return RoundChoice(random.accepted, list(random.accepted), stats)
    return RoundChoice(chosen.accepted, kept, chosen.stats, random.accepted)
