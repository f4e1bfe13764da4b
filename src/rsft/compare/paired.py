"""Two arms measured on the same held-out prompts: the difference, its interval, and the
smallest difference a design can resolve.

Each arm has a seeds × prompts matrix of per-prompt outcomes (greedy pass@1: 0 or 1; a
sampled pass@k or maj@k: a value in [0, 1]), on the same prompts in the same order. The
difference is taken prompt by prompt, so the prompts' own difficulty, shared by both arms,
cancels; what remains uncertain is which prompts were drawn and which seeds. With two or
more seeds the interval is :func:`rsft.compare.stats.seeds_items_ci` of the per-prompt
differences (the seeds' Student-t part and the prompts' bootstrap, in quadrature); with one
seed only the prompts' part can be measured: the interval then says nothing about another
seed's run, and :attr:`Difference.kind` says so (``"items"``).

The smallest resolvable difference is the one this design detects with 80% power at the
interval's level: ``(z_{1-α/2} + z_{0.8}) × SE``, with SE the interval's half-width over
``z_{1-α/2}`` (a normal approximation, as in any power calculation; 2.8 SE at 95%). A
difference below it may be real but cannot be told from noise with these prompts and seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from rsft.compare.stats import SEEDS_AND_ITEMS, item_bootstrap, seeds_items_ci

ITEMS_ONLY = "items"
"""The kind of a one-seed interval: the prompts' sampling error alone."""

POWER = 0.8
"""The power at which the smallest resolvable difference is stated."""


@dataclass(frozen=True)
class Difference:
    """An arm minus the baseline, paired by prompt, with its interval."""

    mean: float
    low: float
    high: float
    kind: str  # "seeds+items" (two or more seeds) or "items" (one seed)
    resolvable: float  # the smallest difference this design detects with POWER
    prompts: int
    seeds: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0

    @property
    def below_resolution(self) -> bool:
        """Whether the measured difference is smaller than the design can resolve."""
        return abs(self.mean) < self.resolvable


def interval_of(outcomes: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, str]:
    """``(mean, low, high, kind)`` of a seeds × prompts matrix (values or differences)."""
    outcomes = np.atleast_2d(np.asarray(outcomes, dtype=float))
    if outcomes.shape[0] >= 2:
        mean, low, high = seeds_items_ci(outcomes, confidence)
        return mean, low, high, SEEDS_AND_ITEMS
    mean = float(outcomes.mean())
    low, high = item_bootstrap(outcomes[0], confidence)
    return mean, low, high, ITEMS_ONLY


def paired_difference(
    arm: np.ndarray, baseline: np.ndarray, confidence: float = 0.95
) -> Difference:
    """``arm - baseline`` over the same prompts (columns) and seeds (rows, paired by seed)."""
    arm, baseline = np.atleast_2d(arm).astype(float), np.atleast_2d(baseline).astype(float)
    if arm.shape != baseline.shape:
        raise ValueError(
            f"the arms were measured on different designs ({arm.shape} vs {baseline.shape} "
            "seeds × prompts): a paired difference needs the same prompts and seeds."
        )
    mean, low, high, kind = interval_of(arm - baseline, confidence)
    seeds, prompts = arm.shape
    return Difference(mean, low, high, kind, resolvable(low, high, confidence), prompts, seeds)


def resolvable(low: float, high: float, confidence: float = 0.95) -> float:
    """The smallest difference detected with :data:`POWER` by an interval this wide."""
    if math.isnan(low) or math.isnan(high):
        return math.nan
    z = float(sps.norm.ppf(0.5 + confidence / 2.0))
    se = (high - low) / (2.0 * z)
    return (z + float(sps.norm.ppf(POWER))) * se
