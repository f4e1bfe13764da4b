"""rsft's plots leave matplotlib's global state alone: a notebook keeps its backend and figures.

The backend is set to one that is not Agg first, as a notebook's would be, so a plot that
switched to Agg (``matplotlib.use``) or opened a pyplot figure would show here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pytest

from rsft.compare.plot import plot_results
from rsft.compare.summary import summarize
from rsft.generation.results import (
    EngineSummary,
    HeldOutEval,
    RFTResult,
    RoundResult,
    RoundSelection,
)
from rsft.plots import plot_rounds, plot_trace
from rsft.tasks.digits import render_examples

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TRACE = [
    {"step": 8 * i, "scored": 32, "accepted": 32 - i, "mean_acceptance": 0.9 - 0.02 * i,
     "envelope": 2.0 + 0.1 * i}
    for i in range(1, 12)
]  # fmt: skip


def _eval(pass_at_1: float) -> HeldOutEval:
    return HeldOutEval(10, pass_at_1, 0, 0, 3.0, distinct_n=2, distinct=0.5)


_SELECTION = RoundSelection(8, 4, 0, 0, "", 2, 2, 1, 0.5, {})
ROUNDS = RFTResult(
    "0",
    "base",
    _eval(0.2),
    [RoundResult(r, _SELECTION, _eval(0.2), _eval(0.2 + 0.1 * r), _eval(0.2)) for r in (1, 2, 3)],
    "model",
    {},
    EngineSummary("transformers"),
)


def _plots(records: list[dict]) -> dict[str, Callable[[Path], Path]]:
    return {
        "compare": lambda p: plot_results(records, summarize(records), p),
        "trace": lambda p: plot_trace(TRACE, p),
        "rounds": lambda p: plot_rounds(ROUNDS, p),
        "digits": lambda p: render_examples(p, n=4),
    }


@pytest.mark.parametrize("name", ["compare", "trace", "rounds", "digits"])
def test_plot_keeps_backend_and_opens_no_pyplot_figure(
    name: str, records: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(matplotlib.rcParams, "backend", "svg")  # restored after the test
    before = matplotlib.get_backend()
    out = _plots(records)[name](tmp_path / f"{name}.png")
    assert matplotlib.get_backend() == before == "svg"
    assert plt.get_fignums() == []
    assert out == tmp_path / f"{name}.png"
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.png"]  # no temp file left
