"""The envelope M: how it is chosen, and what happens when a weight exceeds it.

With ``M >= max p/q`` accepted draws follow p exactly. A smaller M accepts more draws but
every sample whose ratio is above M is accepted with probability 1 instead of w/M: the
accepted set is then biased towards p clipped at M·q. rsft counts those *violations* and
reports them; a fixed M below the weights is an error unless the user allows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

Policy = Literal["max", "quantile", "fixed"]
OnViolation = Literal["error", "count"]


class EnvelopeError(ValueError):
    """A weight is above a fixed envelope M that does not allow violations."""


@dataclass
class Envelope:
    """How M is set.

    - ``max``: M = the largest weight (exact; the acceptance rate is mean(w)/max(w)).
    - ``quantile``: M = the ``quantile`` of all the weights, zeros included (higher
      acceptance; the weights above it, about 1 - quantile of the samples, are violations,
      counted). See :func:`quantile_log_m`.
    - ``fixed``: M = ``value``. Weights above it raise :class:`EnvelopeError` unless
      ``on_violation="count"``.
    """

    policy: Policy = "max"
    quantile: float = 0.99
    value: float | None = None
    on_violation: OnViolation | None = None

    def __post_init__(self) -> None:
        if self.policy not in ("max", "quantile", "fixed"):
            raise ValueError(
                f"unknown envelope policy {self.policy!r}: use 'max', 'quantile' or 'fixed'."
            )
        if self.policy == "quantile" and not 0.0 < self.quantile <= 1.0:
            raise ValueError(f"envelope quantile must be in (0, 1], got {self.quantile}.")
        if self.policy == "fixed":
            if self.value is None or not math.isfinite(self.value) or self.value <= 0:
                raise ValueError(
                    f"envelope policy 'fixed' needs a positive finite value M, got {self.value}."
                )
        if self.on_violation is None:
            self.on_violation = "error" if self.policy == "fixed" else "count"
        if self.on_violation not in ("error", "count"):
            raise ValueError("on_violation must be 'error' or 'count'.")

    def log_m(self, log_w: torch.Tensor) -> float:
        """Resolve log M for these log weights, raising if a fixed M is too small."""
        finite = log_w[torch.isfinite(log_w)]
        if self.policy == "max":
            return float(finite.max())
        if self.policy == "quantile":
            return quantile_log_m(log_w, self.quantile)
        log_m = math.log(self.value)  # type: ignore[arg-type]
        if self.on_violation == "error":
            over = violations(log_w, log_m)
            if over:
                biggest = float(log_w.max().exp())
                raise EnvelopeError(
                    f"envelope M={self.value:g} is below {over} weight(s) (largest {biggest:.4g}): "
                    f"accepted samples would not follow the target. Set M >= {biggest:.4g}, use "
                    "envelope policy 'max' or 'quantile', or set on_violation: count to accept "
                    "the bias and have it counted."
                )
        return log_m


def violations(log_w: torch.Tensor, log_m: float) -> int:
    """How many weights are above M, by more than float rounding (1e-12 in log space).

    The one test of a bound: a fixed M raises on it, the statistics count it.
    """
    return int((log_w > log_m + 1e-12).sum())


def quantile_log_m(log_w: torch.Tensor, quantile: float) -> float:
    """log of the ``quantile`` of the weights, zero weights (log w = -inf) counted.

    Ranking every sample keeps the promise of a quantile envelope: about ``1 - quantile`` of
    the samples are violations, whatever share of the weights is zero. The quantile is
    interpolated between log weights, and never falls below the smallest positive weight:
    M = 0 (a quantile among the zeros) would make every positive weight a violation, and
    log 0 cannot be interpolated.
    """
    log_w = log_w.to(torch.float64).flatten()
    positive = log_w > -math.inf
    if not positive.any():
        raise ValueError("a quantile envelope needs at least one positive weight.")
    floor = log_w[positive].min()
    return float(torch.quantile(torch.where(positive, log_w, floor), quantile))
