"""The figures of a language-model comparison, from each arm's per-prompt held-out outcomes:
the coverage curve (pass@k against k, the RFT paper's "pass@k seeds" figure) and how many
prompts each arm never, sometimes or always solves among its n samples."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rsft.plots.figure import new_figure, save_figure

if TYPE_CHECKING:
    from rsft.generation.results import HeldOutOutcomes

__all__ = ["coverage_curve", "plot_coverage", "plot_solve_rates", "solve_rate_counts"]

Arms = Mapping[str, Sequence["HeldOutOutcomes"]]


def coverage_curve(runs: Sequence[HeldOutOutcomes]) -> list[float]:
    """Unbiased pass@k for k = 1..n (n samples per prompt), averaged over prompts and runs."""
    from rsft.generation.metrics import pass_at_k

    n = runs[0].samples
    return [
        sum(pass_at_k(n, c, k) for o in runs for c in o.sampled_correct or [])
        / sum(len(o.sampled_correct or []) for o in runs)
        for k in range(1, n + 1)
    ]


def solve_rate_counts(runs: Sequence[HeldOutOutcomes]) -> list[float]:
    """The share of prompts with c = 0..n of their n samples right (mean over runs)."""
    n = runs[0].samples
    counts = [0.0] * (n + 1)
    for o in runs:
        for c in o.sampled_correct or []:
            counts[c] += 1 / (len(o.sampled_correct) * len(runs))
    return counts


def _sampled(arms: Arms) -> dict[str, Sequence[HeldOutOutcomes]]:
    return {a: runs for a, runs in arms.items() if runs and runs[0].samples}


def plot_coverage(arms: Arms, out_png: str | os.PathLike[str]) -> Path | None:
    """pass@k against k per arm; None when no arm sampled held-out answers (eval.k: 0)."""
    arms = _sampled(arms)
    if not arms:
        return None
    fig = new_figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    curves = {arm: coverage_curve(runs) for arm, runs in arms.items()}
    for arm, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), [100 * y for y in ys], "o-", ms=3, label=arm)
    ax.set_xlabel("k (samples per held-out prompt)")
    ax.set_ylabel("pass@k (%)")
    n = max(len(ys) for ys in curves.values())
    if n > 16:  # many samples: k on a log scale, as the RFT paper draws it
        ax.set_xscale("log", base=2)
    else:
        ax.set_xticks(range(1, n + 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=120)


def plot_solve_rates(arms: Arms, out_png: str | os.PathLike[str]) -> Path | None:
    """Per arm, the share of held-out prompts solved by 0, 1, ..., n of n samples."""
    arms = _sampled(arms)
    if not arms:
        return None
    fig = new_figure(figsize=(6, 3.6))
    ax = fig.subplots()
    width = 0.8 / len(arms)
    for j, (arm, runs) in enumerate(arms.items()):
        shares = solve_rate_counts(runs)
        xs = [c + (j - (len(arms) - 1) / 2) * width for c in range(len(shares))]
        ax.bar(xs, [100 * s for s in shares], width=width, label=arm)
    n = next(iter(arms.values()))[0].samples
    ax.set_xticks(range(n + 1))
    ax.set_xlabel(f"samples right, of {n} per held-out prompt (0: never solved; {n}: always)")
    ax.set_ylabel("held-out prompts (%)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=120)
