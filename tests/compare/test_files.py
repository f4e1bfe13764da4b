"""Tests for rsft.compare.files: results.json, results.csv, summary.csv and table.md."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from compare_records import DELTA, PLAIN

from rsft.compare.files import write_results
from rsft.compare.summary import summarize
from rsft.compare.table import format_table


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


def test_write_results_writes_the_table_when_given(records: list[dict], tmp_path: Path) -> None:
    rows = summarize(records)
    table = format_table(rows)
    paths = write_results(records, rows, tmp_path, table=table)
    assert set(paths) == {"json", "csv", "summary_csv", "table"}
    assert paths["table"] == tmp_path / "table.md"
    assert paths["table"].read_text(encoding="utf-8") == table + "\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
