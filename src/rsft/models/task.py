"""What a run learns and how it is scored: the task's per-sample loss, metric and batching.

Rejection only needs one loss per sample, so the loop is open to any task: classification
(cross-entropy and accuracy, the default), segmentation, metric learning, ... A task names
its functions by import path in the config's ``task`` section:

- ``loss(outputs, batch) -> Tensor[batch]``: one loss per sample; the loop applies the loss
  weights and the reduction itself (so importance weighting and rejection work unchanged);
- ``metric(outputs, batch) -> Tensor[items]``: one score per evaluated item; the mean is the
  reported ``eval_accuracy``/``test_accuracy``, the items are what ``rsft compare``
  resamples. ``metric_on: split`` calls it once on the whole split (pairs, retrieval);
- ``collate(items) -> dict``: how dataset items become a batch;
- ``features(model, batch) -> Tensor[batch, d]``: what the density ratio's domain
  classifier sees (default: the input of the model's head).

``outputs`` is whatever the model's forward returns (its ``.logits`` if it has one): a
tensor, or a dict of tensors. Naming a function runs its code (docs/security.md).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from rsft.config import ConfigError, opt, section
from rsft.imports import import_object
from rsft.models.inference import eval_mode, to_device

CROSS_ENTROPY = "cross_entropy"
ACCURACY = "accuracy"


class TaskError(ValueError):
    """A task function returned something the loop cannot use; the message says what."""


class TaskWarning(UserWarning):
    """A task's metric returned values that ``rsft compare`` would misreport."""


