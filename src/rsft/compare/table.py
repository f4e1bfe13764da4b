"""The ``rsft compare`` table: :func:`rsft.compare.summary.summarize` rows as markdown.

Fixed width so it reads as-is in a terminal and renders in a README; a legend below says what
every number is, because a table of bare percentages invites the wrong reading.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rsft.compare.stats import BOOTSTRAP_REPLICATES, SEEDS_ONLY
from rsft.compare.summary import ACCURACY_KEY, as_float
from rsft.models.task import ACCURACY

__all__ = ["SEEDS_ONLY_MARK", "format_table"]

SEEDS_ONLY_MARK = "†"
"""Marks an interval over seeds only: its runs did not record per-item test outcomes.

The comparison plot's title points to it, so the mark is named here once.
"""

_NAN = float("nan")


def _isnan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _pct(x: float, signed: bool = False) -> str:
    """Fraction -> percent (points) with one decimal; NaN stays 'nan' so failures are seen."""
    if _isnan(x):
        return "nan"
    return f"{100.0 * x:+.1f}" if signed else f"{100.0 * x:.1f}"


def _interval_cell(
    mean: float, low: float, high: float, n: int, signed: bool = False, kind: str | None = None
) -> str:
    """``mean [low, high]`` in percent; a seeds-only interval (no per-item outcomes) gets
    ``SEEDS_ONLY_MARK``."""
    if _isnan(mean):
        return "nan"
    if n < 2 or _isnan(low) or _isnan(high):
        return f"{_pct(mean, signed)} (n={n})"
    mark = SEEDS_ONLY_MARK if kind == SEEDS_ONLY else ""
    return f"{_pct(mean, signed)} [{_pct(low, signed)}, {_pct(high, signed)}]{mark}"


def _num(x: Any, fmt: str) -> str:
    x = as_float(x)
    return "nan" if math.isnan(x) else format(x, fmt)


def _count(x: Any) -> str:
    """Sample counts with thousands separators: budgets are compared at a glance."""
    return _num(x, ",.0f")


def _violations(x: Any) -> str:
    x = as_float(x)
    if math.isnan(x):
        return "nan"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


_ABSENT = "–"
"""Cell of a metric the method does not have (e.g. step acceptance of a gradient method)."""

_MB = 1e6
"""Bytes per MB in the table (SI megabytes, as the legend says)."""


def _step_accept(x: Any) -> str:
    """Mean fraction of proposed parameter updates kept, in % with one decimal; '–' if none."""
    x = as_float(x)
    return _ABSENT if math.isnan(x) else f"{100 * x:.1f}%"


def _memory(peak: Any, ratio: Any) -> str:
    """Peak training-step memory in MB with its multiple of one inference pass, ``1.2 MB (1.8×)``.

    '–' without a peak; the multiplier is left off when the ratio is unknown.
    """
    peak = as_float(peak)
    if math.isnan(peak):
        return _ABSENT
    cell = f"{peak / _MB:,.1f} MB"
    ratio = as_float(ratio)
    return cell if math.isnan(ratio) else f"{cell} ({ratio:.1f}×)"


def _auc(x: Any) -> str:
    """The domain classifier's AUC with three decimals; '–' for methods without one."""
    x = as_float(x)
    return _ABSENT if math.isnan(x) else f"{x:.3f}"


def _test_set_line(rows: Sequence[Mapping[str, Any]]) -> str:
    """``target test set: 200 items``: the n behind every accuracy, stated beside the table."""
    sizes = {r.get("test_size") for r in rows} - {None}
    if not sizes:
        return "target test set: size not recorded (runs from an older rsft)."
    if len(sizes) == 1:
        return f"target test set: {sizes.pop():,} items."
    each = ", ".join(f"{r['method']} {r['test_size']:,}" for r in rows if r.get("test_size"))
    return f"target test sets differ in size between methods: {each} items."


