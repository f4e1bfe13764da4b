"""Accept rules over one round's scored candidates.

Candidates are parallel lists: ``rewards`` (``None`` where scoring failed: never accepted) and
``groups`` (the prompt id of each candidate). The rules are objects, like the rule's
:class:`~rsft.rule.Envelope`, named as a config names them; they are the published recipes:

- :class:`Correct` (``correct``): keep ``r >= threshold`` (RFT, STaR, ReST-EM).
- :class:`Tilted` (``tilted``): exact rejection sampling of ``p(y|x) ∝ q(y|x) · exp(r/β)``
  with the rule in :mod:`rsft.rule` (the one place the coin is flipped).
- :class:`BestOfK` (``best_of_k``): the best candidate of each prompt (RAFT, Llama 2).
- :class:`TopFraction` (``top_fraction``): the best ``fraction`` of the round across prompts.
- :class:`RandomControl` (``random``): ``size`` candidates uniformly at random, a control with
  the filter's data size.

Every random choice (coins, tie-breaks, the control) draws from ``generator``, so a selection is
reproducible from its seed.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch

from rsft.config import check_number
from rsft.rule import EnvelopeError, RejectionStats, accept
from rsft.rule.envelope import violations

Rewards = Sequence[float | None]
Groups = Sequence[Hashable]
Gen = torch.Generator | None
Chosen = tuple[list[int], dict[str, Any]]

# The smallest tilted beta: below it (subnormal floats) 1/beta overflows and beta loses its
# precision; a beta this small keeps only the round's largest reward anyway.
MIN_BETA = sys.float_info.min
BETA_FIX = (
    "Below it floats are subnormal and 1/beta overflows; a beta this small already keeps only "
    "the largest reward."
)


@dataclass
class Selection:
    """Which candidates a rule accepted, and the round's statistics.

    ``stats`` always has ``candidates``, ``scored``, ``failed``, ``accepted``,
    ``acceptance_rate`` (accepted / candidates: failed ones count as generated and lost),
    ``prompts``, ``prompts_with_any`` (prompts with at least one accepted candidate),
    ``mean_reward`` and ``mean_reward_accepted`` (``None`` when there is nothing to average),
    plus the rule's own settings and, for ``tilted``, the envelope figures.
    """

    accepted: list[bool]
    rule: str
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def indices(self) -> list[int]:
        return [i for i, keep in enumerate(self.accepted) if keep]


def _check_rewards(rewards: Sequence[float | None], groups: Sequence[Hashable]) -> list[int]:
    """Validate the candidate lists; return the indices of the scored candidates."""
    if len(rewards) != len(groups):
        raise ValueError(
            f"rewards and groups must have one entry per candidate; got {len(rewards)} rewards "
            f"and {len(groups)} groups."
        )
    scored = []
    for i, r in enumerate(rewards):
        if r is None:
            continue
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or not math.isfinite(r):
            raise ValueError(
                f"reward at index {i} is {r!r}: rewards must be finite numbers, or None for a "
                "candidate whose scoring failed."
            )
        scored.append(i)
    return scored


def _ranked(
    indices: list[int], rewards: Sequence[float | None], generator: torch.Generator | None
) -> list[int]:
    """Indices by reward, best first; equal rewards in a random order (shuffle, stable sort)."""
    order = torch.randperm(len(indices), generator=generator).tolist()
    return sorted((indices[j] for j in order), key=lambda i: -rewards[i])  # type: ignore[operator]


def _tilted(
    rewards: Sequence[float | None],
    scored: list[int],
    beta: float,
    r_max: float | None,
    generator: torch.Generator | None,
) -> tuple[list[int], dict[str, Any]]:
    """Accept with probability ``exp((r - r_max)/β)``: log w = r/β, M = exp(r_max/β).

    The rule gets log(w/M) = (r - r_max)/β and log M = 0: the same coins, but finite for any
    rewards and β (r/β alone overflows for rewards near ±1e308 or a tiny β).
    """
    check_beta(beta)
    if r_max is not None and not math.isfinite(r_max):
        raise ValueError(f"tilted: r_max must be finite (a bound on the reward), got {r_max}.")
    r = torch.tensor([rewards[i] for i in scored], dtype=torch.float64)
    settings = {"beta": beta, "r_max_source": "observed" if r_max is None else "given"}
    if not scored:
        return [], {**settings, "r_max": r_max, "log_M": None, "violations": 0}
    if r_max is None:
        r_max = float(r.max())
    log_w = (r - r_max) / beta
    over = violations(log_w, 0.0)
    if over:
        top = float(r.max())
        raise EnvelopeError(
            f"tilted: {over} reward(s) exceed r_max={r_max:g} (largest {top:g}), "
            "so the accepted set would not follow q·exp(r/β). Set r_max to a true upper "
            f"bound of the reward (>= {top:g}), or leave it unset to use the round's "
            "largest reward."
        )
    keep = accept(log_w, 0.0, generator)
    totals = RejectionStats().update(log_w, 0.0, keep)
    chosen = [i for i, k in zip(scored, keep.tolist()) if k]
    log_m = r_max / beta  # reported: inf where it overflows a float, so None then
    return chosen, {
        **settings,
        "r_max": r_max,
        "log_M": log_m if math.isfinite(log_m) else None,
        "violations": totals.violations,
        "expected_acceptance": totals.expected_acceptance,
        "ess": totals.ess,
    }


def check_beta(beta: float, name: str = "tilted: beta") -> None:
    """Refuse a tilted beta that is not finite or below :data:`MIN_BETA`, naming the range."""
    check_number(name, beta, ge=MIN_BETA, fix=BETA_FIX)


@dataclass(frozen=True)
class Correct:
    """Keep ``r >= threshold`` (RFT, STaR, ReST-EM: "correct only")."""

    threshold: float = 1.0
    name: ClassVar[str] = "correct"

    def choose(self, rewards: Rewards, groups: Groups, scored: list[int], generator: Gen) -> Chosen:
        if math.isnan(self.threshold):
            raise ValueError("correct: threshold is NaN.")
        chosen = [i for i in scored if rewards[i] >= self.threshold]  # type: ignore[operator]
        return chosen, {"threshold": self.threshold}


@dataclass(frozen=True)
class Tilted:
    """Accept with probability ``exp((r - r_max)/β)``, so accepted candidates follow
    ``q(y|x) · exp(r/β)`` (normalised) exactly. Give ``r_max`` when the reward has a known
    bound (1 for a 0/1 verifier); a reward above it raises :class:`EnvelopeError`. Unset, it
    is the round's largest reward: the data-dependent 'max' envelope of :mod:`rsft.rule`,
    which accepts more but makes M depend on the draws (exact only as the round grows).
    Small β sharpens towards best-of-k; large β approaches keeping everything."""

    beta: float = 1.0
    r_max: float | None = None
    name: ClassVar[str] = "tilted"

    def choose(self, rewards: Rewards, groups: Groups, scored: list[int], generator: Gen) -> Chosen:
        return _tilted(rewards, scored, self.beta, self.r_max, generator)


@dataclass(frozen=True)
class BestOfK:
    """Per prompt, the single highest reward (ties at random), kept whatever its reward
    unless ``min_reward`` is given and it falls below (RAFT, Llama 2 rejection sampling)."""

    min_reward: float | None = None
    name: ClassVar[str] = "best_of_k"

    def choose(self, rewards: Rewards, groups: Groups, scored: list[int], generator: Gen) -> Chosen:
        chosen, seen = [], set()
        for i in _ranked(scored, rewards, generator):
            if groups[i] not in seen:
                seen.add(groups[i])
                if self.min_reward is None or rewards[i] >= self.min_reward:  # type: ignore[operator]
                    chosen.append(i)
        return chosen, {"min_reward": self.min_reward}


@dataclass(frozen=True)
class TopFraction:
    """The round's best ``round(fraction · scored)`` candidates (at least one; ties at
    random), across prompts."""

    fraction: float = 0.25
    name: ClassVar[str] = "top_fraction"

    def choose(self, rewards: Rewards, groups: Groups, scored: list[int], generator: Gen) -> Chosen:
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"top_fraction: fraction must be in (0, 1], got {self.fraction}.")
        count = max(1, math.floor(self.fraction * len(scored) + 0.5)) if scored else 0
        return _ranked(scored, rewards, generator)[:count], {"fraction": self.fraction}


@dataclass(frozen=True)
class RandomControl:
    """Exactly ``size`` scored candidates uniformly at random: pass the count the filter
    accepted, so the control learns from as much data."""

    size: int | None = None
    name: ClassVar[str] = "random"

    def choose(self, rewards: Rewards, groups: Groups, scored: list[int], generator: Gen) -> Chosen:
        size = self.size
        if size is None or isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise ValueError(
                "random: size (how many candidates to keep) is required, a whole number; pass "
                "the count the filter it controls for accepted."
            )
        if not 0 <= size <= len(scored):
            raise ValueError(
                f"random: size must be between 0 and the {len(scored)} scored candidates, "
                f"got {size}."
            )
        pick = torch.randperm(len(scored), generator=generator)[:size].tolist()
        return [scored[j] for j in pick], {"size": size}


Rule = Correct | Tilted | BestOfK | TopFraction | RandomControl
RULE_CLASSES: dict[str, type[Rule]] = {
    cls.name: cls for cls in (Correct, Tilted, BestOfK, TopFraction, RandomControl)
}
RULES = tuple(RULE_CLASSES)


def make_rule(name: str, **options: Any) -> Rule:
    """The rule called ``name``, given the options it takes (others are ignored: a config
    section holds every rule's options)."""
    if name not in RULE_CLASSES:
        raise ValueError(f"unknown selection rule {name!r}: choose one of {', '.join(RULES)}.")
    cls = RULE_CLASSES[name]
    own = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in options.items() if k in own})


