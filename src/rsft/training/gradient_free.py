"""The parameter-level methods inside a fine-tuning run: Metropolis, MALA and zeroth-order SGD.

They replace the optimizer step: the loss of a step's batch is a closure that the method
calls twice (at θ and at θ + Δθ, or θ ± εz), in eval mode, so that L is a deterministic
function of θ (no dropout, frozen norm statistics) as Metropolis-Hastings needs. With several
processes the closure returns the loss over all of them, and every process, holding the same
seeds, makes the same decision: the parameters stay identical without any communication.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from rsft.config import ConfigError
from rsft.param_level import (
    Metropolis,
    TemperatureSchedule,
    ZerothOrderSGD,
    select_parameters,
)
from rsft.training.config import TrainConfig

# (forward passes, backward passes) per sample and step, for the forward-pass budget.
PASSES = {"metropolis": (2, 0), "zo_sgd": (2, 0), "mala": (2, 2)}


def check_method(cfg: TrainConfig, model: nn.Module, num_processes: int) -> None:
    """What can only be checked with the model and the launch: fails before any work."""
    if cfg.optim.name == "mala" and num_processes > 1:
        raise ConfigError("optim.name: mala runs in one process; launch it without DDP.")
    select_parameters(model, cfg.param_level.patterns or None)


def build_method(
    cfg: TrainConfig, model: nn.Module, total_steps: int, num_processes: int
) -> Metropolis | ZerothOrderSGD:
    """The method, on the parameters param_level.patterns (or model.freeze) selects."""
    pl, name = cfg.param_level, cfg.optim.name
    if pl.max_iter:
        total_steps = min(total_steps, pl.max_iter)
    patterns = pl.patterns or None
    if name == "zo_sgd":
        stepper: Metropolis | ZerothOrderSGD = ZerothOrderSGD(
            model,
            patterns=patterns,
            lr=cfg.optim.lr,
            eps=pl.sigma,
            seed=cfg.seed,
            tol=pl.tol,
            patience=pl.patience,
        )
    else:
        temperature = TemperatureSchedule(
            pl.temperature, pl.temperature_end, pl.temperature_schedule, total_steps
        )
        stepper = Metropolis(
            model,
            patterns=patterns,
            sigma=pl.sigma,
            temperature=temperature,
            proposal="mala" if name == "mala" else "random_walk",
            target_acceptance=pl.target_acceptance,
            adapt_every=pl.adapt_every,
            adapt_gain=pl.adapt_gain,
            adapt_until=pl.adapt_until,
            restore=pl.restore,
            seed=cfg.seed,
            tol=pl.tol,
            patience=pl.patience,
        )
    tuned = {id(p) for p in stepper.params}
    for p in model.parameters():  # no graph for what does not move
        p.requires_grad_(name == "mala" and id(p) in tuned)
    return stepper


def batch_loss(
    micro: list[tuple[dict, torch.Tensor | None]],
    loss_sum: Callable[[dict, torch.Tensor | None], torch.Tensor],
    n_step: int,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None,
) -> Callable[[], torch.Tensor]:
    """The closure: the step's mean loss over all processes. ``loss_sum(batch, weights)`` is
    the run's own loss of a micro-batch (the trainer's, so both kinds of step share it)."""

    def closure() -> torch.Tensor:
        total = sum(loss_sum(batch, weights) for batch, weights in micro)
        loss = total / n_step
        return reduce(loss) if reduce is not None else loss

    return closure
