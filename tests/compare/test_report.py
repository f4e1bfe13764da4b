"""Tests for rsft.compare.report: the statistics, the table, the files and the plot."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from rsft.compare.report import (
    format_table,
    mean_ci,
    plot_results,
    summarize,
    write_results,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _record(method: str, seed: int, acc: float, epochs: int = 3) -> dict:
    history = [
        {
            "epoch": e,
            "step": 10 * e,
            "eval_accuracy": acc - 0.05 * (epochs - e),
            "eval_loss": 1.0 / e,
            "train_loss": 1.2 / e,
            "accepted": 100,
        }
        for e in range(1, epochs + 1)
    ]
    rsft = method != "plain"
    return {
        "method": method,
        "seed": seed,
        "test_accuracy": acc,
        "test_loss": 0.5,
        "acceptance_rate": 0.5 if rsft else 1.0,
        "ess_fraction": 0.4 if rsft else 1.0,
        "violations": 2 if rsft else 0,
        "envelope": 1.0,
        "forwarded": 12000,
        "backpropagated": 6000 if rsft else 12000,
        "wall_time": 3.25,
        "history": history,
    }


# Exactly representable accuracies, so "better by a constant" is exact in floating point.
PLAIN = [0.5, 0.625, 0.75, 0.5625]
DELTA = 0.125


@pytest.fixture
def records() -> list[dict]:
    recs = [_record("plain", s, a) for s, a in enumerate(PLAIN)]
    recs += [_record("rsft", s, a + DELTA) for s, a in enumerate(PLAIN)]
    return recs


def test_mean_ci_matches_scipy_t_interval() -> None:
    values = np.array([0.81, 0.79, 0.84, 0.80, 0.78])
    mean, low, high = mean_ci(values, confidence=0.95)
    exp_low, exp_high = stats.t.interval(
        0.95, df=len(values) - 1, loc=values.mean(), scale=stats.sem(values)
    )
    # And by hand: t quantile * s / sqrt(n).
    half = stats.t.ppf(0.975, 4) * values.std(ddof=1) / math.sqrt(5)
    assert mean == pytest.approx(values.mean())
    assert (low, high) == pytest.approx((exp_low, exp_high))
    assert (low, high) == pytest.approx((values.mean() - half, values.mean() + half))
    # A lower confidence gives a narrower interval.
    _, low90, high90 = mean_ci(values, confidence=0.90)
    assert low < low90 < high90 < high


def test_mean_ci_edge_cases() -> None:
    mean, low, high = mean_ci([0.7])
    assert mean == 0.7 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(x) for x in mean_ci([0.7, float("nan"), 0.8]))
    assert all(math.isnan(x) for x in mean_ci([]))
    assert mean_ci([0.6, 0.6, 0.6]) == (0.6, 0.6, 0.6)
    with pytest.raises(ValueError):
        mean_ci([0.1, 0.2], confidence=1.5)


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
    plain = [_record("plain", s, a) for s, a in [(0, 0.5), (1, 0.75), (2, 0.625)]]
    # Different order and one seed missing from the baseline: only seeds 2 and 1 pair.
    other = [_record("iw", s, a) for s, a in [(2, 0.5), (1, 0.625), (7, 0.99)]]
    rows = summarize(other + plain)
    assert [r["method"] for r in rows] == ["iw", "plain"]
    iw = rows[0]
    assert iw["delta_n_pairs"] == 2
    assert iw["delta_vs_baseline_mean"] == pytest.approx(-0.125)
    assert iw["delta_vs_baseline_ci_high"] == pytest.approx(-0.125)


def test_summarize_without_baseline_and_duplicates() -> None:
    rows = summarize([_record("rsft", 0, 0.5), _record("rsft", 1, 0.6)])
    assert rows[0]["baseline"] is None
    assert math.isnan(rows[0]["delta_vs_baseline_mean"])
    assert "n/a" in format_table(rows)
    with pytest.raises(ValueError, match="ambiguous"):
        summarize([_record("rsft", 0, 0.5), _record("rsft", 0, 0.6)])


def test_format_table_contents(records: list[dict]) -> None:
    table = format_table(summarize(records))
    lines = table.splitlines()
    header = lines[0]
    for col in ["method", "target acc", "Δ vs plain", "accept rate", "ESS", "violations"]:
        assert col in header
    assert set(lines[1]) <= {"|", "-", ":", " "}
    plain_line = next(line for line in lines if line.startswith("| plain"))
    rsft_line = next(line for line in lines if line.startswith("| rsft"))
    mean, low, high = mean_ci(PLAIN)
    assert f"{100 * mean:.1f} [{100 * low:.1f}, {100 * high:.1f}]" in plain_line
    assert "(baseline)" in plain_line
    assert "+12.5 [+12.5, +12.5]" in rsft_line
    assert "50.0%" in rsft_line and "6,000" in rsft_line and "12,000" in rsft_line
    # Fixed width: every table line has the same length.
    table_lines = [line for line in lines if line.startswith("|")]
    assert len({len(line) for line in table_lines}) == 1
    assert len(table_lines) == 4


def test_format_table_shows_failure_and_single_seed(records: list[dict]) -> None:
    records[5]["test_accuracy"] = float("nan")  # rsft, seed 1 failed
    records.append(_record("iw", 0, 0.7))
    table = format_table(summarize(records))
    rsft_line = next(line for line in table.splitlines() if line.startswith("| rsft"))
    assert "nan" in rsft_line and "1/4 failed" in rsft_line
    iw_line = next(line for line in table.splitlines() if line.startswith("| iw"))
    assert "70.0 (n=1)" in iw_line and "+20.0 (n=1)" in iw_line


def test_write_results_round_trip(records: list[dict], tmp_path: Path) -> None:
    records[1]["test_accuracy"] = float("nan")
    records[0]["forwarded"] = np.int64(12000)  # numpy scalars from the runner must not break
    rows = summarize(records)
    out = tmp_path / "run"
    paths = write_results(records, rows, out, meta={"config": "x.yaml", "seeds": [0, 1]})
    assert set(paths) == {"json", "csv", "summary_csv"}
    assert all(p.is_file() for p in paths.values())
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    data = json.loads(paths["json"].read_text())  # strict JSON: NaN became null
    assert data["meta"] == {"config": "x.yaml", "seeds": [0, 1]}
    assert len(data["records"]) == 8 and len(data["summary"]) == 2
    assert data["records"][1]["test_accuracy"] is None
    assert data["records"][0]["history"][0]["epoch"] == 1

    with paths["csv"].open(newline="") as fh:
        rec_rows = list(csv.DictReader(fh))
    assert len(rec_rows) == 8
    assert "history" not in rec_rows[0]
    assert rec_rows[1]["test_accuracy"] == "nan"
    assert float(rec_rows[4]["test_accuracy"]) == PLAIN[0] + DELTA

    with paths["summary_csv"].open(newline="") as fh:
        sum_rows = list(csv.DictReader(fh))
    assert [r["method"] for r in sum_rows] == ["plain", "rsft"]
    # The failed baseline seed makes both the baseline mean and the paired delta NaN.
    assert sum_rows[1]["delta_vs_baseline_mean"] == "nan"
    assert data["summary"][1]["delta_vs_baseline_mean"] is None
    assert float(sum_rows[1]["test_accuracy_mean"]) == pytest.approx(np.mean(PLAIN) + DELTA)


def test_plot_results_writes_png(records: list[dict], tmp_path: Path) -> None:
    records[5]["test_accuracy"] = float("nan")
    out = plot_results(records, summarize(records), tmp_path / "plots" / "compare.png")
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 20_000
    assert sorted(os.listdir(out.parent)) == ["compare.png"]


def test_plot_results_without_history(tmp_path: Path) -> None:
    recs = [_record(m, s, 0.5 + 0.1 * s) for m in ("plain", "rsft") for s in range(3)]
    for r in recs:
        r["history"] = []
    out = plot_results(recs, summarize(recs), tmp_path / "c.png")
    assert out.read_bytes().startswith(PNG_MAGIC)