def _has(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    return any(not math.isnan(as_float(r.get(key))) for r in rows)


def format_table(rows: Sequence[Mapping[str, Any]], notes: bool = True) -> str:
    """Fixed-width markdown pipe table of ``summarize`` rows, readable as-is and in a README.

    Accuracy and the paired delta are in percent (points) with one decimal; a single seed
    shows ``(n=1)`` instead of an interval, a failed run makes the cell ``nan``, and an
    interval over seeds only (runs without per-item test outcomes) is marked ``†``. Three
    columns appear only when some row has the data: ``step accept`` (mean fraction of
    proposed parameter updates kept, Metropolis/MALA; ``–`` for other methods), ``domain
    AUC`` (the density-ratio classifier's out-of-fold ROC AUC; ``–`` for other weights) and
    ``peak mem`` (peak tensor memory of a training step in MB, with its multiple of one
    inference forward, ``–`` when not measured). A method with diverged runs is marked
    ``⚠ diverged k/n``. With ``notes``, a blank line, the target
    test set's size and a short legend follow the table (the blank line keeps markdown from
    reading the legend as a row).
    """
    rows = list(rows)
    level = rows[0].get("confidence", 0.95) if rows else 0.95
    pct_level = f"{100 * level:g}%"
    base = next((r.get("baseline") for r in rows if r.get("baseline")), None)
    show_step = _has(rows, "step_acceptance_mean")
    show_auc = _has(rows, "domain_auc_mean")
    show_mem = _has(rows, "peak_memory_mean")
    header = [
        "method",
        f"target acc (mean [{pct_level} CI])",
        f"Δ vs {base or 'baseline'} [{pct_level} CI]",
        "accept rate",
        *(["step accept"] if show_step else []),
        "ESS",
        *(["domain AUC"] if show_auc else []),
        "violations",
        "fwd samples",
        "bwd samples",
        *(["peak mem"] if show_mem else []),
        "wall s",
    ]
    body: list[list[str]] = []
    for r in rows:
        n = int(r.get("n_seeds", 0))
        acc = _interval_cell(
            r.get(f"{ACCURACY_KEY}_mean", _NAN),
            r.get(f"{ACCURACY_KEY}_ci_low", _NAN),
            r.get(f"{ACCURACY_KEY}_ci_high", _NAN),
            n,
            kind=r.get("interval"),
        )
        failed = int(r.get("n_failed", 0))
        if failed:
            acc = f"{acc} ({failed}/{n} failed)"
        if base is None:
            delta = "n/a"
        elif r.get("method") == base:
            delta = "(baseline)"
        elif int(r.get("delta_n_pairs", 0)) == 0:
            delta = "n/a (no shared seeds)"
        else:
            delta = _interval_cell(
                r.get("delta_vs_baseline_mean", _NAN),
                r.get("delta_vs_baseline_ci_low", _NAN),
                r.get("delta_vs_baseline_ci_high", _NAN),
                int(r["delta_n_pairs"]),
                signed=True,
                kind=r.get("delta_interval"),
            )
        accept = as_float(r.get("acceptance_rate_mean"))
        name = str(r.get("method", "?"))
        if r.get("n_diverged"):
            name += f" ⚠ diverged {r['n_diverged']}/{n}"
        body.append(
            [
                name,
                acc,
                delta,
                "nan" if math.isnan(accept) else f"{100 * accept:.1f}%",
                *([_step_accept(r.get("step_acceptance_mean"))] if show_step else []),
                _num(r.get("ess_fraction_mean"), ".2f"),
                *([_auc(r.get("domain_auc_mean"))] if show_auc else []),
                _violations(r.get("violations_mean")),
                _count(r.get("forwarded_mean")),
                _count(r.get("backpropagated_mean")),
                *(
                    [_memory(r.get("peak_memory_mean"), r.get("memory_vs_inference_mean"))]
                    if show_mem
                    else []
                ),
                _num(r.get("wall_time_mean"), ".1f"),
            ]
        )

    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        # First column (names) left-aligned, numbers right-aligned so digits line up.
        parts = [
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ]
        return "| " + " | ".join(parts) + " |"

    rule = (
        "| "
        + " | ".join(("-" * w) if i == 0 else ("-" * (w - 1) + ":") for i, w in enumerate(widths))
        + " |"
    )
    lines = [line(header), rule, *(line(b) for b in body)]
    if notes:
        seeds_only = any(
            r.get("interval") == SEEDS_ONLY or r.get("delta_interval") == SEEDS_ONLY for r in rows
        )
        lines += [
            "",
            _test_set_line(rows),
            "",
            f"Accuracy in %, mean over seeds, with a {pct_level} interval that covers both the "
            "seeds' spread (Student t over the per-seed accuracies) and the test set's own "
            f"sampling error (a bootstrap over its items, {BOOTSTRAP_REPLICATES:,} resamples "
            "from a fixed seed), added in quadrature and clipped to [0, 100]. "
            + (
                f"Δ: paired by seed and by test item against {base!r}, in percentage points. "
                if base
                else "No baseline method in these runs, so no Δ. "
            )
            + (
                f"{SEEDS_ONLY_MARK}: interval over seeds only (Student t): these runs recorded "
                "no per-item test outcomes (an older rsft), so the test set's error is left out. "
                if seeds_only
                else ""
            )
            + "accept rate / ESS / violations / samples / wall s: means over seeds."
            + (
                " step accept: fraction of proposed parameter updates kept (Metropolis/MALA; "
                f"{_ABSENT} for methods that do not propose updates), mean over seeds."
                if show_step
                else ""
            )
            + (
                " domain AUC: out-of-fold ROC AUC of the density ratio's domain classifier "
                "(0.5: the domains look alike; near 1: little overlap, a few huge weights), "
                f"mean over seeds; {_ABSENT} for other weights."
                if show_auc
                else ""
            )
            + (
                " peak mem: peak tensor memory of a training step (weights included), "
                "MB = 10^6 bytes, mean over seeds, with (×) its ratio to one inference "
                f"forward pass of a training batch; {_ABSENT} where not measured."
                if show_mem
                else ""
            ),
        ]
    if notes and any(r.get("n_diverged") for r in rows):
        lines.append(
            "⚠ diverged k/n: in k of the n seeds the loss rose far above its start or the "
            "predictions collapsed to one class (see 'divergence' in each run's results.json); "
            "those runs' numbers do not measure the method."
        )
    return "\n".join(lines)


def metric_note(metrics: Iterable[str]) -> str:
    """What "accuracy" means in the table when a run's task.metric is not accuracy."""
    custom = sorted(set(metrics) - {ACCURACY})
    if not custom:
        return ""
    return (
        f'\n\nHere "acc" and "accuracy" are task.metric {", ".join(custom)}: the mean '
        "of its per-item scores, in percent (docs/tasks.md)."
    )