def cross_entropy(outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """Classification's per-sample loss: cross-entropy of the logits and the label."""
    return F.cross_entropy(outputs, batch["labels"], reduction="none")


def accuracy(outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """Classification's per-item score: 1 when the top logit is the label, else 0."""
    return (outputs.argmax(-1) == batch["labels"]).int()


def _resolve(option: str, path: str, builtin: dict[str, Callable]) -> Callable:
    """The callable an option names: a built-in name or an import path ('pkg.module:fn')."""
    if path in builtin:
        return builtin[path]
    try:
        fn = import_object(path, f"task.{option}")
    except ValueError as err:
        names = f"{' or '.join(builtin)}, or " if builtin else ""
        raise ConfigError(
            f"task.{option}: {err} Give {names}an import path 'pkg.module:fn'."
        ) from err
    if not callable(fn):
        raise ConfigError(f"task.{option}: {path!r} is a {type(fn).__name__}, not a function.")
    return fn


LOSSES = {CROSS_ENTROPY: cross_entropy}
METRICS = {ACCURACY: accuracy}


@section("task")
@dataclass
class TaskConfig:
    """The task's functions, by import path (each runs its module's code: docs/security.md)."""

    loss: str = opt(
        CROSS_ENTROPY,
        help="cross_entropy (classification), or 'pkg.module:fn' of fn(outputs, batch) -> one "
        "loss per sample (a tensor of shape [batch]); rsft applies loss weights and the mean.",
    )
    metric: str = opt(
        ACCURACY,
        help="accuracy, or 'pkg.module:fn' of fn(outputs, batch) -> one score per item (in "
        "[0, 1]: rsft compare shows it in percent); its mean is reported as eval_accuracy and "
        "test_accuracy.",
    )
    metric_on: Literal["batch", "split"] = opt(
        "batch",
        help="batch: the metric scores each evaluation batch; split: it is called once with "
        "the outputs and batches of the whole split concatenated, and returns one score per "
        "item it defines (e.g. pairs of samples, for verification or retrieval).",
    )
    collate: str | None = opt(
        None,
        help="'pkg.module:fn' of fn(items: list of dicts) -> a dict batch (default: stack "
        "tensors, pad text); rsft adds 'index' when it is missing.",
    )
    features: str | None = opt(
        None,
        help="density_ratio: 'pkg.module:fn' of fn(model, batch) -> features [batch, d] for "
        "the domain classifier (default: the input of the model's head, flattened).",
    )

    def __post_init__(self) -> None:
        # Resolved now, so a typo fails before any data or model is loaded.
        _resolve("loss", self.loss, LOSSES)
        _resolve("metric", self.metric, METRICS)
        for option in ("collate", "features"):
            if getattr(self, option) is not None:
                _resolve(option, getattr(self, option), {})

    @property
    def classification(self) -> bool:
        """Cross-entropy and accuracy: the loop's classification path (and its checks)."""
        return self.loss == CROSS_ENTROPY and self.metric == ACCURACY


def check_task_options(config: Any) -> None:
    """Options of other sections that a custom task cannot serve (a TrainConfig's check)."""
    task, rej = config.task, config.rejection
    if task.loss != CROSS_ENTROPY and rej.weights == "confidence":
        raise ConfigError(
            "rejection.weights: confidence needs class logits and a class label (w = "
            f"1/p(y|x)), which a custom task.loss ({task.loss}) does not promise. Use "
            "loss_percentile (it ranks the task's own per-sample loss) or model_function."
        )


class TaskCollate:
    """A user's collate function, checked: a dict batch that carries each item's index.

    A class so DataLoader workers can pickle it (the function pickles by its import path).
    """

    def __init__(self, fn: Callable, path: str) -> None:
        self.fn, self.path = fn, path

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch = self.fn(list(items))
        if not isinstance(batch, dict):
            raise TaskError(
                f"task.collate {self.path!r} returned a {type(batch).__name__}; it must return "
                "a dict of the batch's fields (model inputs, 'labels', ...)."
            )
        if "index" not in batch:  # the loop traces loss weights and coins back to samples
            batch["index"] = torch.tensor([int(item["index"]) for item in items])
        return batch


class Task:
    """The resolved functions of a :class:`TaskConfig`, with their outputs checked."""

    def __init__(self, config: TaskConfig) -> None:
        self.config = config
        self.loss_fn = _resolve("loss", config.loss, LOSSES)
        self.metric_fn = _resolve("metric", config.metric, METRICS)
        self.collate_fn = _resolve("collate", config.collate, {}) if config.collate else None
        self.features_fn = _resolve("features", config.features, {}) if config.features else None
        self.classification = config.classification
        self._warned = False

    def attach(self, split: Any) -> Any:
        """Give a loaded split the task's collate function (if it has one)."""
        if split is not None and self.collate_fn is not None:
            split.collate = TaskCollate(self.collate_fn, str(self.config.collate))
        return split

    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        """One loss per sample of ``batch`` (shape checked, so a mean never slips through)."""
        out = self.loss_fn(outputs, batch)
        n = len(batch["index"])
        if not torch.is_tensor(out) or out.shape != (n,):
            got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise TaskError(
                f"task.loss {self.config.loss!r} returned {got} for a batch of {n}: it must "
                f"return one loss per sample, a tensor of shape ({n},) (reduction='none'); "
                "rsft weights and averages them."
            )
        return out

    def metric(self, outputs: Any, batch: dict[str, Any], whole_split: bool = False) -> list:
        """Per-item scores of a batch (or, with ``whole_split``, of the whole split)."""
        out = self.metric_fn(outputs, batch)
        n = len(batch["index"])
        values = torch.as_tensor(out).detach().cpu() if out is not None else None
        right = values is not None and values.ndim == 1 and len(values) > 0
        if right and not whole_split:
            right = len(values) == n
        if not right:
            got = tuple(values.shape) if values is not None else None
            want = "one score per item it defines, a 1-D tensor" if whole_split else f"({n},)"
            raise TaskError(
                f"task.metric {self.config.metric!r} returned shape {got} for "
                f"{'a split' if whole_split else 'a batch'} of {n}: it must return {want}."
            )
        scores = values.tolist()
        bad = [s for s in scores if not math.isfinite(s)]
        if bad:
            raise TaskError(
                f"task.metric {self.config.metric!r} returned {bad[0]}: scores must be finite."
            )
        if not self._warned and any(s < 0 or s > 1 for s in scores):
            self._warned = True
            warnings.warn(
                f"task.metric {self.config.metric!r} returned scores outside [0, 1] (e.g. "
                f"{next(s for s in scores if s < 0 or s > 1):g}): rsft compare shows the metric "
                "in percent and clips its intervals to [0, 1]. Return a score in [0, 1].",
                TaskWarning,
                stacklevel=2,
            )
        return scores

    @torch.no_grad()
    def features(self, clf: Any, loader: Any, device: torch.device | str) -> torch.Tensor:
        """The domain classifier's features of every sample: the task's function, else the
        head's input (:func:`rsft.models.extract_features`)."""
        from rsft.models.loading import extract_features

        if self.features_fn is None:
            return extract_features(clf, loader, device)
        model = clf.model
        out = []
        with eval_mode(model):
            for batch in loader:
                batch = to_device(batch, device)
                f = torch.as_tensor(self.features_fn(model, batch))
                n = len(batch["index"])
                if f.ndim != 2 or len(f) != n:
                    raise TaskError(
                        f"task.features {self.config.features!r} returned shape "
                        f"{tuple(f.shape)} for a batch of {n}: return ({n}, d) features."
                    )
                out.append(f.detach().float().cpu())
        return torch.cat(out)


def detach(outputs: Any, cpu: bool = False) -> Any:
    """``outputs`` (a tensor, or a dict/list/tuple of them) without their graph; on the CPU
    with ``cpu`` (what a whole split's outputs are kept on)."""
    if torch.is_tensor(outputs):
        return outputs.detach().cpu() if cpu else outputs.detach()
    if isinstance(outputs, dict):
        return {k: detach(v, cpu) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(detach(v, cpu) for v in outputs)
    return outputs


def concat(parts: list[Any]) -> Any:
    """Batches (or model outputs) joined along the first dimension, key by key."""
    first = parts[0]
    if torch.is_tensor(first):
        return torch.cat(parts)
    if isinstance(first, dict):
        return {k: concat([p[k] for p in parts]) for k in first}
    if isinstance(first, (list, tuple)) and first and torch.is_tensor(first[0]):
        return type(first)(concat(list(group)) for group in zip(*parts))
    if isinstance(first, list):
        return [v for p in parts for v in p]
    return parts
