"""``rsft train``'s trackers (``report_to``): what a run logs, and when.

- once: the config (when the trackers open), and the pretrained model's eval/test scores
  (``initial/*``, at step 0);
- every step: ``train/loss``, ``train/samples``; with model-aware rejection, the run's
  acceptance figures so far (``rejection/acceptance_rate``, ``expected_acceptance``,
  ``ess_fraction``, ``violations``, ``envelope``); with Metropolis or MALA, the share of
  proposals kept (``param_level/step_acceptance``) and σ;
- every epoch: the epoch's record (``epoch/train_loss``, ``epoch/acceptance_rate``,
  ``epoch/eval_accuracy``, ...) and, with weights known before training, the epoch's
  rejection statistics (``epoch/rejection/*``: the sampler decides an epoch up front);
- at the end: ``final/*``, the results' headline figures (test accuracy, acceptance rate,
  ESS, violations, times).

Only the main process logs (under accelerate); the trackers close when training ends,
failed or not.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rsft.config import to_dict
from rsft.rule import RejectionStats
from rsft.tracking import Trackers, open_trackers, run_name_of
from rsft.training.callbacks import Callback

if TYPE_CHECKING:
    from rsft.training.results import RunResult
    from rsft.training.state import StepResult, TrainState

# The rejection figures logged, from RejectionStats.
REJECTION = ("acceptance_rate", "expected_acceptance", "ess_fraction", "violations", "envelope")
# The results' figures logged at the end (those the run has).
FINAL = (
    "test_accuracy",
    "test_loss",
    "initial_test_accuracy",
    "acceptance_rate",
    "ess_fraction",
    "violations",
    "step_acceptance",
    "backpropagated",
    "forwarded",
    "train_time",
    "wall_time",
)


def rejection_figures(stats: RejectionStats, prefix: str) -> dict[str, float]:
    return {f"{prefix}/{k}": getattr(stats, k) for k in REJECTION}


class TrackingCallback(Callback):
    """Logs a run's steps, epochs and results to ``trackers``."""

    def __init__(self, trackers: Trackers) -> None:
        self.trackers = trackers

    def on_train_begin(self, trainer: Any, state: TrainState) -> None:
        if state.global_step:  # resumed: the run logged these when it began
            return
        initial = {}
        for split, ev in (("test", state.initial_test), ("eval", state.initial_eval)):
            if ev is not None:
                initial[f"initial/{split}_accuracy"] = ev["accuracy"]
                initial[f"initial/{split}_loss"] = ev["loss"]
        self.trackers.log(initial, 0)

    def on_step_end(self, trainer: Any, state: TrainState, step: StepResult) -> None:
        metrics = {"train/loss": step.loss, "train/samples": step.samples}
        if trainer.online is not None:  # the run so far: earlier epochs and this one's part
            online = trainer.online
            so_far = RejectionStats(**asdict(online.stats)).merge(online.epoch_stats)
            metrics.update(rejection_figures(so_far, "rejection"))
        chain = getattr(trainer.stepper, "metropolis", None)
        if chain is not None:
            metrics["param_level/step_acceptance"] = chain.acceptance_rate
            metrics["param_level/sigma"] = chain.sigma
        self.trackers.log(metrics, state.global_step)

    def on_epoch_end(
        self, trainer: Any, epoch: int, state: TrainState, record: dict[str, Any]
    ) -> None:
        metrics = {f"epoch/{k}": v for k, v in record.items() if k not in ("epoch", "step")}
        metrics["epoch/epoch"] = record["epoch"]
        if trainer.online is None and trainer.weights is not None:  # decided up front
            metrics.update(rejection_figures(trainer.sampler.stats(epoch), "epoch/rejection"))
        self.trackers.log(metrics, state.global_step)

    def on_train_end(self, trainer: Any, result: RunResult) -> None:
        final = {f"final/{k}": result[k] for k in FINAL if k in result}
        self.trackers.log(final, result.global_step)


@contextmanager
def tracked(tuner: Any) -> Iterator[Trackers]:
    """Open the trackers of ``tuner``'s ``report_to`` (main process only) and log the run
    to them meanwhile; close them when the block ends, also on an error."""
    cfg = tuner.config
    if not cfg.report_to or not tuner.accelerator.is_main_process:
        yield Trackers()
        return
    trackers = open_trackers(
        cfg.report_to, cfg.output_dir, run_name_of(cfg.output_dir), to_dict(cfg)
    )
    callback = TrackingCallback(trackers)
    tuner.callbacks.add(callback)
    try:
        with trackers:
            yield trackers
    finally:
        tuner.callbacks.callbacks.remove(callback)
