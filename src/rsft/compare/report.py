"""Summaries, tables, files and plots for ``rsft compare``.

The runner produces one plain-dict record per (method, seed). This module turns those into
the evidence a reader needs to decide whether a method helps: per-method means with intervals
that cover both the seeds' spread and the test set's own sampling error (see
:mod:`rsft.compare.stats`), and the *paired* difference to a baseline (same seed, same data,
same budget, same test items), which removes the variation that both methods share.

Failed runs (NaN accuracy) are never dropped: they make the affected means NaN so that the
failure shows in the table instead of silently flattering a method. A field that a record does
not carry (missing or None, e.g. ``step_acceptance`` for a gradient method, or memory in a record
written before it was measured) is *absent*, not failed: other metrics are averaged over the
seeds that report them, and a method none of whose seeds reports one gets NaN for it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsft.atomic import atomic_target, atomic_write_text
from rsft.compare.stats import (
    BOOTSTRAP_REPLICATES,
    SEEDS_ONLY,
    interval,
    mean_ci,
    outcome_matrix,
    paired_differences,
)

__all__ = [
    "ACCURACY_KEY",
    "DEFAULT_METRICS",
    "format_table",
    "mean_ci",
    "plot_results",
    "plot_trace",
    "summarize",
    "write_results",
]

ACCURACY_KEY = "test_accuracy"
"""The record field every comparison is about: accuracy on the target test set."""

DEFAULT_METRICS: tuple[str, ...] = (
    "test_loss",
    "acceptance_rate",
    "ess_fraction",
    "violations",
    "forwarded",
    "backpropagated",
    "wall_time",
    "step_acceptance",
    "peak_memory",
    "inference_memory",
    "memory_vs_inference",
    "domain_auc",
)
"""Record fields averaged over seeds (mean only) in each summary row, as ``<name>_mean``.

