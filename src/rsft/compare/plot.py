"""The ``rsft compare`` figure: target accuracy per method, and the eval curves of its runs.

It draws :func:`rsft.compare.summary.summarize` rows and the records behind them, so every
seed is visible next to the mean and interval the table reports.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsft.compare.stats import SEEDS_ONLY
from rsft.compare.summary import ACCURACY_KEY, as_float, group_by_method
from rsft.compare.table import SEEDS_ONLY_MARK
from rsft.plots.figure import new_figure, save_figure

__all__ = ["plot_results"]

_NAN = float("nan")


_X_LABEL = {
    "forwarded": "forwarded samples (mean over seeds at each epoch end)",
    "step": "optimizer steps (mean over seeds at each epoch end)",
}
_LINE_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D")


def _epoch_curve(
    history: Sequence[Mapping[str, Any]],
    y_key: str = "eval_accuracy",
    x_key: str = "step",
) -> dict[float, tuple[float, float]]:
    """Per epoch: (``x_key`` so far, ``y_key`` at the end of that epoch).

    Optimizer steps or forwarded samples, not epochs, go on the x axis: a rejection epoch is
    shorter than a plain one and a gradient-free step costs other forwards than a gradient
    step, so methods are compared at the same number of updates or of forward passes.
    Entries without an epoch or a ``y_key`` value are skipped; a missing ``step`` falls back
    to the epoch, any other missing x is NaN.
    """
    curve: dict[float, tuple[float, float]] = {}
    for entry in history or ():
        epoch, y = entry.get("epoch"), entry.get(y_key)
        if epoch is None or y is None:
            continue
        x = entry.get(x_key, epoch if x_key == "step" else None)
        curve[float(epoch)] = (as_float(x), as_float(y))
    return curve


def _x_key(histories: Iterable[Sequence[Mapping[str, Any]]]) -> str:
    """``forwarded`` when every plotted history entry carries it, else ``step``.

    One axis for all methods: a figure mixing forwarded samples and steps would be unreadable.
    """
    entries = [
        e
        for h in histories
        for e in (h or ())
        if e.get("epoch") is not None
        and (e.get("eval_accuracy") is not None or e.get("eval_loss") is not None)
    ]
    if entries and all(e.get("forwarded") is not None for e in entries):
        return "forwarded"
    return "step"


def _mean_band(
    runs: Sequence[Mapping[float, tuple[float, float]]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x (mean over seeds), y mean, y min, y max at every epoch any of ``runs`` has."""
    epochs = sorted({e for c in runs for e in c})
    points = [np.array([c[e] for c in runs if e in c], dtype=float) for e in epochs]
    x = np.array([p[:, 0].mean() for p in points])
    mean = np.array([p[:, 1].mean() for p in points])
    lo = np.array([p[:, 1].min() for p in points])
    hi = np.array([p[:, 1].max() for p in points])
    return x, mean, lo, hi


