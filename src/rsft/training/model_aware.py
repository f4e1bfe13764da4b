"""The model-aware round: score with a no-grad forward, accept, queue, train full batches.

A *round* is the next ``G = batch_size x accumulation x processes`` indices of the epoch's
shuffled order. Each process scores its share; the raw scores are gathered back into the
round's order, so weights, the online envelope, and the acceptance coins (one log-uniform
per sample and epoch, drawn from the seed) are the same for 1 or N processes and any gradient
accumulation. Accepted samples join a FIFO queue shared (identically) by every process;
whenever it holds G samples, they make one optimizer step, each process taking every N-th.

At an epoch's end the samples still queued (fewer than G) stay queued: they are trained
first in the next epoch. After the last epoch they make one final, smaller step.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from typing import Any

import torch
from accelerate.utils import gather_object

from rsft.data import Split
from rsft.data_level.online import AcceptQueue, OnlineEnvelope, make_scorer
from rsft.data_level.weights import balance_weights
from rsft.models import Classifier
from rsft.models.inference import eval_mode, to_device
from rsft.models.task import CROSS_ENTROPY, Task
from rsft.rule import (
    EnvelopeError,
    RejectionStats,
    accept_given,
    acceptance_log_prob,
    log_uniform,
)
from rsft.rule.stats import exp_or_inf
from rsft.seeding import torch_generator


class ModelAwareRejection:
    """Scorer, online envelope, queue and statistics of one model-aware run."""

    def __init__(
        self,
        config: Any,
        split: Split,
        clf: Classifier,
        accelerator: Any,
        task: Task | None = None,
    ) -> None:
        """``task``: the run's (the trainer passes its own); built from the config if None."""
        rej = config.rejection
        self.config, self.split, self.clf, self.acc = config, split, clf, accelerator
        task = task or Task(config.task)
        self.scorer = make_scorer(rej, None if task.config.loss == CROSS_ENTROPY else task.loss)
        env = rej.envelope
        self.envelope = OnlineEnvelope(env.policy, env.quantile, env.value, rej.window)
        self.queue = AcceptQueue()
        self.seed = config.seed if rej.seed is None else rej.seed
        self.stats = RejectionStats()  # whole run, but for the current epoch
        self.epoch_stats = RejectionStats()
        self.trace: list[dict[str, float]] = []
        # Group priors: the model's weight times the group's balance weight.
        self.group_log_w = None
        if rej.balance_column:
            groups = split.column(rej.balance_column)
            w = balance_weights(groups, rej.balance_target)
            self.group_log_w = torch.log(torch.as_tensor(w, dtype=torch.float64))
        self._coins: tuple[int, torch.Tensor] | None = None
        self.phase: Callable[[str], Any] = lambda name: nullcontext()  # the loop's phases

    def end_epoch(self) -> RejectionStats:
        """The finished epoch's statistics; they join the run's."""
        epoch, self.epoch_stats = self.epoch_stats, RejectionStats()
        self.stats.merge(epoch)
        return epoch

    @property
    def round_size(self) -> int:
        c = self.config
        return c.batch_size * c.gradient_accumulation_steps * self.acc.num_processes

    def reseed(self, seed: int) -> None:
        """Draw the acceptance coins from ``seed`` from now on (benchmarks repeat an epoch)."""
        self.seed, self._coins = seed, None

    def coins(self, epoch: int) -> torch.Tensor:
        """One log-uniform ``log u`` per sample and epoch: the same coin whoever scores it."""
        if self._coins is None or self._coins[0] != epoch:
            gen = torch_generator(self.seed, "model_aware", epoch)
            self._coins = (epoch, log_uniform(len(self.split), gen))
        return self._coins[1]

    def batch(self, indices: list[int]) -> dict:
        batch = self.split.collate([self.split.dataset[i] for i in indices])
        return to_device(batch, self.acc.device)

    @torch.no_grad()
    def raw_scores(self, model: torch.nn.Module, indices: list[int]) -> list[float]:
        """The scorer's raw value of each sample, by a no-grad forward of the model."""
        out: list[float] = []
        step = self.config.eval_batch_size
        # Eval mode: scoring sees the model's beliefs, without dropout noise.
        with eval_mode(model), self.phase("score_forward"):
            for start in range(0, len(indices), step):
                with self.phase("score_collate"):
                    batch = self.batch(indices[start : start + step])
                logits = self.clf.logits(batch, model)
                out.extend(self.scorer.raw(logits, batch["labels"], batch).cpu().tolist())
        return out

    def check(self, model: torch.nn.Module, indices: list[int]) -> None:
        """Score ``indices`` before training: a broken weight function, or a fixed M below
        the weights, fails now rather than after setup. Nothing is recorded."""
        raw = self.raw_scores(model, indices)
        if self.envelope.fixed is not None and not self.scorer.fixed_envelope:
            self._log_m(self._log_weights(raw, torch.as_tensor(indices)), "on the first batch")

    def _log_weights(self, raw: list[float], idx: torch.Tensor) -> torch.Tensor:
        log_w = self.scorer.log_weights(torch.tensor(raw, dtype=torch.float64))
        if self.group_log_w is not None:
            log_w = log_w + self.group_log_w[idx]
        return log_w

    def _log_m(self, log_w: torch.Tensor, when: str) -> float:
        """log M for these weights (the online envelope moves); a fixed M they exceed raises,
        unless rejection.envelope.on_violation is count."""
        if self.scorer.fixed_envelope:
            return 0.0
        try:
            return self.envelope.update(log_w)
        except EnvelopeError as err:
            raise EnvelopeError(
                f"rejection.envelope {when}: {err} Model-aware weights change as the model "
                "trains, so a fixed M must bound them at every round."
            ) from err

    def score_round(self, model: torch.nn.Module, indices: list[int], epoch: int, step: int) -> int:
        """Score one round, queue the accepted samples; return how many were scored."""
        world, rank = self.acc.num_processes, self.acc.process_index
        mine = indices[rank::world]
        raw_mine = self.raw_scores(model, mine)
        if world > 1:
            pairs = gather_object([(rank + world * j, v) for j, v in enumerate(raw_mine)])
            raw = [v for _, v in sorted(pairs)]
        else:
            raw = raw_mine
        idx = torch.as_tensor(indices)
        log_w = self._log_weights(raw, idx)
        log_m = self._log_m(log_w, f"at epoch {epoch + 1}, step {step + 1}")
        log_a = acceptance_log_prob(log_w, log_m)
        if self.config.rejection.mode == "weight":
            # Importance weighting: every sample trains, its loss weighted by w (normalized).
            # w itself (not w / the round's max), so samples of different rounds that share
            # a step keep their ratios; zero stays zero; clamped so exp cannot overflow.
            accepted = torch.ones(len(idx), dtype=torch.bool)
            weights = torch.exp(torch.clamp(log_w, max=300.0))
        else:
            accepted = accept_given(log_w, log_m, self.coins(epoch)[idx])
            unbiased = self.config.rejection.unbiased
            weights = torch.exp(-log_a) if unbiased else torch.ones(len(idx), dtype=torch.float64)
        self.queue.extend(idx[accepted].tolist(), weights[accepted].tolist())
        self.epoch_stats.update(log_w, log_m, accepted)  # merged into .stats at epoch end
        self.trace.append(
            {
                "step": step,
                "scored": len(idx),
                "accepted": int(accepted.sum()),
                "envelope": exp_or_inf(log_m),
                "log_envelope": log_m,
                "mean_acceptance": float(log_a.exp().mean()),
            }
        )
        return len(idx)

    def next_step(self, final: bool = False) -> list[tuple[list[int], torch.Tensor]] | None:
        """This process's micro-batches for the next optimizer step, or None if not ready.

        Loss weights are normalized to mean 1 over the whole step (all processes), so the
        step is the same whatever the number of processes or micro-batches.
        """
        g = self.round_size
        if len(self.queue) < g and not (final and len(self.queue)):
            return None
        items = self.queue.pop(g)
        w = torch.tensor([wt for _, wt in items], dtype=torch.float64)
        # All-zero weights (mode weight) stay zero: such samples must not train.
        w = w / w.mean() if w.sum() > 0 else torch.zeros_like(w)
        world, rank = self.acc.num_processes, self.acc.process_index
        mine = list(range(rank, len(items), world))
        if not mine:  # a final step smaller than the number of processes: stay in step
            mine, zero = [0], True
        else:
            zero = False
        bs = self.config.batch_size
        micro = []
        for start in range(0, len(mine), bs):
            part = mine[start : start + bs]
            weights = torch.zeros(len(part)) if zero else w[part].float()
            micro.append(([items[i][0] for i in part], weights))
        self.last_step_size = len(items)
        return micro

    def state_dict(self) -> dict:
        return {
            "queue": self.queue.state_dict(),
            "scorer": self.scorer.state_dict(),
            "envelope": self.envelope.state_dict(),
            "stats": asdict(self.stats),
            "epoch_stats": asdict(self.epoch_stats),
            "trace": self.trace,
        }

    def load_state_dict(self, state: dict) -> None:
        self.queue.load_state_dict(state["queue"])
        self.scorer.load_state_dict(state["scorer"])
        self.envelope.load_state_dict(state["envelope"])
        self.stats = RejectionStats(**state["stats"])
        self.epoch_stats = RejectionStats(**state["epoch_stats"])
        self.trace = state["trace"]
