"""Where the data level's weights come from, chosen by ``rejection.weights``.

Each source returns one non-negative weight per training sample, known before training:
a density ratio p_target/p_source from a domain classifier on the pretrained model's frozen
features, a group balance, a weight column, or the user's own function.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from rsft.data import Split, load_split, with_feature_columns
from rsft.data.validate import check_label_spellings
from rsft.data_level.weights import (
    balance_weights,
    column_weights,
    density_ratio_weights,
    function_weights,
)
from rsft.models import Classifier
from rsft.models.task import Task


def _features(clf: Classifier, split: Split, batch_size: int, device, task: Task) -> np.ndarray:
    """The domain classifier's features: the head's input, or the task's ``features``."""
    loader = DataLoader(split.dataset, batch_size=batch_size, collate_fn=split.collate)
    return task.features(clf, loader, device).numpy()


def compute_weights(
    cfg,
    train: Split,
    clf: Classifier,
    device: torch.device | str,
    task: Task,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The training samples' weights for ``cfg.rejection`` (None for plain fine-tuning);
    ``task`` is the run's, whose collate and features the density ratio uses."""
    rej = cfg.rejection
    if rej.weights == "none" or rej.model_aware:  # model-aware weights: scored in training
        return None, {"source": rej.weights}
    if rej.weights == "density_ratio":
        data = with_feature_columns(cfg.data, train.feature_columns)  # the training features
        target = load_split(rej.target_unlabelled, data, labelled=False, processor=clf.processor)
        task.attach(target)
        src = _features(clf, train, cfg.eval_batch_size, device, task)
        tgt = _features(clf, target, cfg.eval_batch_size, device, task)
        dr = density_ratio_weights(src, tgt, seed=cfg.seed, calibration=rej.calibration)
        info = {
            "source": "density_ratio",
            "domain_auc": dr.auc,
            "n_target": len(target),
            "scoring_forwarded": len(train) + len(target),
        }
        return dr.weights, info
    if rej.weights == "balance":
        column = rej.balance_column or cfg.data.group_column or cfg.data.label_column
        groups = train.column(column)
        if column != cfg.data.label_column:  # the labels were checked when they were read
            check_label_spellings(groups, f"column {column!r} of {train.source}", kind="group")
        return balance_weights(groups, rej.balance_target), {"source": "balance", "column": column}
    if rej.weights == "column":
        return column_weights(train.column(rej.column)), {"source": "column", "column": rej.column}
    if rej.weights == "function":
        w = function_weights(rej.function, train.examples(), batched=rej.batched)
        return w, {"source": "function", "function": rej.function}
    raise ValueError(f"unknown weight source {rej.weights!r}.")
