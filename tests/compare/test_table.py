"""Tests for rsft.compare.table: the markdown table and its legend."""

from __future__ import annotations

from compare_records import MB, PLAIN, make_record

from rsft.compare.stats import mean_ci
from rsft.compare.summary import summarize
from rsft.compare.table import format_table


def _header(table: str) -> list[str]:
    return [c.strip() for c in table.splitlines()[0].strip("|").split("|")]


def _line(table: str, method: str) -> list[str]:
    line = next(x for x in table.splitlines() if x.startswith(f"| {method} "))
    return [c.strip() for c in line.strip("|").split("|")]


def _cell(table: str, method: str, column: str) -> str:
    return _line(table, method)[_header(table).index(column)]


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
    records.append(make_record("iw", 0, 0.7))
    table = format_table(summarize(records))
    rsft_line = next(line for line in table.splitlines() if line.startswith("| rsft"))
    assert "nan" in rsft_line and "1/4 failed" in rsft_line
    iw_line = next(line for line in table.splitlines() if line.startswith("| iw"))
    assert "70.0 (n=1)" in iw_line and "+20.0 (n=1)" in iw_line


def test_format_table_without_new_keys_is_unchanged(records: list[dict]) -> None:
    table = format_table(summarize(records))
    assert _header(table)[3:] == [
        "accept rate",
        "ESS",
        "violations",
        "fwd samples",
        "bwd samples",
        "wall s",
    ]
    assert "step accept" not in table and "peak mem" not in table and "–" not in table


def test_format_table_step_accept_and_peak_mem_columns(param_records: list[dict]) -> None:
    table = format_table(summarize(param_records))
    header = _header(table)
    assert header[3:] == [
        "accept rate",
        "step accept",
        "ESS",
        "violations",
        "fwd samples",
        "bwd samples",
        "peak mem",
        "wall s",
    ]
    assert _cell(table, "metropolis", "step accept") == "37.5%"
    assert _cell(table, "plain", "step accept") == "–"
    assert _cell(table, "zo-sgd", "step accept") == "–"
    assert _cell(table, "metropolis", "peak mem") == "1.2 MB (1.2×)"
    assert _cell(table, "plain", "peak mem") == "2.0 MB (2.0×)"
    assert _cell(table, "zo-sgd", "bwd samples") == "0"
    table_lines = [x for x in table.splitlines() if x.startswith("|")]
    assert len({len(x) for x in table_lines}) == 1
    legend = table.split("\n\n", 1)[1]
    assert "step accept: fraction of proposed parameter updates kept" in legend
    assert "peak mem: peak tensor memory of a training step" in legend
    assert "inference" in legend


def test_format_table_shows_only_the_columns_with_data(param_records: list[dict]) -> None:
    # Memory measured but no Metropolis/MALA run: "peak mem" without "step accept".
    recs = [r for r in param_records if r["method"] != "metropolis"]
    table = format_table(summarize(recs))
    assert "peak mem" in _header(table) and "step accept" not in _header(table)
    assert "step accept:" not in table and "peak mem:" in table
    # Step acceptance but no memory anywhere: the reverse.
    for r in param_records:
        for key in ("peak_memory", "inference_memory", "memory_vs_inference"):
            r[key] = None
    table = format_table(summarize(param_records))
    assert "step accept" in _header(table) and "peak mem" not in _header(table)
    assert "peak mem:" not in table and "step accept:" in table


def test_format_table_memory_cells(param_records: list[dict]) -> None:
    for r in param_records:
        if r["method"] == "plain":
            r["peak_memory"] = 1_536 * MB + 40_000  # thousands separator, one decimal
        elif r["method"] == "zo-sgd":
            r["memory_vs_inference"] = None  # ratio unknown: no multiplier
        else:
            r["peak_memory"] = r["inference_memory"] = r["memory_vs_inference"] = None
    table = format_table(summarize(param_records))
    assert _cell(table, "plain", "peak mem") == "1,536.0 MB (2.0×)"
    assert _cell(table, "zo-sgd", "peak mem") == "1.2 MB"
    assert _cell(table, "metropolis", "peak mem") == "–"
