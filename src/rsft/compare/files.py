"""The files ``rsft compare`` leaves: results.json, results.csv, summary.csv and table.md.

JSON for programs (strict: a failed run's NaN is ``null``), CSV for spreadsheets, markdown
for people. Each is written atomically, so a compare killed while writing leaves the old
file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsft.atomic import atomic_write_text

__all__ = ["write_results"]


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
    table: str | None = None,
) -> dict[str, Path]:
    """Write ``results.json``, ``results.csv``, ``summary.csv`` (and ``table.md``) atomically.

    ``results.json`` holds ``{"meta", "summary", "records"}`` (histories included) as strict
    JSON: NaN/inf become ``null``, so a failed run reads as ``"test_accuracy": null``.
    ``results.csv`` has one line per record with flat columns (no history, no per-item
    outcomes) and ``summary.csv`` one line per method; both write NaN as ``nan``. With
    ``table`` (the text of :func:`rsft.compare.table.format_table`), ``table.md`` holds it.
    Returns ``{"json", "csv", "summary_csv"}``, with ``"table"`` when one was written.
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
    flat = frozenset({"history", "test_correct", "outcomes"})  # lists per epoch, item: JSON only
    atomic_write_text(paths["csv"], _csv_text(records, skip=flat))
    atomic_write_text(paths["summary_csv"], _csv_text(rows))
    if table is not None:
        paths["table"] = out / "table.md"
        atomic_write_text(paths["table"], table + "\n")
    return paths