``step_acceptance`` (fraction of proposed parameter updates kept) exists only for the
Metropolis/MALA methods; ``peak_memory`` / ``inference_memory`` are bytes (weights included)
of a training step and of one inference forward, ``memory_vs_inference`` their ratio;
``domain_auc`` is the density-ratio classifier's out-of-fold ROC AUC (source vs target).
"""

_NAN = float("nan")


# --------------------------------------------------------------------------------------------
# statistics


def _as_float(value: Any) -> float:
    """A record field as float; missing or non-numeric -> NaN so it shows rather than crashes."""
    if value is None:
        return _NAN
    try:
        return float(value)
    except (TypeError, ValueError):
        return _NAN


def _group_by_method(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Records per method in first-appearance order; rejects duplicates that would break pairing."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    seen: set[tuple[str, Any]] = set()
    for i, rec in enumerate(records):
        if "method" not in rec or "seed" not in rec:
            raise ValueError(f"record {i} lacks 'method' or 'seed': keys are {sorted(rec)}.")
        key = (str(rec["method"]), rec["seed"])
        if key in seen:
            raise ValueError(
                f"two records for method {key[0]!r} seed {key[1]!r}: pairing by seed would be "
                "ambiguous. Drop the duplicate run before summarizing."
            )
        seen.add(key)
        groups.setdefault(key[0], []).append(rec)
    return groups


def _metric_mean(values: Iterable[Any]) -> float:
    """Mean of a (non-accuracy) metric over the seeds that report it.

    None (the record lacks the field) is skipped, so a method that has no such metric gets NaN
    and one old record without it does not blank its method's mean. A reported NaN still makes
    the mean NaN: a value that is there but broken is shown, not averaged away.
    """
    present = [_as_float(v) for v in values if v is not None]
    return float(np.mean(present)) if present else _NAN


def summarize(
    records: Sequence[Mapping[str, Any]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    baseline: str | None = "plain",
    confidence: float = 0.95,
) -> list[dict[str, Any]]:
    """One row per method (first-appearance order) with everything the table and plot need.

    Keys of each row: ``method``, ``n_seeds``, ``seeds``, ``n_failed`` (NaN accuracies),
    ``n_diverged`` (runs whose results say ``diverged``),
    ``confidence``, ``test_accuracy_mean`` / ``_ci_low`` / ``_ci_high`` with ``interval``
    (``"seeds+items"``, or ``"seeds"`` for runs without per-item outcomes), ``test_size``
    (items in the target test set, None when unknown), ``<metric>_mean`` for each of
    ``metrics`` (over the seeds whose record has the field, NaN when none has it; only a NaN
    *accuracy* counts as a failed run), ``baseline`` (its name, or None when absent from the
    records) and ``delta_vs_baseline_mean`` / ``_ci_low`` / ``_ci_high`` with
    ``delta_n_pairs`` and ``delta_interval``.

    Intervals cover the seeds and the test items (:func:`rsft.compare.stats.interval`),
    clipped to [0, 1] for accuracy and [-1, 1] for the delta. The delta is the mean over the
    seeds both methods ran of ``acc(method) - acc(baseline)``, its interval computed on the
    per-item differences of those paired runs: pairing by seed and by test item cancels what
    both methods share, so it is far more sensitive than comparing two independent intervals.
    The baseline's own row has NaN delta fields (comparing it with itself says nothing).
    """
    groups = _group_by_method(records)
    base_name = baseline if baseline is not None and baseline in groups else None
    base_recs = {r["seed"]: r for r in groups[base_name]} if base_name else {}

    rows: list[dict[str, Any]] = []
    for method, recs in groups.items():
        acc = [_as_float(r.get(ACCURACY_KEY)) for r in recs]
        mean, low, high, kind = interval(acc, outcome_matrix(recs), confidence)
        row: dict[str, Any] = {
            "method": method,
            "n_seeds": len(recs),
            "seeds": [r["seed"] for r in recs],
            "n_failed": sum(math.isnan(a) for a in acc),
            "n_diverged": sum(bool(r.get("diverged")) for r in recs),
            "confidence": confidence,
            f"{ACCURACY_KEY}_mean": mean,
            f"{ACCURACY_KEY}_ci_low": low,
            f"{ACCURACY_KEY}_ci_high": high,
            "interval": kind,
            "test_size": _test_size(recs),
        }
        for metric in metrics:
            row[f"{metric}_mean"] = _metric_mean(r.get(metric) for r in recs)

        row["baseline"] = base_name
        d_mean, d_low, d_high, d_kind = _NAN, _NAN, _NAN, None
        n_pairs = 0
        if base_name is not None and method != base_name:
            pairs = [(r, base_recs[r["seed"]]) for r in recs if r["seed"] in base_recs]
            n_pairs = len(pairs)
            diffs = [
                _as_float(r.get(ACCURACY_KEY)) - _as_float(b.get(ACCURACY_KEY)) for r, b in pairs
            ]
            d_mean, d_low, d_high, d_kind = interval(
                diffs, paired_differences(pairs), confidence, bounds=(-1.0, 1.0)
            )
        row["delta_vs_baseline_mean"] = d_mean
        row["delta_vs_baseline_ci_low"] = d_low
        row["delta_vs_baseline_ci_high"] = d_high
        row["delta_n_pairs"] = n_pairs
        row["delta_interval"] = d_kind
        rows.append(row)
    return rows


def _test_size(records: Sequence[Mapping[str, Any]]) -> int | None:
    """The target test set's size, when the records state one and agree on it."""
    sizes = {r.get("test_size") for r in records} - {None}
    return int(sizes.pop()) if len(sizes) == 1 else None


# --------------------------------------------------------------------------------------------
# text table


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
    ``_SEEDS_ONLY_MARK``."""
    if _isnan(mean):
        return "nan"
    if n < 2 or _isnan(low) or _isnan(high):
        return f"{_pct(mean, signed)} (n={n})"
    mark = _SEEDS_ONLY_MARK if kind == SEEDS_ONLY else ""
    return f"{_pct(mean, signed)} [{_pct(low, signed)}, {_pct(high, signed)}]{mark}"


_SEEDS_ONLY_MARK = "†"
"""Marks an interval over seeds only: its runs did not record per-item test outcomes."""


def _num(x: Any, fmt: str) -> str:
    x = _as_float(x)
    return "nan" if math.isnan(x) else format(x, fmt)


def _count(x: Any) -> str:
    """Sample counts with thousands separators: budgets are compared at a glance."""
    return _num(x, ",.0f")


def _violations(x: Any) -> str:
    x = _as_float(x)
    if math.isnan(x):
        return "nan"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


_ABSENT = "–"
"""Cell of a metric the method does not have (e.g. step acceptance of a gradient method)."""

_MB = 1e6
"""Bytes per MB in the table (SI megabytes, as the legend says)."""


def _step_accept(x: Any) -> str:
    """Mean fraction of proposed parameter updates kept, in % with one decimal; '–' if none."""
    x = _as_float(x)
    return _ABSENT if math.isnan(x) else f"{100 * x:.1f}%"


def _memory(peak: Any, ratio: Any) -> str:
    """Peak training-step memory in MB with its multiple of one inference pass, ``1.2 MB (1.8×)``.

    '–' without a peak; the multiplier is left off when the ratio is unknown.
    """
    peak = _as_float(peak)
    if math.isnan(peak):
        return _ABSENT
    cell = f"{peak / _MB:,.1f} MB"
    ratio = _as_float(ratio)
    return cell if math.isnan(ratio) else f"{cell} ({ratio:.1f}×)"


def _auc(x: Any) -> str:
    """The domain classifier's AUC with three decimals; '–' for methods without one."""
    x = _as_float(x)
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
    return any(not math.isnan(_as_float(r.get(key))) for r in rows)


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
        accept = _as_float(r.get("acceptance_rate_mean"))
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
                f"{_SEEDS_ONLY_MARK}: interval over seeds only (Student t): these runs recorded "
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


