"""Evaluation of a custom task: its mean per-sample loss and its metric's per-item scores.

Classification keeps its own evaluation in the trainer (it also counts predictions per
class, for the divergence guard's collapse check, which only means something for classes).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from rsft.models import Classifier
from rsft.models.task import Task, concat, detach


@torch.no_grad()
def evaluate_task(
    task: Task, clf: Classifier, model: torch.nn.Module, batches: Iterable[dict[str, Any]]
) -> dict[str, Any]:
    """``accuracy`` (the metric's mean), ``loss`` (the mean per-sample loss) and ``correct``
    (the per-item scores, in item order: what ``rsft compare`` bootstraps) of a split.

    ``task.config.metric_on: split`` keeps every batch's outputs (on the CPU) and calls the
    metric once on all of them: the items are then whatever the metric defines (pairs, ...).
    """
    whole_split = task.config.metric_on == "split"
    loss_sum, n = 0.0, 0
    scores: list = []
    kept: list[tuple[Any, dict[str, Any]]] = []
    for batch in batches:
        outputs = clf.logits(batch, model)
        loss = task.loss(outputs, batch)
        loss_sum += float(loss.double().sum())
        n += len(loss)
        if whole_split:
            kept.append((detach(outputs, cpu=True), detach(batch, cpu=True)))
        else:
            scores += task.metric(outputs, batch)
    if whole_split and kept:
        outputs = concat([o for o, _ in kept])
        batch = concat([b for _, b in kept])
        scores = task.metric(outputs, batch, whole_split=True)
    return {"accuracy": sum(scores) / len(scores), "loss": loss_sum / n, "correct": scores}
