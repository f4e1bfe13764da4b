"""The names ``rsft.compare.report`` has always offered, kept so existing imports still work.

Each now lives in one place: :mod:`rsft.compare.summary` (``summarize``),
:mod:`rsft.compare.table` (``format_table``), :mod:`rsft.compare.files` (``write_results``),
:mod:`rsft.compare.stats` (``mean_ci``), :mod:`rsft.compare.plot` (``plot_results``) and
:mod:`rsft.plots` (``plot_trace``). New code imports from those.
"""

from rsft.compare.files import write_results
from rsft.compare.plot import plot_results
from rsft.compare.stats import mean_ci
from rsft.compare.summary import ACCURACY_KEY, DEFAULT_METRICS, summarize
from rsft.compare.table import format_table
from rsft.plots.trace import plot_trace

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
