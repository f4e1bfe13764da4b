"""Per-method summaries of ``rsft compare`` records: means, intervals, paired differences.

The runner produces one plain-dict record per (method, seed). :func:`summarize` turns those
into the evidence a reader needs to decide whether a method helps: per-method means with
intervals that cover both the seeds' spread and the test set's own sampling error (see
:mod:`rsft.compare.stats`), and the *paired* difference to a baseline (same seed, same data,
same budget, same test items), which removes the variation that both methods share.

Failed runs (NaN accuracy) are never dropped: they make the affected means NaN so that the
failure shows in the table instead of silently flattering a method. A field that a record does
not carry (missing or None, e.g. ``step_acceptance`` for a gradient method, or memory in a record
written before it was measured) is *absent*, not failed: other metrics are averaged over the
seeds that report them, and a method none of whose seeds reports one gets NaN for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from rsft.compare.stats import interval, outcome_matrix, paired_differences

__all__ = [
    "ACCURACY_KEY",
    "DEFAULT_METRICS",
    "as_float",
    "group_by_method",
    "summarize",
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


def as_float(value: Any) -> float:
    """A record field as float; missing or non-numeric -> NaN so it shows rather than crashes.

    The table and the plot read record and row fields through this too, for the same reason.
    """
    if value is None:
        return _NAN
    try:
        return float(value)
    except (TypeError, ValueError):
        return _NAN


def group_by_method(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Records per method in first-appearance order; rejects duplicates that would break pairing.

    The comparison plot groups with it as well, so its seeds are the ones the summary used.
    """
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
    present = [as_float(v) for v in values if v is not None]
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
    groups = group_by_method(records)
    base_name = baseline if baseline is not None and baseline in groups else None
    base_recs = {r["seed"]: r for r in groups[base_name]} if base_name else {}

    rows: list[dict[str, Any]] = []
    for method, recs in groups.items():
        acc = [as_float(r.get(ACCURACY_KEY)) for r in recs]
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
                as_float(r.get(ACCURACY_KEY)) - as_float(b.get(ACCURACY_KEY)) for r, b in pairs
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
