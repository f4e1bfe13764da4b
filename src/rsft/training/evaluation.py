"""Loading batches and evaluating a model on a labelled split.

Classification counts predictions per class too (the divergence guard's collapse check,
which only means something for classes); a custom task reports its own metric's per-item
scores (:func:`evaluate_task`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from rsft.data import Split
from rsft.models import Classifier
from rsft.models.inference import eval_mode, to_device
from rsft.models.task import Task, concat, detach


def make_loader(
    split: Split, batch_size: int, seed: int, num_workers: int = 0, sampler: Sampler | None = None
) -> DataLoader:
    """A DataLoader with a generator of its own: starting an iterator would otherwise draw
    from the global RNG, and a resumed run (which starts one mid-epoch) would drift from the
    original."""
    return DataLoader(
        split.dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        collate_fn=split.collate,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )


def evaluate_split(
    task: Task,
    clf: Classifier,
    model: torch.nn.Module,
    loader: DataLoader,
    device: torch.device | str,
    num_classes: int,
) -> dict[str, Any]:
    """:func:`evaluate` for classification (cross-entropy and accuracy), else
    :func:`evaluate_task` (a custom loss or metric: no classes to count)."""
    if task.classification:
        return evaluate(model, clf.logits, loader, num_classes, device)
    return evaluate_task(task, clf, model, (to_device(b, device) for b in loader))


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    logits_fn: Any,
    loader: DataLoader,
    num_classes: int,
    device: torch.device | str,
) -> dict[str, Any]:
    """Accuracy, mean loss and per-item outcomes (1 correct, 0 not, in the split's order),
    and how many samples are predicted as / labelled with each class (the divergence
    guard's collapse check). ``logits_fn(batch, model)`` calls the model."""
    correct: list[int] = []
    loss_sum = 0.0
    c = num_classes
    predicted, labels = torch.zeros(c, dtype=torch.long), torch.zeros(c, dtype=torch.long)
    with eval_mode(model):
        for batch in loader:
            batch = to_device(batch, device)
            logits = logits_fn(batch, model)
            loss_sum += float(F.cross_entropy(logits, batch["labels"], reduction="sum"))
            pred = logits.argmax(-1)
            correct += (pred == batch["labels"]).int().tolist()
            predicted += torch.bincount(pred.cpu(), minlength=c)
            labels += torch.bincount(batch["labels"].cpu(), minlength=c)
    n = len(correct)
    return {
        "accuracy": sum(correct) / n,
        "loss": loss_sum / n,
        "correct": correct,
        "predicted": predicted.tolist(),
        "labels": labels.tolist(),
    }


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
    with eval_mode(model):
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
