"""TensorBoard: event files under ``output_dir/trackers/tensorboard``, written offline.

``tensorboard --logdir <output_dir>`` shows them (an RFT run's fine-tuning stages too, each
in its round's folder). The config is one text entry, ``config``, as YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

FLUSH_SECS = 10  # a live TensorBoard sees new points this often


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, folder: Path, config: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder = folder
        self.writer = SummaryWriter(log_dir=str(folder), flush_secs=FLUSH_SECS)
        text = yaml.safe_dump(dict(config), sort_keys=False)
        # Indented four spaces: TensorBoard renders text as Markdown, this as a code block.
        self.writer.add_text("config", "".join(f"    {line}\n" for line in text.splitlines()))

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)

    def close(self, failed: bool = False) -> None:
        self.writer.close()
