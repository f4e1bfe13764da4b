"""How the temperature T and the proposal scale σ move during a run.

Temperature: constant (T = 1: the rule on the raw loss), or annealed from ``start`` to ``end``
linearly, geometrically or on a cosine. σ: adapted every ``every`` steps towards a target
acceptance rate (0.234 is optimal for a random walk in many dimensions; 0.574 for MALA),
with a Robbins-Monro gain that shrinks as 1/sqrt(k) so that σ settles. Adapting forever
breaks the chain's detailed balance: stop at ``until`` (a burn-in) to sample exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

TemperatureKind = Literal["constant", "linear", "geometric", "cosine"]


@dataclass
class TemperatureSchedule:
    start: float = 1.0
    end: float | None = None
    kind: TemperatureKind = "constant"
    total: int | None = None

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise ValueError(
                    f"temperature {name} must be a finite number > 0, got {v}: "
                    "exp(-L/T) needs T > 0 (small T: greedy; large T: a random walk)."
                )
        if self.kind not in ("constant", "linear", "geometric", "cosine"):
            raise ValueError(
                f"unknown temperature schedule {self.kind!r}: constant, linear, geometric, cosine."
            )
        if self.kind != "constant" and self.end is None:
            raise ValueError(f"a {self.kind} temperature schedule needs an end temperature.")
        if self.kind != "constant" and not (self.total and self.total > 0):
            raise ValueError(
                f"a {self.kind} temperature schedule needs the run's number of steps "
                "(max_iter) to anneal over."
            )

    def __call__(self, step: int) -> float:
        if self.kind == "constant" or self.end is None or not self.total:
            return self.start
        f = min(1.0, step / self.total)
        if self.kind == "linear":
            return self.start + f * (self.end - self.start)
        if self.kind == "geometric":
            return self.start * (self.end / self.start) ** f
        return self.end + 0.5 * (self.start - self.end) * (1 + math.cos(math.pi * f))


@dataclass
class SigmaAdapter:
    """log σ += gain/sqrt(k) · (rate - target) after the k-th window of ``every`` steps."""

    target: float | None = 0.234
    every: int = 20
    gain: float = 1.0
    until: int | None = None
    k: int = 0
    window_accepted: int = 0
    window_steps: int = 0

    def __post_init__(self) -> None:
        if self.target is not None and not 0.0 < self.target < 1.0:
            raise ValueError(f"target acceptance must be in (0, 1), got {self.target}.")
        if self.every < 1:
            raise ValueError(f"adapt_every must be >= 1, got {self.every}.")
        if not self.gain > 0:
            raise ValueError(f"adapt_gain must be > 0, got {self.gain}.")

    def update(self, sigma: float, accepted: bool, step: int) -> float:
        """Record one proposal; return σ (changed only at the end of a window)."""
        if self.target is None or (self.until is not None and step >= self.until):
            return sigma
        self.window_accepted += int(accepted)
        self.window_steps += 1
        if self.window_steps < self.every:
            return sigma
        self.k += 1
        rate = self.window_accepted / self.window_steps
        self.window_accepted = self.window_steps = 0
        return sigma * math.exp(self.gain / math.sqrt(self.k) * (rate - self.target))

    def state_dict(self) -> dict:
        return {"k": self.k, "accepted": self.window_accepted, "steps": self.window_steps}

    def load_state_dict(self, state: dict) -> None:
        self.k, self.window_accepted, self.window_steps = (
            state["k"],
            state["accepted"],
            state["steps"],
        )


@dataclass
class Convergence:
    """Stop when the smoothed loss has not improved by ``tol`` (relative) in ``patience`` steps."""

    tol: float = 0.0
    patience: int = 0
    smoothing: float = 0.9
    ema: float | None = None
    best: float = math.inf
    since: int = 0

    def update(self, loss: float) -> bool:
        if self.patience <= 0 or not math.isfinite(loss):
            return False
        a = self.smoothing
        self.ema = loss if self.ema is None else a * self.ema + (1 - a) * loss
        if self.ema < self.best - self.tol * abs(self.best if math.isfinite(self.best) else 0):
            self.best, self.since = self.ema, 0
        else:
            self.since += 1
        return self.since >= self.patience

    def state_dict(self) -> dict:
        return {"ema": self.ema, "best": self.best, "since": self.since}

    def load_state_dict(self, state: dict) -> None:
        self.ema, self.best, self.since = state["ema"], state["best"], state["since"]
