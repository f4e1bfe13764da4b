"""Batch sources: where an epoch's steps come from, behind one interface.

- :class:`SamplerSource`: the weights are known before training, so the rejection sampler
  has decided the epoch (which samples, in which order) before its first step.
- :class:`ModelAwareSource`: the weights depend on the model, so the epoch scores a round,
  accepts into a queue and trains whatever full steps the queue holds, round after round.

``steps(epoch, state)`` yields one :class:`Step` at a time, lazily: the loop checks its
budget before asking for the next, so a run that stops early scores no round it won't train.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch

from rsft.config import ConfigError, to_dict
from rsft.data_level import RejectionSampler
from rsft.rule import Envelope
from rsft.training.callbacks import CallbackList
from rsft.training.model_aware import ModelAwareRejection
from rsft.training.state import TrainState


def build_sampler(
    rej: Any, weights: Any, n: int, accelerator: Any, seed: int
) -> tuple[RejectionSampler, torch.Tensor | None]:
    """The sampler of weights known before training, and the loss weights of importance
    weighting (the same w, as a loss weight; None when rejecting or training plainly)."""
    acc = accelerator
    shard = {"num_replicas": acc.num_processes, "rank": acc.process_index, "seed": seed}
    if weights is not None and rej.mode == "reject":
        sampler = RejectionSampler(weights, Envelope(**to_dict(rej.envelope)), **shard)
        expected = sampler.expected_acceptance * n
        if expected < 1:  # an epoch of (almost surely) no step; budget: samples never ends
            raise ConfigError(
                f"rejection would accept {expected:.3g} of {n} samples per epoch on average: "
                "training would take no step. Lower rejection.envelope.value (or use policy: "
                "max), or check the weights."
            )
        return sampler, None
    sampler = RejectionSampler(num_samples=n, **shard)
    if weights is None:
        return sampler, None
    w = torch.as_tensor(weights, dtype=torch.float32)
    return sampler, (w / w.mean()).to(acc.device)


@dataclass
class Step:
    """One step's micro-batches on this process, and its sample count over all processes."""

    micro: list[tuple[dict, torch.Tensor | None]]
    samples: int


class SamplerSource:
    """An epoch the sampler decided up front; loss weights (importance weighting) optional."""

    unit = "steps"

    def __init__(
        self,
        sampler: RejectionSampler,
        loader: Callable[[RejectionSampler], Any],
        to_device: Callable[[dict], dict],
        batch_size: int,
        accumulation: int,
        num_processes: int,
        loss_weights: torch.Tensor | None = None,
    ) -> None:
        self.sampler, self.loader, self.to_device = sampler, loader, to_device
        self.batch_size, self.accumulation = batch_size, accumulation
        self.num_processes, self.loss_weights = num_processes, loss_weights

    def total(self, state: TrainState) -> int:
        """Steps of a whole epoch (for the progress bar)."""
        return math.ceil(len(self.sampler) / (self.batch_size * self.accumulation))

    def steps(self, epoch: int, state: TrainState, tick: Callable[[], None]) -> Iterator[Step]:
        k = self.accumulation
        self.sampler.skip(state.step_in_epoch * self.batch_size * k)
        batches = iter(self.loader(self.sampler))
        for _ in range(self.total(state)):
            micro = [self.to_device(b) for b in islice(batches, k)]
            if not micro:
                return
            lw = self.loss_weights
            weights = [None if lw is None else lw[b["index"]] for b in micro]
            n = sum(len(b["index"]) for b in micro) * self.num_processes
            yield Step(list(zip(micro, weights)), n)
            tick()  # the step is done (the loop resumes this generator after it)

    def epoch_stats(self, epoch: int) -> Any:
        return self.sampler.stats(epoch)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


class ModelAwareSource:
    """Score a round, accept into the queue, train full steps; carry the rest over."""

    unit = "rounds"

    def __init__(
        self,
        online: ModelAwareRejection,
        sampler: RejectionSampler,
        model: Callable[[], torch.nn.Module],
        device: torch.device | str,
        last_epoch: Callable[[], int],
        callbacks: CallbackList,
    ) -> None:
        self.online, self.sampler, self.model, self.device = online, sampler, model, device
        self.last_epoch, self.callbacks = last_epoch, callbacks
        online.phase = callbacks.phase

    def _rounds(self, epoch: int) -> tuple[list[int], int]:
        order = self.sampler.accepted_indices(epoch).tolist()
        return order, math.ceil(len(order) / self.online.round_size)

    def total(self, state: TrainState) -> int:
        return self._rounds(state.epoch)[1] - state.round

    def steps(self, epoch: int, state: TrainState, tick: Callable[[], None]) -> Iterator[Step]:
        online = self.online
        order, n_rounds = self._rounds(epoch)
        g = online.round_size
        for r in range(state.round, n_rounds):
            yield from self._drain()
            indices = order[r * g : (r + 1) * g]
            with self.callbacks.phase("score_round"):
                state.forwarded += online.score_round(
                    self.model(), indices, epoch, state.global_step
                )
            state.round = r + 1
            tick()
        yield from self._drain(final=epoch == self.last_epoch())

    def _drain(self, final: bool = False) -> Iterator[Step]:
        """Steps while the queue holds a full one (or anything at all, if final). The
        ``drain`` phase spans them, the steps themselves included."""
        online = self.online
        with self.callbacks.phase("drain"):
            while micro := online.next_step(final):
                with self.callbacks.phase("collate"):
                    batches = [(online.batch(idx), w.to(self.device)) for idx, w in micro]
                yield Step(batches, online.last_step_size)

    def epoch_stats(self, epoch: int) -> Any:
        return self.online.end_epoch()

    def state_dict(self) -> dict:
        return {"online": self.online.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state.pop("online"))
