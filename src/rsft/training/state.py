"""What a run carries from step to step: :class:`TrainState` (what a checkpoint holds) and
:class:`StepResult` (what one step of any method returns).

A typed state instead of a dict of string keys: a misspelt field fails at once, and the
checkpoint's ``trainer_state.json`` is exactly ``TrainState.to_dict()``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class StepResult:
    """One optimizer (or parameter-level) step: its loss over the step's samples."""

    loss: float
    samples: int  # the step's sample count over all processes


@dataclass
class TrainState:
    """The loop's position and running totals; resuming restores it exactly."""

    epoch: int = 0  # the epoch to run next (or the one under way)
    step_in_epoch: int = 0  # steps of that epoch already taken (a mid-epoch resume skips them)
    round: int = 0  # model-aware: rounds of that epoch already scored
    global_step: int = 0
    forwarded: int = 0  # samples through a forward pass (scoring and training)
    backpropagated: int = 0  # samples through a backward pass
    train_time: float = 0.0  # seconds in the epoch loops
    step_losses: list[float] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch
    epoch_first_step: int = 0  # index into step_losses where the current epoch starts
    epoch_proposals: list[int] | None = None  # Metropolis: [proposed, accepted] at epoch start
    train_peak: int | None = None  # peak bytes of a training step, beyond the weights
    train_held: int = 0  # bytes earlier profiled steps left allocated (optimizer state)
    initial_test: dict[str, Any] | None = None  # the pretrained model on the test split
    initial_eval: dict[str, Any] | None = None  # ... and on the eval split
    divergence: list[dict[str, Any]] = field(default_factory=list)  # guard events

    @property
    def epoch_losses(self) -> list[float]:
        """Every step loss of the current epoch, those before a mid-epoch resume included."""
        return self.step_losses[self.epoch_first_step :]

    def add_peak(self, peak_bytes: int | None, net_bytes: int | None) -> None:
        """Count one profiled step's peak; what earlier steps left allocated (the optimizer
        state) counts in later ones."""
        if peak_bytes is not None and net_bytes is not None:
            self.train_peak = max(self.train_peak or 0, self.train_held + peak_bytes)
            self.train_held += net_bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        """The state a checkpoint wrote; keys this version does not know are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"trainer state has unknown fields {unknown}")
        return cls(**data)
