"""The figures rsft saves, all drawn without pyplot (see :mod:`rsft.plots.figure`).

``comparison.plot_results``: ``rsft compare``'s methods side by side;
``trace.plot_trace``: the acceptance trace of a model-aware training run;
``rounds.plot_rounds``: held-out pass@1 per round of ``rsft rft``.

The names load on first use: training imports ``plot_trace``, and importing the comparison
plot with it would pull ``rsft.compare`` (the layer above training) into every training run.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "plot_results": "rsft.plots.comparison",
    "plot_rounds": "rsft.plots.rounds",
    "plot_trace": "rsft.plots.trace",
}

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'rsft.plots' has no attribute {name!r}")
