"""Weights & Biases, offline by default: the run is written under
``output_dir/trackers/wandb`` and uploaded only by ``wandb sync`` (or with WANDB_MODE=online).

The user's own settings win: WANDB_MODE, WANDB_DIR and WANDB_PROJECT are read by wandb
itself when set; otherwise rsft uses offline mode, that folder and the project ``rsft``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rsft.tracking.base import PROJECT


class WandbTracker:
    name = "wandb"

    def __init__(self, folder: Path, run_name: str, config: Mapping[str, Any]) -> None:
        import wandb

        own_dir = not os.environ.get("WANDB_DIR")
        if own_dir:
            folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=None if os.environ.get("WANDB_PROJECT") else PROJECT,
            name=run_name,
            config=dict(config),
            dir=str(folder) if own_dir else None,
            mode=None if os.environ.get("WANDB_MODE") else "offline",
        )

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)