# --------------------------------------------------------------------------------------------
# files


def _jsonable(obj: Any) -> Any:
    """Plain JSON types only: numpy scalars unwrapped, non-finite floats -> null (strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(_jsonable(value))
    return "" if value is None else value


def _csv_text(rows: Sequence[Mapping[str, Any]], skip: frozenset[str] = frozenset()) -> str:
    """CSV with the union of keys as columns (first-appearance order); NaN written as 'nan'."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in skip and k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row[k]) for k in columns if k in row})
    return buf.getvalue()


def write_results(
    records: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike[str],
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``results.json``, ``results.csv`` and ``summary.csv`` into ``out_dir``, atomically.

    ``results.json`` holds ``{"meta", "summary", "records"}`` (histories included) as strict
    JSON: NaN/inf become ``null``, so a failed run reads as ``"test_accuracy": null``.
    ``results.csv`` has one line per record with flat columns (no history, no per-item
    outcomes) and ``summary.csv``
    one line per method; both write NaN as ``nan``. Returns ``{"json", "csv", "summary_csv"}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": _jsonable(dict(meta or {})),
        "summary": _jsonable(list(rows)),
        "records": _jsonable(list(records)),
    }
    paths = {
        "json": out / "results.json",
        "csv": out / "results.csv",
        "summary_csv": out / "summary.csv",
    }
    atomic_write_text(paths["json"], json.dumps(payload, indent=2, allow_nan=False) + "\n")
    flat = frozenset({"history", "test_correct"})  # per-epoch and per-item lists: JSON only
    atomic_write_text(paths["csv"], _csv_text(records, skip=flat))
    atomic_write_text(paths["summary_csv"], _csv_text(rows))
    return paths


# --------------------------------------------------------------------------------------------
# plot


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
        curve[float(epoch)] = (_as_float(x), _as_float(y))
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
    Uses the Agg canvas directly, without pyplot, so no global backend or figure state is
    touched. Saved atomically; returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    groups = _group_by_method(records)
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
        fig = Figure(figsize=(max(12.5, width), 9.5), dpi=120, layout="constrained")
    else:
        mosaic = [["a"]]
        fig = Figure(figsize=(width, 4.8), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplot_mosaic(mosaic)

    ax = axes["a"]
    rng = np.random.default_rng(0)  # fixed jitter: the same data always gives the same image
    any_failed = False
    for i, m in enumerate(methods):
        row = row_of.get(m, {})
        marker = style[m][2]
        seeds_acc = np.array([_as_float(r.get(ACCURACY_KEY)) for r in groups.get(m, ())])
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
        mean = _as_float(row.get(f"{ACCURACY_KEY}_mean"))
        low = _as_float(row.get(f"{ACCURACY_KEY}_ci_low"))
        high = _as_float(row.get(f"{ACCURACY_KEY}_ci_high"))
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
        base_mean = _as_float(row_of[base].get(f"{ACCURACY_KEY}_mean"))
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
        over += f" (some over seeds only: {_SEEDS_ONLY_MARK} in the table)"
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
    target = Path(out_path_png)
    fmt = target.suffix.lstrip(".").lower() or "png"
    with atomic_target(target) as tmp:
        fig.savefig(tmp, format=fmt)
    return target


def plot_trace(trace: Sequence[Mapping[str, Any]], out_path_png: str | os.PathLike[str]) -> Path:
    """Acceptance rate and envelope M per scored round of a model-aware run (drift, S3.6).

    The acceptance rate falls as the model learns (fewer hard samples) and M follows the
    window of recent weights: the plot shows whether the rule kept up with the data.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = np.array([t["step"] for t in trace], dtype=float)
    rate = np.array([t["accepted"] / max(t["scored"], 1) for t in trace])
    expected = np.array([t["mean_acceptance"] for t in trace])
    envelope = np.array([t["envelope"] for t in trace])
    fig = Figure(figsize=(10, 3.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
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
    target = Path(out_path_png)
    with atomic_target(target) as tmp:
        fig.savefig(tmp, format="png")
    return target
