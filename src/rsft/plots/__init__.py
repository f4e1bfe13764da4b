"""The figures of training runs, drawn without pyplot (see :mod:`rsft.plots.figure`).

``trace.plot_trace``: the acceptance trace of a model-aware training run;
``rounds.plot_rounds``: held-out pass@1 per round of ``rsft rft``. ``rsft compare``'s figure
is :func:`rsft.compare.plot.plot_results`, beside the statistics it draws.
"""

from rsft.plots.rounds import plot_rounds
from rsft.plots.trace import plot_trace

__all__ = ["plot_rounds", "plot_trace"]
