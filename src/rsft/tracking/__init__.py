"""Experiment trackers (``report_to``): TensorBoard, trackio, wandb, MLflow, several at once.

None is required: a backend is imported only when a run names it, and a named one that is
not installed is refused before any work starts. ``rsft train`` and ``rsft compare`` log
through :mod:`rsft.training.tracking`; ``rsft rft`` logs each round with
:func:`rft_round_metrics`, and its SFT stage hands ``report_to`` to TRL
(:mod:`rsft.tracking.transformers_env`). docs/tracking.md.
"""

from rsft.tracking.base import (
    BACKENDS,
    NAMES,
    REPORT_TO_HELP,
    Tracker,
    TrackerMissingError,
    Trackers,
    check_report_to,
    open_trackers,
    require_backends,
    run_name_of,
)
from rsft.tracking.rft import held_out_metrics_of, rft_round_metrics

__all__ = [
    "BACKENDS",
    "NAMES",
    "REPORT_TO_HELP",
    "Tracker",
    "TrackerMissingError",
    "Trackers",
    "check_report_to",
    "held_out_metrics_of",
    "open_trackers",
    "require_backends",
    "rft_round_metrics",
    "run_name_of",
]
