"""The run's :class:`~rsft.training.results.RunResult`, from a trainer and its final state."""

from __future__ import annotations

import math
from typing import Any

import torch

from rsft import __version__
from rsft.config import to_dict
from rsft.portable import kernel_settings, machine_info
from rsft.training.results import RunResult
from rsft.training.state import TrainState


def build_result(tuner: Any, state: TrainState, resumed_from: int | None) -> RunResult:
    """Everything but the test split's evaluation and the divergence verdict (the trainer
    adds those). ``tuner``: a :class:`~rsft.training.trainer.FineTuner`."""
    scoring = tuner.weight_info.get("scoring_forwarded", 0)
    if tuner.online is not None:
        stats = tuner.online.stats  # the whole run's
        acceptance, ess = stats.acceptance_rate, stats.ess_fraction
    else:
        stats = tuner.sampler.stats(0)
        acceptance, ess = _mean([h["acceptance_rate"] for h in state.history]), 1.0
        if tuner.weights is not None:
            w = torch.as_tensor(tuner.weights, dtype=torch.float64)
            ess = float(w.sum() ** 2 / (w * w).sum() / len(w))
    return RunResult(
        config=to_dict(tuner.config),
        rsft_version=__version__,
        data=tuner.data_digest,
        kernels=kernel_settings(),
        machine=machine_info(),
        classes=tuner.classes,
        parameters=tuner.param_counts,
        weights={k: v for k, v in tuner.weight_info.items() if k != "scoring_forwarded"},
        acceptance_rate=acceptance,
        ess_fraction=ess,
        violations=stats.violations,
        envelope=stats.envelope,
        forwarded=state.forwarded + scoring,
        backpropagated=state.backpropagated,
        setup_time=tuner.setup_time,
        train_time=state.train_time,
        wall_time=tuner.setup_time + state.train_time,
        global_step=state.global_step,
        epochs_run=len(state.history),
        resumed_from_step=resumed_from,
        step_losses=state.step_losses,
        history=state.history,
        trace=tuner.online.trace if tuner.online is not None else None,
        **memory_record(tuner.memory, state),
        **tuner.stepper.result_fields(),
    )


def epoch_record(tuner: Any, epoch: int, state: TrainState) -> dict[str, Any]:
    """The epoch's line of ``history``: its loss and acceptance, the stepper's fields and the
    eval split's score, which the divergence guard then checks."""
    losses = state.epoch_losses
    stats = tuner.source.epoch_stats(epoch)
    record: dict[str, Any] = {
        "epoch": epoch + 1,
        "step": state.global_step,
        "train_loss": _mean(losses),
        "accepted": stats.accepted,
        "acceptance_rate": stats.acceptance_rate,
        # With the forwards that computed the weights, as the run's total counts them.
        "forwarded": state.forwarded + tuner.weight_info.get("scoring_forwarded", 0),
    }
    record.update(tuner.stepper.epoch_record(state))
    ev = None
    if tuner.eval_split is not None:
        ev = tuner.evaluate(tuner.eval_split)
        record.update(eval_accuracy=ev["accuracy"], eval_loss=ev["loss"])
    tuner.divergence.check_epoch(epoch, state, record["train_loss"], ev)
    return record


def memory_record(memory: dict[str, Any], state: TrainState) -> dict[str, Any]:
    """Peak tensor memory of a training step and of one inference pass, weights included."""
    weights = memory["parameters"]
    inference, train = memory["inference_peak"], state.train_peak
    out: dict[str, Any] = {"parameter_bytes": weights}
    if inference is not None and train is not None:
        out.update(
            peak_memory=weights + train,
            inference_memory=weights + inference,
            memory_vs_inference=(weights + train) / (weights + inference),
        )
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def format_record(r: dict[str, Any], metric: str = "accuracy") -> str:
    """One epoch's line in the log; ``metric`` names the task's metric (``pkg.mod:fn``)."""
    parts = [
        f"epoch {r['epoch']}",
        f"train loss {r['train_loss']:.4f}",
        f"accepted {r['accepted']} ({r['acceptance_rate']:.0%})",
    ]
    if "step_acceptance" in r:
        parts.append(f"steps kept {r['step_acceptance']:.0%} (σ {r['sigma']:.2g})")
    if "eval_accuracy" in r:
        name = "acc" if metric == "accuracy" else metric.rpartition(":")[2]
        parts.append(f"eval {name} {r['eval_accuracy']:.2%}")
    return " | ".join(parts)