def select(
    rule: str | Rule,
    rewards: Sequence[float | None],
    groups: Sequence[Hashable],
    *,
    threshold: float = 1.0,
    beta: float = 1.0,
    r_max: float | None = None,
    fraction: float = 0.25,
    size: int | None = None,
    min_reward: float | None = None,
    generator: torch.Generator | None = None,
) -> Selection:
    """Apply an accept rule to one round's candidates: a rule object (:class:`Correct`,
    :class:`Tilted`, :class:`BestOfK`, :class:`TopFraction`, :class:`RandomControl`), or a
    rule's name with its options as keywords."""
    if isinstance(rule, str):
        rule = make_rule(
            rule,
            threshold=threshold,
            beta=beta,
            r_max=r_max,
            fraction=fraction,
            size=size,
            min_reward=min_reward,
        )
    scored = _check_rewards(rewards, groups)
    chosen, extra = rule.choose(rewards, groups, scored, generator)
    accepted = [False] * len(rewards)
    for i in chosen:
        accepted[i] = True
    return Selection(accepted, rule.name, {**_summary(rewards, groups, scored, chosen), **extra})


def _mean(values: list[float]) -> float | None:
    """The mean, finite for any finite values (their sum may overflow a float)."""
    return math.fsum(v / len(values) for v in values) if values else None


def _summary(
    rewards: Sequence[float | None],
    groups: Sequence[Hashable],
    scored: list[int],
    chosen: list[int],
) -> dict[str, Any]:
    n = len(rewards)
    return {
        "candidates": n,
        "scored": len(scored),
        "failed": n - len(scored),
        "accepted": len(chosen),
        "acceptance_rate": len(chosen) / n if n else None,
        "prompts": len(set(groups)),
        "prompts_with_any": len({groups[i] for i in chosen}),
        "mean_reward": _mean([rewards[i] for i in scored]),  # type: ignore[misc]
        "mean_reward_accepted": _mean([rewards[i] for i in chosen]),  # type: ignore[misc]
    }
