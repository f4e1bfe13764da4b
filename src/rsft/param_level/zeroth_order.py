"""Zeroth-order SGD (MeZO): a two-point gradient estimate along a seeded random direction.

g = (L(θ + εz) - L(θ - εz)) / 2ε estimates the directional derivative along z; the step
θ ← θ - lr·g·z regenerates z from the seed, so nothing but the model is held: the memory of
inference. Two forward passes per step, no backward. The comparison point for Metropolis:
both move the parameters with forward passes only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from rsft.param_level.metropolis import Closure, SeededStepper, _value
from rsft.param_level.perturb import InPlaceStep
from rsft.param_level.schedules import Convergence


class ZerothOrderSGD(SeededStepper):
    def __init__(
        self,
        params: nn.Module | Iterable[Any],
        *,
        patterns: Sequence[str] | str | None = None,
        lr: float = 1e-3,
        eps: float = 1e-3,
        seed: int = 0,
        tol: float = 0.0,
        patience: int = 0,
    ) -> None:
        super().__init__(params, patterns, eps, seed)
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}.")
        self.lr = float(lr)
        self.convergence = Convergence(tol, patience)
        self.converged = False

    @torch.no_grad()
    def step(self, closure: Closure) -> float:
        """One step; returns the mean of the two losses (the loss at θ, to second order)."""
        seed, eps = self.step_seed(), self.sigma

        def move(scale: float) -> None:  # MeZO's in-place steps: within rounding, no memory
            InPlaceStep(self.params, seed, scale, exact=False).apply()

        move(eps)
        plus = _value(closure())
        move(-2 * eps)
        minus = _value(closure())
        g = (plus - minus) / (2 * eps)
        # Back to θ and the step in one pass; a non-finite estimate only goes back.
        move(eps - self.lr * g if math.isfinite(g) else eps)
        self.t += 1
        loss = (plus + minus) / 2
        self.converged = self.convergence.update(loss)
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "t": self.t,
            "converged": self.converged,
            "convergence": self.convergence.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_seed(state)
        self.t = int(state["t"])
        self.converged = bool(state.get("converged", False))
        if "convergence" in state:
            self.convergence.load_state_dict(state["convergence"])
