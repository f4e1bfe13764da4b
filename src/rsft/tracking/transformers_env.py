"""Where transformers' own trackers write during the SFT stage, set through the environment
variables they document, as the rest of rsft's trackers are placed.

TRL's trainer reports through transformers' callbacks (``report_to``), which read their
folders and modes from the environment: TensorBoard's TENSORBOARD_LOGGING_DIR (by default a
folder inside the trainer's output_dir, which the stage deletes when it is done), wandb's
WANDB_MODE, WANDB_DIR and WANDB_PROJECT, MLflow's MLFLOW_TRACKING_URI and
MLFLOW_EXPERIMENT_NAME. :func:`tracker_environment` sets the ones the user has not set for
the stage's duration only, so each round writes into its own folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rsft.tracking.base import PROJECT


def tracker_defaults(report_to: Sequence[str], folder: Path) -> dict[str, str]:
    """The variables transformers' trackers in ``report_to`` read, pointing into ``folder``
    (``<stage>/trackers``), less those already set."""
    folder = folder.resolve()
    env: dict[str, str] = {}
    if "tensorboard" in report_to:
        env["TENSORBOARD_LOGGING_DIR"] = str(folder / "tensorboard")
    if "wandb" in report_to:
        env.update(WANDB_MODE="offline", WANDB_DIR=str(folder / "wandb"), WANDB_PROJECT=PROJECT)
    if "mlflow" in report_to:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow' / 'mlflow.db'}"
        env["MLFLOW_EXPERIMENT_NAME"] = PROJECT
    return {k: v for k, v in env.items() if not os.environ.get(k)}


@contextmanager
def tracker_environment(report_to: Sequence[str], folder: Path) -> Iterator[dict[str, str]]:
    """Set :func:`tracker_defaults` meanwhile (their folders created), and unset them after."""
    env = tracker_defaults(report_to, folder)
    if "WANDB_DIR" in env:
        Path(env["WANDB_DIR"]).mkdir(parents=True, exist_ok=True)
    if "MLFLOW_TRACKING_URI" in env:
        (folder / "mlflow").mkdir(parents=True, exist_ok=True)
    os.environ.update(env)
    try:
        yield env
    finally:
        for key in env:
            os.environ.pop(key, None)
