"""The arms of a language-model comparison measured on the same held-out prompts: each arm's
metrics with their intervals, and its difference from the baseline paired by prompt.

Per arm and seed, a run's final model leaves per-prompt outcomes
(:class:`~rsft.generation.results.HeldOutOutcomes`); each metric is a value per prompt —
greedy pass@1 (0 or 1), sampled pass@1 (c/n), unbiased pass@k (Chen et al.; with k = n, 1
when any of the n samples is right), maj@k (the majority answer right) — so a seeds × prompts
matrix per arm. Intervals are :func:`rsft.compare.paired.interval_of` of that matrix (seeds
and prompts; prompts only with one seed), differences
:func:`~rsft.compare.paired.paired_difference`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rsft.compare.paired import Difference, interval_of, paired_difference
from rsft.generation.metrics import pass_at_k
from rsft.generation.results import HeldOutOutcomes

GREEDY = "pass@1"


def per_prompt(o: HeldOutOutcomes) -> dict[str, list[float]]:
    """Every metric this run's outcomes support, as one value per held-out prompt."""
    out: dict[str, list[float]] = {GREEDY: [float(c) for c in o.correct]}
    if o.samples and o.sampled_correct is not None:
        n = o.samples
        out["pass@1 sampled"] = [c / n for c in o.sampled_correct]
        out[f"pass@{n}"] = [pass_at_k(n, c, n) for c in o.sampled_correct]
        if o.majority_correct is not None:
            out[f"maj@{n}"] = [float(m) for m in o.majority_correct]
    return out


@dataclass
class Estimate:
    mean: float
    low: float
    high: float
    kind: str

    @classmethod
    def of(cls, matrix: np.ndarray) -> Estimate:
        """The mean and interval of a metric in [0, 1], the interval clipped to that range."""
        mean, low, high, kind = interval_of(matrix)
        return cls(mean, max(0.0, low), min(1.0, high), kind)


@dataclass
class ArmSummary:
    """One arm over its seeds: every metric with its interval, pass@1 per group, and the
    paired differences from the baseline (absent for the baseline itself)."""

    arm: str
    seeds: int
    prompts: int
    metrics: dict[str, Estimate]
    groups: dict[str, Estimate] = field(default_factory=dict)
    deltas: dict[str, Difference] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # training-set sizes and costs

    def to_row(self) -> dict[str, Any]:
        """One flat row (summary.csv): each metric's mean and interval, each difference's."""
        row: dict[str, Any] = {"method": self.arm, "seeds": self.seeds, "prompts": self.prompts}
        for name, e in self.metrics.items():
            row.update({name: e.mean, f"{name} low": e.low, f"{name} high": e.high})
            row[f"{name} interval"] = e.kind
        for g, e in self.groups.items():
            row.update({f"pass@1 {g}": e.mean, f"pass@1 {g} low": e.low})
            row[f"pass@1 {g} high"] = e.high
        for name, d in self.deltas.items():
            row.update({f"Δ {name}": d.mean, f"Δ {name} low": d.low, f"Δ {name} high": d.high})
            row[f"Δ {name} resolvable"] = d.resolvable
        return {**row, **self.extra}


def _matrix(runs: Sequence[HeldOutOutcomes], metric: str) -> np.ndarray | None:
    rows = [per_prompt(o).get(metric) for o in runs]
    return None if any(r is None for r in rows) else np.asarray(rows, dtype=float)


def check_same_prompts(arms: Mapping[str, Sequence[HeldOutOutcomes]]) -> None:
    """Refuse arms measured on different held-out prompts: a paired difference needs the same."""
    ref_arm, ref = next((a, runs[0]) for a, runs in arms.items())
    for arm, runs in arms.items():
        for o in runs:
            if o.prompt_ids != ref.prompt_ids:
                raise ValueError(
                    f"arm {arm!r} was evaluated on other held-out prompts than {ref_arm!r} "
                    f"({len(o.prompt_ids)} vs {len(ref.prompt_ids)}): give every arm the same "
                    "data.eval and data.max_eval_prompts."
                )


def summarize_arms(
    arms: Mapping[str, Sequence[HeldOutOutcomes]], baseline: str
) -> list[ArmSummary]:
    """One summary per arm (seeds paired by position: every arm has the same seeds)."""
    check_same_prompts(arms)
    if baseline not in arms:
        raise ValueError(f"the baseline {baseline!r} is not one of the arms: {', '.join(arms)}")
    base = arms[baseline]
    out = []
    for arm, runs in arms.items():
        metrics = {}
        for name in per_prompt(runs[0]):
            m = _matrix(runs, name)
            if m is not None:
                metrics[name] = Estimate.of(m)
        s = ArmSummary(arm, len(runs), len(runs[0].correct), metrics)
        groups = runs[0].groups
        if groups is not None:
            greedy = _matrix(runs, GREEDY)
            for g in sorted(set(groups)):
                cols = [i for i, x in enumerate(groups) if x == g]
                s.groups[g] = Estimate.of(greedy[:, cols])
        if arm != baseline:
            for name in metrics:
                a, b = _matrix(runs, name), _matrix(base, name)
                if b is not None and a.shape == b.shape:
                    s.deltas[name] = paired_difference(a, b)
        out.append(s)
    return out


def smallest_resolvable(summaries: Sequence[ArmSummary], metric: str = GREEDY) -> float:
    """The largest of the arms' smallest resolvable differences on ``metric``: what this
    design can tell apart for every arm (NaN with no difference measured)."""
    values = [s.deltas[metric].resolvable for s in summaries if metric in s.deltas]
    values = [v for v in values if not math.isnan(v)]
    return max(values) if values else math.nan
