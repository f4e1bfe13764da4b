"""Callbacks: code of the user's (or a benchmark's) that runs at fixed points of the loop.

Subclass :class:`Callback`, override the hooks you need and pass instances to
``FineTuner(config, callbacks=[...])``. Hooks see the trainer and the :class:`TrainState`;
they may read anything and add keys to an epoch's record, but should not move the loop
(steps, checkpoints) themselves. ``on_phase_begin``/``on_phase_end`` bracket the loop's
phases by name, so a timer needs no knowledge of the loop's internals:

- ``"epoch"``: one epoch's loop (without its evaluation or checkpoint);
- ``"step"``: one optimizer (or parameter-level) step;
- ``"score_round"``: model-aware rejection scoring one round (``"score_forward"`` inside it:
  the no-grad forwards, and ``"score_collate"`` inside those: building their batches);
  ``"drain"``: training on the queue of accepted samples, its steps included;
  ``"collate"``: building a training batch of queued samples;
- ``"evaluate"``, ``"save"`` (a checkpoint), ``"finish"`` (the end-of-run test, model and
  results.json).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rsft.training.results import RunResult
    from rsft.training.state import StepResult, TrainState


class Callback:
    """Every hook does nothing; override the ones you need."""

    def on_train_begin(self, trainer: Any, state: TrainState) -> None: ...

    def on_epoch_begin(self, trainer: Any, epoch: int, state: TrainState) -> None: ...

    def on_step_begin(self, trainer: Any, micro: list, state: TrainState) -> None:
        """``micro``: the step's micro-batches on this process, ``(batch, loss weights)``."""

    def on_step_end(self, trainer: Any, state: TrainState, step: StepResult) -> None:
        """After the step (and its checkpoint, when one was due)."""

    def on_epoch_end(
        self, trainer: Any, epoch: int, state: TrainState, record: dict[str, Any]
    ) -> None:
        """``record`` (evaluated) is about to join ``state.history``: keys added here stay."""

    def on_save(self, trainer: Any, state: TrainState) -> None:
        """A checkpoint of ``state`` was committed."""

    def on_train_end(self, trainer: Any, result: RunResult) -> None: ...

    def on_phase_begin(self, trainer: Any, name: str) -> None: ...

    def on_phase_end(self, trainer: Any, name: str) -> None: ...


class CallbackList:
    """The run's callbacks, called in order."""

    def __init__(self, callbacks: Sequence[Callback] = (), trainer: Any = None) -> None:
        self.callbacks: list[Callback] = []
        self.trainer = trainer
        for cb in callbacks:
            self.add(cb)

    def add(self, callback: Callback) -> None:
        if not isinstance(callback, Callback):
            raise TypeError(
                f"callbacks must be rsft.training.Callback instances, got {type(callback).__name__}"
            )
        self.callbacks.append(callback)

    def call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self.trainer, *args)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """``with callbacks.phase("save"): ...`` brackets a phase (ended on error too)."""
        self.call("on_phase_begin", name)
        try:
            yield
        finally:
            self.call("on_phase_end", name)