def plot_results(
    records: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    out_path_png: str | os.PathLike[str],
) -> Path:
    """Save a PNG: (a) target accuracy per method with CI and seeds, (b) eval accuracy and
    (c) eval loss against forward passes.

    Panel (a) shows every seed as a dot next to the mean and its interval, so a reader sees
    at once whether a difference is bigger than the seed noise. Panels (b) and (c) (each
    omitted when no history has its field) show the mean over seeds of the per-epoch eval
    accuracy and eval loss, with the min-max band across seeds, against forwarded samples when
    the histories carry ``forwarded`` (so gradient-free and gradient methods are compared at
    equal forward passes) and against optimizer steps otherwise. One legend below the figure
    names the curves; past 10 methods, colours repeat with other line styles and markers.
    Drawn on its own Agg canvas (:mod:`rsft.plots.figure`) and saved atomically; returns the
    path.
    """
    from matplotlib.lines import Line2D

    groups = group_by_method(records)
    methods = [str(r["method"]) for r in rows] or list(groups)
    x_key = _x_key(r.get("history") or () for r in records)

    def curves_of(y_key: str) -> dict[str, list[dict[float, tuple[float, float]]]]:
        return {
            m: [
                c
                for c in (_epoch_curve(r.get("history") or (), y_key, x_key) for r in groups[m])
                if c
            ]
            for m in methods
            if m in groups
        }

    acc_curves, loss_curves = curves_of("eval_accuracy"), curves_of("eval_loss")
    panels = [
        (key, curves)
        for key, curves in (("b", acc_curves), ("c", loss_curves))
        if any(curves.values())
    ]
    level = rows[0].get("confidence", 0.95) if rows else 0.95
    base = next((r.get("baseline") for r in rows if r.get("baseline")), None)
    row_of = {str(r["method"]): r for r in rows}
    ci_label = f"{100 * level:g}% CI (error bar)"

    many = len(methods) > 10
    style = {
        m: (
            f"C{i % 10}",
            _LINE_STYLES[(i // 10) % len(_LINE_STYLES)] if many else "-",
            _MARKERS[(i // 10) % len(_MARKERS)] if many else "o",
        )
        for i, m in enumerate(methods)
    }
    colors = {m: st[0] for m, st in style.items()}

    width = max(7.0, 3.0 + 0.6 * len(methods))
    if panels:
        mosaic = [["a"] * len(panels), [key for key, _ in panels]]
        fig = new_figure(figsize=(max(12.5, width), 9.5), dpi=120, layout="constrained")
    else:
        mosaic = [["a"]]
        fig = new_figure(figsize=(width, 4.8), dpi=120, layout="constrained")
    axes = fig.subplot_mosaic(mosaic)

    ax = axes["a"]
    rng = np.random.default_rng(0)  # fixed jitter: the same data always gives the same image
    any_failed = False
    for i, m in enumerate(methods):
        row = row_of.get(m, {})
        marker = style[m][2]
        seeds_acc = np.array([as_float(r.get(ACCURACY_KEY)) for r in groups.get(m, ())])
        ok = seeds_acc[~np.isnan(seeds_acc)]
        jitter = rng.uniform(-0.12, 0.12, size=ok.size)
        ax.scatter(
            i + 0.18 + jitter,
            100 * ok,
            s=18,
            color=colors[m],
            marker=marker,
            alpha=0.55,
            edgecolors="none",
        )
        mean = as_float(row.get(f"{ACCURACY_KEY}_mean"))
        low = as_float(row.get(f"{ACCURACY_KEY}_ci_low"))
        high = as_float(row.get(f"{ACCURACY_KEY}_ci_high"))
        if math.isnan(mean) and 0 < ok.size < seeds_acc.size:
            # A failed seed makes the mean NaN; still place the survivors' mean, hollow,
            # and say so, so the failure is visible on the plot as in the table.
            mean, low, high = float(np.mean(ok)), _NAN, _NAN
            ax.scatter(
                [i],
                [100 * mean],
                s=60,
                marker=marker,
                facecolors="none",
                edgecolors=colors[m],
                linewidths=1.5,
            )
            ax.annotate(
                f"{int(np.isnan(seeds_acc).sum())} failed",
                (i, 100 * mean),
                textcoords="offset points",
                xytext=(0, 10),
                ha="center",
                fontsize=8,
                color="crimson",
            )
            any_failed = True
            continue
        if math.isnan(mean):
            continue
        yerr = None
        if not (math.isnan(low) or math.isnan(high)):
            yerr = [[100 * (mean - low)], [100 * (high - mean)]]
        ax.errorbar(
            [i],
            [100 * mean],
            yerr=yerr,
            fmt=marker,
            markersize=8,
            capsize=6,
            elinewidth=2,
            color=colors[m],
        )
    # Legend from neutral grey proxies: the colours already name the methods on the x axis.
    handles: list[Any] = [
        Line2D([], [], ls="none", marker="o", ms=8, color="grey", label=f"mean, {ci_label}"),
        Line2D([], [], ls="none", marker="o", ms=4, alpha=0.55, color="grey", label="one seed"),
    ]
    if any_failed:
        handles.append(
            Line2D(
                [],
                [],
                ls="none",
                marker="o",
                ms=8,
                mfc="none",
                color="grey",
                label="mean of seeds that did not fail",
            )
        )
    if base is not None and base in row_of:
        base_mean = as_float(row_of[base].get(f"{ACCURACY_KEY}_mean"))
        if not math.isnan(base_mean):
            handles.append(
                ax.axhline(
                    100 * base_mean, color="grey", ls="--", lw=1, label=f"{base} mean (baseline)"
                )
            )
    tilt = 30 if len(methods) > 8 else 20 if len(methods) > 4 else 0
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(
        methods,
        rotation=tilt,
        ha="right" if tilt else "center",
        fontsize=8 if many else None,
    )
    ax.set_xlim(-0.6, len(methods) - 0.4)
    ax.set_xlabel("method")
    ax.set_ylabel("target test accuracy (%)")
    kinds = {r.get("interval") for r in rows if r.get("interval")}
    over = "seeds" if kinds == {SEEDS_ONLY} else "seeds and test items"
    if len(kinds) > 1:
        over += f" (some over seeds only: {SEEDS_ONLY_MARK} in the table)"
    ax.set_title(f"(a) Target test accuracy (mean, {100 * level:g}% CI over {over})")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=handles, loc="best", fontsize=7 if many else 8)

    against = "forward passes" if x_key == "forwarded" else "optimizer steps"
    titles = {
        "b": f"(b) Eval accuracy vs {against} (mean over seeds; band: min-max)",
        "c": f"(c) Eval loss vs {against} (mean over seeds; band: min-max)",
    }
    curve_handles: dict[str, Any] = {}
    for key, curves in panels:
        ax = axes[key]
        scale = 100.0 if key == "b" else 1.0
        ys: list[np.ndarray] = []
        for m in methods:
            runs = curves.get(m, [])
            if not runs:
                continue
            color, ls, marker = style[m]
            x, mean, lo, hi = _mean_band(runs)
            ax.plot(x, scale * mean, ls=ls, marker=marker, ms=3, lw=1.3, color=color)
            if len(runs) > 1:
                ax.fill_between(x, scale * lo, scale * hi, color=color, alpha=0.12, lw=0)
            ys += [lo, hi]
            curve_handles.setdefault(
                m,
                Line2D(
                    [],
                    [],
                    ls=ls,
                    marker=marker,
                    ms=3,
                    lw=1.3,
                    color=color,
                    label=f"{m} (n={len(runs)})",
                ),
            )
        ax.set_xlabel(_X_LABEL[x_key])
        ax.set_ylabel("eval accuracy (%)" if key == "b" else "eval loss")
        ax.set_title(titles[key], fontsize=10)
        ax.grid(alpha=0.3)
        if key == "c":
            y = np.concatenate(ys) if ys else np.array([])
            y = y[np.isfinite(y)]
            # A diverging run (loss in the thousands) would flatten every other curve.
            if y.size and y.min() > 0 and y.max() / y.min() > 100:
                ax.set_yscale("log")
    if curve_handles:
        fig.legend(
            handles=[curve_handles[m] for m in methods if m in curve_handles],
            loc="outside lower center",
            ncol=min(len(curve_handles), 5),
            fontsize=7 if many else 8,
            title="curves (b, c): method (seeds with a history)",
            title_fontsize=8,
        )

    fig.suptitle("rsft compare: methods on the same data and budget")
    return save_figure(fig, out_path_png)
