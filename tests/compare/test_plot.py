"""Tests for rsft.compare.plot: the ``rsft compare`` figure."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from compare_records import make_param_record, make_record

from rsft.compare.plot import _epoch_curve, plot_results
from rsft.compare.summary import summarize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_results_writes_png(records: list[dict], tmp_path: Path) -> None:
    records[5]["test_accuracy"] = float("nan")
    out = plot_results(records, summarize(records), tmp_path / "plots" / "compare.png")
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 20_000
    assert sorted(os.listdir(out.parent)) == ["compare.png"]


def test_plot_results_without_history(tmp_path: Path) -> None:
    recs = [make_record(m, s, 0.5 + 0.1 * s) for m in ("plain", "rsft") for s in range(3)]
    for r in recs:
        r["history"] = []
    out = plot_results(recs, summarize(recs), tmp_path / "c.png")
    assert out.read_bytes().startswith(PNG_MAGIC)


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
    recs = [
        make_param_record(m, s, 0.5 + 0.01 * i) for i, m in enumerate(methods) for s in range(2)
    ]
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
