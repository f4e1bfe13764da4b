"""Steppers: how one step moves the parameters, behind one protocol.

:class:`GradientStepper` is backpropagation with a torch optimizer (gradient accumulation,
per-sample loss weights, clipping, accelerate's DDP). :class:`ParamLevelStepper` wraps the
parameter-level methods (Metropolis, MALA, zeroth-order SGD), which propose and test updates
themselves. The loop calls ``step`` and never asks which kind it holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from transformers import get_scheduler

from rsft.models.inference import eval_mode
from rsft.param_level import Metropolis, ZerothOrderSGD
from rsft.training.config import PARAM_LEVEL
from rsft.training.gradient_free import PASSES, batch_loss, build_method
from rsft.training.state import TrainState

Micro = list[tuple[dict, torch.Tensor | None]]
"""A step's micro-batches on this process: (batch, per-sample loss weights or None)."""

LossSum = Callable[[dict, torch.Tensor | None, Any], torch.Tensor]
"""``loss_sum(batch, weights, model)``: the run's summed (weighted) per-sample loss."""


class Stepper(Protocol):
    passes: tuple[int, int]  # (forward, backward) passes per sample and step
    optimizer: Any  # what a checkpoint saves (``state_dict``/``load_state_dict``)
    scheduler: Any  # the learning-rate schedule, or None

    def step(self, micro: Micro, n_step: int) -> float:
        """One step over ``micro``; ``n_step`` samples over all processes; the mean loss."""

    def done(self) -> bool:
        """The method has converged or reached its iteration cap."""

    def epoch_begin(self, state: TrainState) -> None: ...

    def epoch_record(self, state: TrainState) -> dict[str, Any]:
        """Fields of the epoch's record that only this method has."""

    def result_fields(self) -> dict[str, Any]:
        """Fields of the run's results that only this method has."""


