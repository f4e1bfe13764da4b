"""The acceptance trace of a model-aware run: did the rejection rule keep up with the model?"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsft.plots.figure import new_figure, save_figure

__all__ = ["plot_trace"]


def plot_trace(trace: Sequence[Mapping[str, Any]], out_path_png: str | os.PathLike[str]) -> Path:
    """Acceptance rate and envelope M per scored round of a model-aware run (its drift).

    The acceptance rate falls as the model learns (fewer hard samples) and M follows the
    window of recent weights: the plot shows whether the rule kept up with the data.
    """
    steps = np.array([t["step"] for t in trace], dtype=float)
    rate = np.array([t["accepted"] / max(t["scored"], 1) for t in trace])
    expected = np.array([t["mean_acceptance"] for t in trace])
    envelope = np.array([t["envelope"] for t in trace])
    fig = new_figure(figsize=(10, 3.8), dpi=110, layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(steps, rate, lw=0.8, alpha=0.6, label="accepted / scored (round)")
    ax1.plot(steps, expected, lw=1.2, label="mean acceptance probability")
    ax1.set(xlabel="optimizer step", ylabel="acceptance", ylim=(0, 1.02))
    ax1.set_title("Acceptance per scored round")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.plot(steps, envelope, color="C3", lw=1.2)
    ax2.set(xlabel="optimizer step", ylabel="M", yscale="log")
    ax2.set_title("Envelope M (window of recent weights)")
    ax2.grid(alpha=0.3)
    return save_figure(fig, out_path_png)
