"""Model-aware rejection (confidence weights, Selective-Backprop): weights that depend on the model.

Every round of training data is first scored by a no-grad forward of the current model; the
scorer turns the outputs into log weights, an online envelope M follows them over a window
of recent samples (so it tracks drift), and the rule of :mod:`rsft.rule` keeps each sample
with probability min(1, w/M). Accepted samples wait in an :class:`AcceptQueue` until a full
training batch exists: no tiny batches, and every accepted sample is trained on exactly once.

Scorers split their work in two: ``raw`` runs on each process's share of the round (from
logits), ``log_weights`` runs on the whole round in its original order (so a percentile of
the loss, for example, is the same whatever the number of processes).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from rsft.imports import import_object
from rsft.models.task import detach
from rsft.rule import Envelope
from rsft.rule.envelope import quantile_log_m


class ScoreError(ValueError):
    """A model-aware weight function returned something that is not a weight per sample."""


class ConfidenceScorer:
    """Confidence weights: w(x) = p̂(x) / p(y | x; θ) with p̂ the empirical (uniform) distribution.

    Samples the model is unsure of (low probability of the true label) get large weights;
    ``log w = -log p(y|x)`` up to the constant log p̂, which the envelope absorbs.
    """

    fixed_envelope = False

    def raw(self, logits: torch.Tensor, labels: torch.Tensor, batch: dict) -> torch.Tensor:
        return -F.log_softmax(logits.float(), -1).gather(1, labels[:, None]).squeeze(1)

    def log_weights(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.to(torch.float64)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class LossPercentileScorer:
    """Selective-Backprop: P(accept) = max(floor, percentile(loss among recent losses) ** beta).

    The weights are probabilities already, so the envelope is M = 1 (no violations).
    """

    fixed_envelope = True

    def __init__(
        self,
        beta: float = 1.0,
        floor: float = 0.01,
        window: int = 1024,
        loss: Callable[[Any, dict], torch.Tensor] | None = None,
    ) -> None:
        self.beta, self.floor, self.window = beta, floor, window
        self.loss = loss  # a custom task's per-sample loss(outputs, batch); else cross-entropy
        self.history = torch.empty(0, dtype=torch.float64)  # the last `window` losses

    def raw(self, logits: Any, labels: torch.Tensor, batch: dict) -> torch.Tensor:
        if self.loss is not None:
            return self.loss(logits, batch).detach().float()
        return F.cross_entropy(logits.float(), labels, reduction="none")

    def log_weights(self, raw: torch.Tensor) -> torch.Tensor:
        raw = raw.to(torch.float64)
        recent = torch.cat([self.history, raw])
        # Percentile of each loss among the recent ones (this round included): P(L' <= L).
        pct = torch.searchsorted(recent.sort().values, raw, right=True).double() / len(recent)
        self.history = recent[-self.window :]
        return torch.log(torch.clamp(pct**self.beta, min=max(self.floor, 1e-300)))

    def state_dict(self) -> dict:
        return {"history": self.history.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.history = torch.tensor(state["history"], dtype=torch.float64)


class FunctionScorer:
    """The user's ``fn(inputs, labels, logits) -> weights``, named by import path."""

    fixed_envelope = False

    def __init__(self, path: str) -> None:
        self.path = path
        self.fn = import_object(path, "model-aware weight function")
        if not callable(self.fn):
            raise ValueError(f"model-aware weight function {path!r} is not callable.")

    def raw(self, logits: torch.Tensor, labels: torch.Tensor, batch: dict) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "index")}
        try:
            out = self.fn(inputs, labels, detach(logits))
        except Exception as err:
            raise ScoreError(
                f"model-aware weight function {self.path!r} raised {type(err).__name__}: {err}"
            ) from err
        w = torch.as_tensor(out, dtype=torch.float64).detach().cpu()
        if w.shape != (len(labels),):
            raise ScoreError(
                f"model-aware weight function {self.path!r} returned shape {tuple(w.shape)} for "
                f"a batch of {len(labels)}: return one non-negative number per sample."
            )
        bad = ~torch.isfinite(w) | (w < 0)
        if bad.any():
            i = int(torch.nonzero(bad)[0])
            raise ScoreError(
                f"model-aware weight function {self.path!r} returned {w[i].item()} for sample "
                f"{int(batch['index'][i])}: weights must be finite and >= 0."
            )
        return w

    def log_weights(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.log(raw.to(torch.float64))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def make_scorer(rejection: Any, loss: Callable[[Any, dict], torch.Tensor] | None = None):
    """The scorer of a model-aware ``rejection.weights``; ``loss`` is a custom task's
    per-sample loss (loss_percentile ranks it; None: cross-entropy)."""
    if rejection.weights == "confidence":
        return ConfidenceScorer()
    if rejection.weights == "loss_percentile":
        return LossPercentileScorer(rejection.beta, rejection.floor, rejection.window, loss)
    if rejection.weights == "model_function":
        return FunctionScorer(rejection.function)
    raise ValueError(f"{rejection.weights!r} is not a model-aware weight source.")


class OnlineEnvelope:
    """M over a sliding window of recent log weights: their max, or a quantile of them
    (zeros included, as :func:`rsft.rule.envelope.quantile_log_m` ranks them).

    A window (not the whole history) lets M follow the weights as the model and the data
    drift; the weights above M at the moment they are scored are counted as violations.
    A ``fixed`` M is the rule's :class:`~rsft.rule.Envelope`: a weight above it raises
    :class:`~rsft.rule.EnvelopeError` unless ``on_violation="count"``.
    """

    def __init__(
        self,
        policy: str,
        quantile: float,
        value: float | None,
        window: int,
        on_violation: str | None = None,
    ) -> None:
        self.policy, self.quantile, self.value, self.window = policy, quantile, value, window
        self.recent = torch.empty(0, dtype=torch.float64)  # the last `window` log w (zeros too)
        self.fixed = None
        if policy == "fixed":
            self.fixed = Envelope("fixed", value=value, on_violation=on_violation)  # type: ignore[arg-type]

    def update(self, log_w: torch.Tensor) -> float:
        if self.fixed is not None:
            return self.fixed.log_m(log_w)
        log_w = log_w.to(torch.float64)
        # Zero weights stay (a quantile ranks every sample); NaN and +inf do not.
        self.recent = torch.cat([self.recent, log_w[log_w < math.inf]])[-self.window :]
        if not (self.recent > -math.inf).any():
            return 0.0
        if self.policy == "max":
            return float(self.recent.max())
        return quantile_log_m(self.recent, self.quantile)

    def state_dict(self) -> dict:
        return {"recent": self.recent.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.recent = torch.tensor(state["recent"], dtype=torch.float64)


class AcceptQueue:
    """Accepted samples (dataset index, loss weight) waiting for a full training batch."""

    def __init__(self) -> None:
        self.items: deque[tuple[int, float]] = deque()

    def extend(self, indices: list[int], weights: list[float]) -> None:
        self.items.extend(zip(indices, weights))

    def pop(self, n: int) -> list[tuple[int, float]]:
        return [self.items.popleft() for _ in range(min(n, len(self.items)))]

    def __len__(self) -> int:
        return len(self.items)

    def state_dict(self) -> list[list[float]]:
        return [[i, w] for i, w in self.items]

    def load_state_dict(self, state: list) -> None:
        self.items = deque((int(i), float(w)) for i, w in state)
