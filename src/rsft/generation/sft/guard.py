"""The fine-tuning stage's divergence guard: a NaN model is never handed to the next round.

transformers' Trainer trains on through a NaN or infinite loss (its default
``logging_nan_inf_filter`` even logs such a step as a finite number), so a too high
``sft.lr`` used to save a model whose every weight is NaN, and the next round crashed on it.
The guard stops the stage instead, with :class:`SFTDivergenceError` (a
:class:`rsft.training.DivergenceError`: the CLI's "training stopped", exit 1):

- at a logged step whose loss or gradient norm is NaN or infinite (:class:`SFTGuard`);
- before a checkpoint or the model is saved, when a weight is not finite
  (:func:`check_weights`), which also covers the steps after the last log.

A finite loss far above its start (``LOSS_FACTOR`` times the first logged loss, floored at
ln(vocabulary): a uniform guess) only warns, as ``rsft train``'s guard does with
``on_divergence: warn``: the next round's held-out pass@1 shows what it cost.

Under ``accelerate launch`` the error is raised in the launched processes; each writes its
message to ``<stage>/sft_diverged.txt`` (:func:`report_divergence`) and the pipeline raises
the same error from it (:func:`reported_divergence`), not a generic launch failure.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from rsft.atomic import atomic_write_text
from rsft.generation.sft.config import SFTSection
from rsft.training.divergence import DivergenceError, DivergenceWarning, loss_event

LOSS_FACTOR = 10.0
"""A logged loss above this times its start warns (rsft train's default divergence_factor)."""
REPORT_FILE = "sft_diverged.txt"
STAGE = "the fine-tuning"
"""How the stage's errors start unless the caller names it (the pipeline: "round 1's ...")."""
SHOWN_WEIGHTS = 3


class SFTDivergenceError(DivergenceError):
    """The fine-tuning's loss, gradient norm or weights became NaN or infinite."""


class SFTDivergenceWarning(DivergenceWarning):
    """The fine-tuning's loss rose far above its start; the stage goes on."""


def divergence_fix(lr: float, max_grad_norm: float) -> str:
    """What to change, and how to run again (the options are part of a run's identity)."""
    return (
        f"Lower sft.lr ({lr:g} here, {SFTSection().lr:g} by default) or warm up with "
        f"sft.warmup_ratio (gradients are already clipped at norm {max_grad_norm:g}, and "
        "AdamW's step size follows sft.lr). The model was not saved; run again with "
        "resume=never or another output_dir (a resumed run keeps its options)."
    )


def non_finite_weights(parameters: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the weights holding a NaN or infinity. Each process checks what it holds
    (a DTensor's local shard under FSDP, nothing under ZeRO-3: the loss check remains)."""
    bad = []
    for name, p in parameters:
        local = p.to_local() if hasattr(p, "to_local") else p
        if not bool(torch.isfinite(local.detach()).all()):
            bad.append(name)
    return bad


def _at(state: Any) -> str:
    return f"step {state.global_step} of {state.max_steps}"


def check_weights(model: Any, stage: str, args: Any, state: Any) -> None:
    """Raise :class:`SFTDivergenceError` before a model with non-finite weights is saved
    (``args``, ``state``: the Trainer's arguments and state)."""
    bad = non_finite_weights(model.named_parameters())
    if not bad:
        return
    shown = ", ".join(bad[:SHOWN_WEIGHTS]) + (
        f" and {len(bad) - SHOWN_WEIGHTS} more" if len(bad) > SHOWN_WEIGHTS else ""
    )
    raise SFTDivergenceError(
        f"{stage} diverged: after {_at(state)}, {len(bad)} weight tensor(s) hold NaN or "
        f"infinite values ({shown}). {divergence_fix(args.learning_rate, args.max_grad_norm)}"
    )


class SFTGuard(TrainerCallback):
    """Stops at a logged non-finite loss or gradient norm, and before a checkpoint of
    non-finite weights is written (a rerun would resume from it); warns once about a finite
    loss far above its start."""

    def __init__(self, stage: str, vocab_size: int) -> None:
        self.stage, self.vocab_size = stage, vocab_size
        self.start: float | None = None
        self.warned = False

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if control.should_save and model is not None:  # set for this step, saved right after
            check_weights(model, self.stage, args, state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:  # the end-of-training summary, or an eval
            return
        loss, norm = float(logs["loss"]), logs.get("grad_norm")
        for what, value in (("training loss", loss), ("gradient norm", norm)):
            if value is not None and not math.isfinite(float(value)):
                raise SFTDivergenceError(
                    f"{self.stage} diverged at {_at(state)}: the {what} is {float(value)}. "
                    f"{divergence_fix(args.learning_rate, args.max_grad_norm)}"
                )
        if self.start is None:
            self.start = loss
            return
        event = loss_event("fine-tuning", loss, self.start, LOSS_FACTOR, self.vocab_size)
        if event and not self.warned and state.is_world_process_zero:
            self.warned = True
            warnings.warn(
                f"{self.stage} may be diverging at {_at(state)}: {event['reason']}. The stage goes "
                f"on; a lower sft.lr ({args.learning_rate:g} here) keeps the loss near its "
                "start.",
                SFTDivergenceWarning,
                stacklevel=2,
            )


def report_divergence(out: str | Path, err: SFTDivergenceError) -> None:
    """In a launched process: leave the message where the pipeline looks for it."""
    atomic_write_text(Path(out) / REPORT_FILE, str(err) + "\n")


def reported_divergence(out: Path) -> str | None:
    """The message a launched process reported (:func:`report_divergence`), or None."""
    path = out / REPORT_FILE
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None
