"""Tests for rsft.compare.summary: per-method means, intervals and the paired delta."""

from __future__ import annotations

import math

import numpy as np
import pytest
from compare_records import DELTA, make_record

from rsft.compare.summary import summarize
from rsft.compare.table import format_table


def test_summarize_paired_delta_is_exact_constant(records: list[dict]) -> None:
    rows = summarize(records)
    assert [r["method"] for r in rows] == ["plain", "rsft"]
    plain, rsft = rows
    assert plain["n_seeds"] == rsft["n_seeds"] == 4
    assert plain["baseline"] == rsft["baseline"] == "plain"
    assert math.isnan(plain["delta_vs_baseline_mean"])
    assert rsft["delta_n_pairs"] == 4
    # Better by the same amount on every seed: positive delta, zero-width interval.
    assert rsft["delta_vs_baseline_mean"] == pytest.approx(DELTA)
    assert rsft["delta_vs_baseline_ci_low"] == pytest.approx(DELTA)
    assert rsft["delta_vs_baseline_ci_high"] == pytest.approx(DELTA)
    # Whereas the unpaired per-method intervals overlap widely (seed noise is shared).
    assert rsft["test_accuracy_ci_low"] < plain["test_accuracy_ci_high"]
    assert rsft["acceptance_rate_mean"] == 0.5
    assert rsft["backpropagated_mean"] == 6000
    assert plain["wall_time_mean"] == pytest.approx(3.25)


def test_summarize_pairs_by_seed_not_by_position() -> None:
    plain = [make_record("plain", s, a) for s, a in [(0, 0.5), (1, 0.75), (2, 0.625)]]
    # Different order and one seed missing from the baseline: only seeds 2 and 1 pair.
    other = [make_record("iw", s, a) for s, a in [(2, 0.5), (1, 0.625), (7, 0.99)]]
    rows = summarize(other + plain)
    assert [r["method"] for r in rows] == ["iw", "plain"]
    iw = rows[0]
    assert iw["delta_n_pairs"] == 2
    assert iw["delta_vs_baseline_mean"] == pytest.approx(-0.125)
    assert iw["delta_vs_baseline_ci_high"] == pytest.approx(-0.125)


def test_summarize_without_baseline_and_duplicates() -> None:
    rows = summarize([make_record("rsft", 0, 0.5), make_record("rsft", 1, 0.6)])
    assert rows[0]["baseline"] is None
    assert math.isnan(rows[0]["delta_vs_baseline_mean"])
    assert "n/a" in format_table(rows)
    with pytest.raises(ValueError, match="ambiguous"):
        summarize([make_record("rsft", 0, 0.5), make_record("rsft", 0, 0.6)])


def test_summarize_means_of_step_acceptance_and_memory(param_records: list[dict]) -> None:
    rows = {r["method"]: r for r in summarize(param_records)}
    mh, plain, zo = rows["metropolis"], rows["plain"], rows["zo-sgd"]
    assert mh["step_acceptance_mean"] == pytest.approx(np.mean([0.25, 0.375, 0.5]))
    assert mh["peak_memory_mean"] == 1_200_000
    assert mh["inference_memory_mean"] == 1_000_000
    assert mh["memory_vs_inference_mean"] == pytest.approx(1.2)
    assert plain["peak_memory_mean"] == 2_000_000
    assert plain["memory_vs_inference_mean"] == pytest.approx(2.0)
    # No step acceptance for gradient methods: NaN mean, but neither a failure nor a NaN accuracy.
    for row in (plain, zo):
        assert math.isnan(row["step_acceptance_mean"])
        assert row["n_failed"] == 0
        assert not math.isnan(row["test_accuracy_mean"])
    assert zo["delta_vs_baseline_mean"] == pytest.approx(0.0)


def test_summarize_skips_missing_metric_but_keeps_nan(param_records: list[dict]) -> None:
    # One seed without the field (an old record): the mean is over the seeds that report it.
    del param_records[3]["peak_memory"]  # metropolis seed 0
    param_records[4]["memory_vs_inference"] = None  # metropolis seed 1
    # A reported NaN (broken value) is not averaged away.
    param_records[0]["test_loss"] = float("nan")  # plain seed 0
    rows = {r["method"]: r for r in summarize(param_records)}
    assert rows["metropolis"]["peak_memory_mean"] == 1_200_000
    assert rows["metropolis"]["memory_vs_inference_mean"] == pytest.approx(1.2)
    assert rows["metropolis"]["n_failed"] == 0
    assert math.isnan(rows["plain"]["test_loss_mean"])
    assert rows["plain"]["n_failed"] == 0  # only a NaN accuracy is a failed run


def test_summarize_old_records_without_new_keys(records: list[dict]) -> None:
    rows = summarize(records)
    for row in rows:
        for key in ("step_acceptance", "peak_memory", "inference_memory", "memory_vs_inference"):
            assert math.isnan(row[f"{key}_mean"])
        assert row["n_failed"] == 0
