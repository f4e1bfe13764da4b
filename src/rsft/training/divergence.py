"""The divergence guard: a run that goes wrong says so, instead of ending quietly with exit 0.

Two signs that training went wrong, checked after every epoch (and on the test split at the
end):

- the loss rose far above its start: the epoch's mean training loss, or the eval loss, is
  above ``factor`` times its value before training (the first step's loss; the pretrained
  model's eval loss). The start is floored at ln(classes), the loss of a uniform guess, so a
  model that starts almost perfect (a tiny loss) is not flagged for ordinary noise;
- the predictions collapsed to one class: (nearly) every sample of the eval or test split
  gets the same class while the labels are mostly other classes (and the model did not do so
  before training: a run that never left such a start has not diverged, it has not learned).
  Classification only: a run with a custom ``task.loss`` or ``task.metric`` skips this check
  (its outputs need not be class logits); the loss check applies to every task.

Each finding is an *event* (epoch, split, kind, reason) kept in the run's state (so a resumed
run keeps them) and in results.json (``divergence``). A run has *diverged* (``diverged``,
which ``rsft compare`` flags) when its final model is diverged: an event at the last epoch's
checks or at the end. An early event that training recovered from (a freshly initialized
head often predicts one class after a step or two) stays in the list, marked ``transient``,
and is warned about, but does not mark the run.

``on_divergence: warn`` warns once per kind and split and trains on; ``stop`` raises
:class:`DivergenceError`, which the CLI turns into exit code 1: at once for a loss far above
its start, and for a collapse when the same split was collapsed at its previous check too
(or at the end), so a head that recovers after its first epoch is not stopped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rsft.progress import say
from rsft.training import checkpoint as ckpt
from rsft.training.state import TrainState

COLLAPSE_SHARE = 0.95
"""Predictions are collapsed when one class gets at least this share of them ..."""
COLLAPSE_LABEL_SHARE = 0.9
"""... while that class is at most this share of the labels (the rest are left unpredicted)."""
COLLAPSE_MIN_SAMPLES = 20
"""Splits smaller than this are not judged: a few samples can share a class by chance."""
COLLAPSE_FIX = (
    "One class for every sample comes from a too high optim.lr, a training split dominated "
    "by that class, or numeric features on very different scales (standardize them the same "
    "way as the data the model was pretrained on)."
)


class DivergenceError(RuntimeError):
    """Training diverged and ``on_divergence: stop`` was set."""


class DivergenceWarning(UserWarning):
    """Training diverged (``on_divergence: warn``): the run goes on, results record it."""


def loss_event(split: str, loss: float, start: float, factor: float, num_classes: int) -> dict:
    """An event if ``loss`` is above ``factor`` x max(start, ln classes) (or not finite)."""
    limit = factor * max(start, math.log(num_classes))
    if loss <= limit:  # False for NaN and inf too
        return {}
    return {
        "split": split,
        "kind": "loss",
        "value": loss,
        "limit": limit,
        "reason": f"the {split} loss is {loss:.4g}, above {factor:g} times its start "
        f"({start:.4g}; the limit is {limit:.4g})",
    }


def collapse_event(
    split: str, predicted: Sequence[int], labels: Sequence[int], classes: Sequence[str]
) -> dict:
    """An event if (nearly) every sample of the split is predicted as one class that most of
    its labels are not."""
    n = sum(labels)
    if n < COLLAPSE_MIN_SAMPLES:
        return {}
    top = max(range(len(predicted)), key=lambda c: predicted[c])
    share, label_share = predicted[top] / n, labels[top] / n
    if share < COLLAPSE_SHARE or label_share > COLLAPSE_LABEL_SHARE:
        return {}
    return {
        "split": split,
        "kind": "collapse",
        "class": classes[top],
        "value": share,
        "reason": f"the model predicts class {classes[top]!r} for {share:.0%} of the {n} "
        f"{split} samples, of which only {label_share:.0%} are of that class",
    }


class DivergenceGuard:
    """Checks a run's losses and predictions; records, warns about or stops on divergence."""

    def __init__(
        self,
        factor: float,
        action: str,
        classes: Sequence[str],
        output_dir: str | Path,
        fix: str,
        main_process: bool = True,
    ) -> None:
        self.factor, self.action, self.classes = factor, action, list(classes)
        self.output_dir, self.fix, self.main_process = Path(output_dir), fix, main_process

    def check_epoch(
        self, epoch: int, state: TrainState, train_loss: float, evaluation: dict | None
    ) -> None:
        """After an epoch: its mean training loss against the first step's, and the eval
        split's loss and predictions (``evaluation``, from FineTuner.evaluate)."""
        events = []
        losses = state.step_losses
        if losses and not math.isnan(train_loss):  # NaN: an epoch without a step
            events.append(self._loss("train", train_loss, losses[0]))
        if evaluation is not None:
            events += self._split("eval", evaluation, state.initial_eval)
        self._report([e for e in events if e], epoch + 1, state)

    def check_test(self, state: TrainState, evaluation: dict) -> None:
        """At the end: the test split's loss and predictions."""
        self._report(self._split("test", evaluation, state.initial_test), None, state)

    def _loss(self, split: str, loss: float, start: float) -> dict:
        return loss_event(split, loss, start, self.factor, len(self.classes))

    def _split(self, split: str, evaluation: dict, initial: dict | None) -> list[dict]:
        """Collapse (unless the model already predicted one class before training: training
        did not cause it) and a loss rise, on an evaluated split."""
        events = [self._collapse(split, evaluation)]
        if initial is not None:
            events.append(self._loss(split, evaluation["loss"], initial["loss"]))
            if "predicted" in initial and self._collapse(split, initial):
                events[0] = {}
        return [e for e in events if e]

    def _collapse(self, split: str, evaluation: dict) -> dict:
        if "predicted" not in evaluation:  # a custom task.loss or metric: no classes to count
            return {}
        return collapse_event(split, evaluation["predicted"], evaluation["labels"], self.classes)

    def _report(self, events: list[dict], epoch: int | None, state: TrainState) -> None:
        """Record the events; stop, or warn about each kind and split the first time."""
        if not events:
            return
        past = state.divergence
        seen = {(e["kind"], e["split"]) for e in past}
        events = [{"epoch": epoch, **e} for e in events]
        persists = any(self._persists(e, past) for e in events)
        past.extend(events)
        when = f"at epoch {epoch}" if epoch is not None else "at the end"
        if self.action == "stop" and persists:
            last = ckpt.latest_checkpoint(self.output_dir)
            raise DivergenceError(
                f"diverged {when}: {'; '.join(e['reason'] for e in events)}. "
                f"{self._fix(events)} Last checkpoint: {last or 'none'}. (on_divergence: warn "
                "records this in results.json and trains on.)"
            )
        for e in events:
            if self.main_process and (e["kind"], e["split"]) not in seen:
                stops = (
                    "stops the run if it lasts to the next epoch"
                    if e["kind"] == "collapse"
                    else "stops the run"
                )
                warnings.warn(
                    f"training diverged {when}: {e['reason']}. {self._fix([e])} (results.json "
                    f"records it under 'divergence'; on_divergence: stop {stops}.)",
                    DivergenceWarning,
                    stacklevel=3,
                )

    def _fix(self, events: list[dict]) -> str:
        kinds = {e["kind"] for e in events}
        return " ".join(
            ([self.fix] if "loss" in kinds else [])
            + ([COLLAPSE_FIX] if "collapse" in kinds else [])
        )

    @staticmethod
    def _persists(event: dict, past: list[dict]) -> bool:
        """Whether ``event`` stops a run: a loss rise always; a collapse at the end, or when
        the same split was collapsed at its previous check (the epoch before) too."""
        if event["kind"] != "collapse" or event["epoch"] is None:
            return True
        return any(
            e["kind"] == "collapse"
            and e["split"] == event["split"]
            and e["epoch"] == event["epoch"] - 1
            for e in past
        )

    def result(self, state: TrainState) -> dict[str, Any]:
        """The results.json keys: ``diverged`` (the final model is: an event at the last
        epoch or at the end) and every event, all marked ``transient`` when training
        recovered from them. A run that recovered says so, after the warnings it gave."""
        last = len(state.history)
        past = state.divergence
        diverged = any(e["epoch"] is None or e["epoch"] >= last for e in past)
        events = [{**e, "transient": not diverged} for e in past]
        if events and not diverged and self.main_process:
            epochs = sorted({e["epoch"] for e in events})
            say(
                f"the divergence seen at epoch(s) {', '.join(map(str, epochs))} did not last: "
                "the final model is not diverged (results.json keeps those events, marked "
                "transient)."
            )
        return {"diverged": diverged, "divergence": events}