def build_optimizer(cfg: Any, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


class GradientStepper:
    """A torch optimizer step over micro-batches (gradient accumulation)."""

    passes = (1, 1)

    def __init__(
        self,
        accelerator: Accelerator,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        loss_sum: LossSum,
        check_finite: Callable[[float], None],
        max_grad_norm: float | None = None,
    ) -> None:
        self.acc, self.model = accelerator, model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.loss_sum, self.check_finite, self.max_grad_norm = loss_sum, check_finite, max_grad_norm

    def step(self, micro: Micro, n_step: int) -> float:
        """``n_step`` is the step's sample count over all processes: every sample weighs
        1/n_step, however the step is split into micro-batches and processes (DDP averages
        the processes' gradients, hence the factor num_processes)."""
        acc = self.acc
        scale = acc.num_processes / n_step
        total = torch.zeros((), device=acc.device)
        for j, (batch, weights) in enumerate(micro):
            # Only the last micro-batch synchronises gradients across processes.
            sync = acc.no_sync(self.model) if j < len(micro) - 1 else nullcontext()
            with sync:
                loss = self.loss_sum(batch, weights, self.model) * scale
                acc.backward(loss)
            total += loss.detach()
        mean_loss = float(acc.reduce(total, "mean"))
        self.check_finite(mean_loss)
        if self.max_grad_norm:
            acc.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return mean_loss

    def done(self) -> bool:
        return False

    def epoch_begin(self, state: TrainState) -> None:
        return None

    def epoch_record(self, state: TrainState) -> dict[str, Any]:
        return {}

    def result_fields(self) -> dict[str, Any]:
        return {}


class ParamLevelStepper:
    """Metropolis, MALA or zeroth-order SGD on the step's batch; the loss at θ.

    No DDP wrapper: nothing is backpropagated across processes; the processes stay identical
    because they start identical and draw the same seeds.
    """

    scheduler = None

    def __init__(
        self,
        accelerator: Accelerator,
        model: torch.nn.Module,
        method: Metropolis | ZerothOrderSGD,
        name: str,
        loss_sum: LossSum,
        check_finite: Callable[[float], None],
        max_iter: int | None = None,
    ) -> None:
        self.acc, self.model, self.optimizer = accelerator, model, method
        self.passes = PASSES[name]
        self.loss_sum, self.check_finite, self.max_iter = loss_sum, check_finite, max_iter

    def step(self, micro: Micro, n_step: int) -> float:
        acc, model = self.acc, self.model
        reduce = (lambda t: acc.reduce(t, "sum")) if acc.num_processes > 1 else None
        closure = batch_loss(micro, lambda b, w: self.loss_sum(b, w, model), n_step, reduce)
        with eval_mode(model):  # L must be a function of θ alone: no dropout, frozen norms
            out = self.optimizer.step(closure)
        loss = out if isinstance(out, float) else out.loss
        self.check_finite(loss)
        return loss

    def done(self) -> bool:
        method = self.optimizer
        return bool(method.converged or (self.max_iter and method.t >= self.max_iter))

    @property
    def metropolis(self) -> Metropolis | None:
        return self.optimizer if isinstance(self.optimizer, Metropolis) else None

    def epoch_begin(self, state: TrainState) -> None:
        if self.metropolis is not None:
            state.epoch_proposals = [self.metropolis.proposed, self.metropolis.accepted]

    def epoch_record(self, state: TrainState) -> dict[str, Any]:
        mh = self.metropolis
        if mh is None:
            return {}
        p0, a0 = state.epoch_proposals or [0, 0]
        proposed = mh.proposed - p0
        return {
            "step_acceptance": (mh.accepted - a0) / proposed if proposed else math.nan,
            "sigma": mh.sigma,
            "temperature": mh.temperature(mh.t),
        }

    def result_fields(self) -> dict[str, Any]:
        mh = self.metropolis
        if mh is None:
            return {}
        return {"step_acceptance": mh.acceptance_rate, "proposals": mh.proposed, "sigma": mh.sigma}


def build_stepper(
    cfg: Any,
    accelerator: Accelerator,
    model: torch.nn.Module,
    total_steps: int,
    loss_sum: LossSum,
    check_finite: Callable[[float], None],
) -> tuple[torch.nn.Module, Stepper]:
    """The run's stepper, and the model it trains (wrapped by accelerate for a gradient
    method; as it is for a parameter-level one, which backpropagates nothing across
    processes)."""
    acc, name = accelerator, cfg.optim.name
    if name in PARAM_LEVEL:
        method = build_method(cfg, model, total_steps, acc.num_processes)
        max_iter = cfg.param_level.max_iter
        return model, ParamLevelStepper(acc, model, method, name, loss_sum, check_finite, max_iter)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(cfg.optim, params)
    scheduler = get_scheduler(
        cfg.optim.scheduler,
        optimizer,
        num_warmup_steps=cfg.optim.warmup_steps,
        num_training_steps=total_steps,
    )
    wrapped, optimizer = acc.prepare(model, optimizer)
    stepper = GradientStepper(
        acc, wrapped, optimizer, scheduler, loss_sum, check_finite, cfg.optim.max_grad_norm
    )
    return wrapped, stepper


_NON_FINITE_FIX = {
    "sgd": "Lower optim.lr, set optim.max_grad_norm, or check the inputs for extreme values.",
    "metropolis": "The loss at the current parameters is not finite: check the inputs for "
    "extreme values, or lower param_level.sigma (and keep param_level.target_acceptance set).",
    "mala": "Lower param_level.sigma or raise param_level.temperature (the gradient step is "
    "sigma²/(2T) times the gradient), or check the inputs for extreme values.",
    "zo_sgd": "Lower optim.lr (the step is lr times the estimate times a noise vector of norm "
    "sqrt(d)) or param_level.sigma, or check the inputs for extreme values.",
}


def non_finite_fix(method: str) -> str:
    """What to change when ``method``'s loss stops being finite."""
    return _NON_FINITE_FIX.get(method, _NON_FINITE_FIX["sgd"])
