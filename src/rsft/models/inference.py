"""Running a model on batches outside training: eval mode, and batches on its device."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """The model in eval mode inside the block, back in the mode it was in afterwards."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def to_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """The batch's tensors on ``device``; other values (ids, strings) as they are."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
