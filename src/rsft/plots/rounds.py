"""The pass@1 plot of ``rsft rft``: held-out pass@1 round after round."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from rsft.plots.figure import new_figure, save_figure

if TYPE_CHECKING:
    from rsft.generation.results import RFTResult

__all__ = ["plot_rounds"]


def plot_rounds(results: RFTResult, out_png: str | os.PathLike[str]) -> Path:
    """Held-out pass@1 after each round (round 0: the base model), with the control."""
    rounds = results.rounds
    xs = [0] + [r.round for r in rounds]
    ys = [results.base_eval.pass_at_1] + [r.after.pass_at_1 for r in rounds]
    fig = new_figure(figsize=(5, 3.2))
    ax = fig.subplots()
    ax.plot(xs, [100 * y for y in ys], "o-", label="rejection-sampled")
    ctrl = [(r.round, r.control_eval.pass_at_1) for r in rounds if r.control_eval is not None]
    if ctrl:
        ax.plot(
            [c[0] for c in ctrl],
            [100 * c[1] for c in ctrl],
            "s--",
            label="random control (same size)",
        )
    ax.set_xlabel("round")
    ax.set_ylabel("held-out pass@1 (%)")
    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=120)
