"""The model a fine-tuning run starts from: the pretrained one, its head resized, the frozen
part frozen (what ``model:`` in a training config describes)."""

from __future__ import annotations

from typing import Any

from rsft.models.freeze import apply_freeze
from rsft.models.loading import Classifier, load_classifier


def load_for_finetuning(
    model_cfg: Any, classes: list[str], processor: Any, seed: int
) -> tuple[Classifier, dict[str, int]]:
    """The classifier for ``classes`` and its parameter counts (total, trainable)."""
    trust = model_cfg.trust_remote_code
    clf = load_classifier(
        model_cfg.path,
        len(classes),
        classes=classes,
        kwargs=model_cfg.kwargs,
        head=model_cfg.head,
        seed=seed,
        trust_remote_code=trust,
    )
    if clf.processor is None:
        clf.processor = processor
    counts = apply_freeze(
        clf.model,
        model_cfg.freeze,
        clf.head,
        train_last_n=model_cfg.train_last_n,
        blocks=model_cfg.blocks,
        freeze_patterns=model_cfg.freeze_patterns,
        trainable_patterns=model_cfg.trainable_patterns,
    )
    return clf, counts
