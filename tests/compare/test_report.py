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
    _epoch_curve,
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


# --------------------------------------------------------------------------------------------
# gradient-free methods: step acceptance, memory, curves against forward passes

MB = 1_000_000


def _param_record(method: str, seed: int, acc: float, epochs: int = 3) -> dict:
    """A record as the trainer now writes it: forwarded in the history, memory, and for
    Metropolis/MALA the step acceptance (None for the other methods)."""
    rec = _record(method, seed, acc, epochs)
    metropolis = method in ("metropolis", "mala")
    gradient_free = metropolis or method == "zo-sgd"
    per_epoch = 2000 if gradient_free else 3000
    for entry in rec["history"]:
        entry["forwarded"] = per_epoch * entry["epoch"]
        if metropolis:
            entry.update(step_acceptance=0.25, sigma=0.01, temperature=1.0)
    rec["forwarded"] = per_epoch * epochs
    rec["backpropagated"] = 0 if gradient_free else per_epoch * epochs
    rec["step_acceptance"] = (0.25 + 0.125 * seed) if metropolis else None
    rec["peak_memory"] = 1_200_000 if gradient_free else 2_000_000
    rec["inference_memory"] = 1_000_000
    rec["memory_vs_inference"] = rec["peak_memory"] / rec["inference_memory"]
    return rec


@pytest.fixture
def param_records() -> list[dict]:
    return [
        _param_record(m, s, a)
        for m in ("plain", "metropolis", "zo-sgd")
        for s, a in enumerate(PLAIN[:3])
    ]


def _header(table: str) -> list[str]:
    return [c.strip() for c in table.splitlines()[0].strip("|").split("|")]


def _line(table: str, method: str) -> list[str]:
    line = next(x for x in table.splitlines() if x.startswith(f"| {method} "))
    return [c.strip() for c in line.strip("|").split("|")]


def _cell(table: str, method: str, column: str) -> str:
    return _line(table, method)[_header(table).index(column)]


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


def test_epoch_curve_x_axis_choice() -> None:
    history = [
        {"epoch": 1, "step": 5, "forwarded": 640, "eval_accuracy": 0.5, "eval_loss": 2.0},
        {"epoch": 2, "step": 10, "forwarded": 1280, "eval_accuracy": 0.75, "eval_loss": 1.0},
        {"epoch": 3, "step": 15, "forwarded": 1920, "eval_accuracy": None, "eval_loss": 0.5},
    ]
    assert _epoch_curve(history) == {1.0: (5.0, 0.5), 2.0: (10.0, 0.75)}
    assert _epoch_curve(history, "eval_loss", "forwarded") == {
        1.0: (640.0, 2.0),
        2.0: (1280.0, 1.0),
        3.0: (1920.0, 0.5),
    }
    # No step recorded: the epoch stands in for it.
    assert _epoch_curve([{"epoch": 2, "eval_accuracy": 0.5}]) == {2.0: (2.0, 0.5)}


@pytest.fixture
def saved_figures(monkeypatch: pytest.MonkeyPatch) -> list:
    """The Figure objects plot_results saves, to check what they show."""
    from matplotlib.figure import Figure

    figures: list = []
    original = Figure.savefig

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return figures


def _axes_by_panel(fig) -> dict:  # type: ignore[no-untyped-def]
    return {ax.get_title()[:3]: ax for ax in fig.axes}


def test_plot_results_against_forwarded_samples_with_loss_panel(
    param_records: list[dict], tmp_path: Path, saved_figures: list
) -> None:
    out = plot_results(param_records, summarize(param_records), tmp_path / "compare.png")
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert os.listdir(tmp_path) == ["compare.png"]
    (fig,) = saved_figures
    panels = _axes_by_panel(fig)
    assert set(panels) == {"(a)", "(b)", "(c)"}
    for key in ("(b)", "(c)"):
        assert panels[key].get_xlabel() == "forwarded samples (mean over seeds at each epoch end)"
        assert "forward passes" in panels[key].get_title()
    assert panels["(c)"].get_ylabel() == "eval loss"
    # The curves sit at the forwarded samples: 2000 per epoch for Metropolis, 3000 for plain.
    xs = {tuple(line.get_xdata()) for line in panels["(c)"].get_lines()}
    assert (2000.0, 4000.0, 6000.0) in xs and (3000.0, 6000.0, 9000.0) in xs
    # The eval loss of the history (1/e, mean over seeds), not the accuracy.
    ys = {tuple(np.round(line.get_ydata(), 6)) for line in panels["(c)"].get_lines()}
    assert tuple(np.round([1.0, 0.5, 1 / 3], 6)) in ys
    # One figure legend for the curves, one entry per method.
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["plain (n=3)", "metropolis (n=3)", "zo-sgd (n=3)"]


def test_plot_results_falls_back_to_steps_without_forwarded(
    records: list[dict], tmp_path: Path, saved_figures: list
) -> None:
    for r in records:  # old histories: steps only, no eval loss
        for entry in r["history"]:
            del entry["eval_loss"]
    out = plot_results(records, summarize(records), tmp_path / "compare.png")
    assert out.read_bytes().startswith(PNG_MAGIC)
    panels = _axes_by_panel(saved_figures[0])
    assert set(panels) == {"(a)", "(b)"}
    assert panels["(b)"].get_xlabel() == "optimizer steps (mean over seeds at each epoch end)"
    xs = {tuple(line.get_xdata()) for line in panels["(b)"].get_lines()}
    assert xs == {(10.0, 20.0, 30.0)}


def test_plot_results_mixed_histories_use_steps(
    param_records: list[dict], tmp_path: Path, saved_figures: list
) -> None:
    # One run without forwarded in its history: one axis for all, so optimizer steps.
    for entry in param_records[0]["history"]:
        del entry["forwarded"]
    plot_results(param_records, summarize(param_records), tmp_path / "compare.png")
    panels = _axes_by_panel(saved_figures[0])
    assert set(panels) == {"(a)", "(b)", "(c)"}
    assert panels["(c)"].get_xlabel().startswith("optimizer steps")


def test_plot_results_many_methods_repeat_colours_with_other_styles(
    tmp_path: Path, saved_figures: list
) -> None:
    methods = [f"m{i:02d}" for i in range(14)]
    recs = [_param_record(m, s, 0.5 + 0.01 * i) for i, m in enumerate(methods) for s in range(2)]
    out = plot_results(recs, summarize(recs, baseline="m00"), tmp_path / "many.png")
    assert out.read_bytes().startswith(PNG_MAGIC)
    (fig,) = saved_figures
    (legend,) = fig.legends
    handles = legend.legend_handles
    assert len(handles) == 14
    styles = [(h.get_color(), h.get_linestyle(), h.get_marker()) for h in handles]
    assert len(set(styles)) == 14  # every method distinguishable
    assert styles[0][0] == styles[10][0]  # colours repeat past 10 ...
    assert styles[0][1:] != styles[10][1:]  # ... with another line style and marker
