"""The fine-tuning loop: plain, rejection-sampled (reject) or importance-weighted (weight).

Reads top to bottom: ``FineTuner(config)`` loads and validates everything (data, model,
weights, sampler) before any training starts; ``train()`` runs the epochs on accelerate, so
one code path serves CPU, one GPU and DDP; it checkpoints atomically and resumes mid-epoch.
Plain fine-tuning is the same loop with every weight equal to 1.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import get_scheduler

from rsft import __version__
from rsft.atomic import atomic_write_text
from rsft.compare.report import plot_trace
from rsft.config import ConfigError, check_output_dir, to_dict
from rsft.data import Split, load_split, with_feature_columns
from rsft.data_level import RejectionSampler
from rsft.data_level.sources import compute_weights
from rsft.memory import PeakMemory, parameter_bytes
from rsft.models import apply_freeze, load_classifier, load_processor, save_classifier
from rsft.models.task import Task
from rsft.param_level import Metropolis
from rsft.portable import kernel_settings, machine_info
from rsft.progress import progress_bar, say, says_lines
from rsft.rule import Envelope
from rsft.training import checkpoint as ckpt
from rsft.training.config import PARAM_LEVEL, TrainConfig
from rsft.training.divergence import DivergenceGuard
from rsft.training.evaluation import evaluate_task
from rsft.training.gradient_free import PASSES, batch_loss, build_stepper, check_method
from rsft.training.model_aware import ModelAwareRejection
from rsft.training.resume import data_digest, find_resumable, fingerprint

# Optimizer steps profiled for peak memory (the first creates the optimizer state).
MEMORY_STEPS = 2


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class NothingTrainedError(RuntimeError):
    """Rejection accepted no sample in the whole run: not a single step was taken."""


def build_optimizer(cfg, params) -> torch.optim.Optimizer:
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


class FineTuner:
    """One fine-tuning run, configured by a :class:`TrainConfig`."""

    def __init__(self, config: TrainConfig, accelerator: Accelerator | None = None) -> None:
        self.config = cfg = config
        self.accelerator = acc = accelerator or Accelerator()
        set_seed(cfg.seed)
        t0 = time.perf_counter()
        check_output_dir(cfg.output_dir)

        # 1. Data, validated before anything else is built.
        trust = cfg.model.trust_remote_code
        processor = load_processor(cfg.model.path, trust_remote_code=trust)
        self.train_split: Split = load_split(cfg.data.train, cfg.data, processor=processor)
        self.classes = self.train_split.classes
        self.eval_split = self._load_eval(cfg.data.eval, processor)
        self.test_split = self._load_eval(cfg.data.test, processor)
        # The task's loss, metric and collate function (cross-entropy and accuracy by default).
        self.task = Task(cfg.task)
        for split in (self.train_split, self.eval_split, self.test_split):
            self.task.attach(split)
        # The checkpoint to continue from, checked against this config and data (no work yet).
        self.data_digest = data_digest(cfg)
        self.resume_from = find_resumable(cfg, self.data_digest)

        # 2. The pretrained model, its head resized, the frozen part frozen (S0.1).
        self.clf = load_classifier(
            cfg.model.path,
            len(self.classes),
            classes=self.classes,
            kwargs=cfg.model.kwargs,
            head=cfg.model.head,
            seed=cfg.seed,
            trust_remote_code=trust,
        )
        if self.clf.processor is None:
            self.clf.processor = processor
        self.param_counts = apply_freeze(
            self.clf.model,
            cfg.model.freeze,
            self.clf.head,
            train_last_n=cfg.model.train_last_n,
            blocks=cfg.model.blocks,
            freeze_patterns=cfg.model.freeze_patterns,
            trainable_patterns=cfg.model.trainable_patterns,
        )
        self.clf.model.to(acc.device)
        if cfg.optim.name in PARAM_LEVEL:  # before the weights: a bad pattern fails now
            check_method(cfg, self.clf.model, acc.num_processes)

        # 3. Per-sample weights (known before training) and the sampler that uses them.
        self.weights, self.weight_info = compute_weights(
            cfg, self.train_split, self.clf, acc.device
        )
        rej = cfg.rejection
        seed = cfg.seed if rej.seed is None else rej.seed
        shard = {"num_replicas": acc.num_processes, "rank": acc.process_index, "seed": seed}
        self.online: ModelAwareRejection | None = None
        if rej.model_aware:
            # Weights that depend on the model are scored during training (S3.3): the sampler
            # only shuffles; every process walks the same global order, round by round.
            self.online = ModelAwareRejection(cfg, self.train_split, self.clf, acc)
            self.sampler = RejectionSampler(num_samples=len(self.train_split), seed=seed)
            self.loss_weights = None
            self._check_scorer()
        elif self.weights is not None and rej.mode == "reject":
            envelope = Envelope(**to_dict(rej.envelope))
            self.sampler = RejectionSampler(self.weights, envelope, **shard)
            self.loss_weights = None
            expected = self.sampler.expected_acceptance * len(self.train_split)
            if expected < 1:  # an epoch of (almost surely) no step; budget: samples never ends
                raise ConfigError(
                    f"rejection would accept {expected:.3g} of {len(self.train_split)} samples "
                    "per epoch on average: training would take no step. Lower "
                    "rejection.envelope.value (or use policy: max), or check the weights."
                )
        else:
            self.sampler = RejectionSampler(num_samples=len(self.train_split), **shard)
            self.loss_weights = None
            if self.weights is not None:  # importance weighting: the same w, as a loss weight
                w = torch.as_tensor(self.weights, dtype=torch.float32)
                self.loss_weights = (w / w.mean()).to(acc.device)

        # budget: samples trains as many sampler epochs as it takes to backpropagate as many
        # samples as `epochs` plain epochs would: RSFT at the same compute, not the same epochs.
        # budget: forwards does the same with forwarded samples (gradient-free methods forward
        # each sample twice per step).
        self.gradient_free = cfg.optim.name in PARAM_LEVEL
        self.passes = PASSES.get(cfg.optim.name, (1, 1))
        self.epochs = cfg.epochs
        self.sample_budget: int | None = None
        self.budget_key = "forwarded" if cfg.budget == "forwards" else "backpropagated"
        if cfg.budget == "forwards" or (cfg.budget == "samples" and self.online is not None):
            # Stop at the sample count, mid-epoch if need be.
            self.sample_budget = cfg.epochs * len(self.train_split)
            if self.online is not None:
                # The acceptance rate is only known as training goes: below 1% the cap ends it.
                self.epochs = cfg.epochs * 100
            else:
                per_epoch = self.passes[0] * self.sampler.expected_acceptance
                self.epochs = math.ceil(cfg.epochs / per_epoch)
        elif cfg.budget == "samples":
            self.epochs = max(1, round(cfg.epochs / self.sampler.expected_acceptance))

        # 4. Optimizer and schedule over the trainable parameters only.
        per_rank = math.ceil(
            self.sampler.expected_acceptance * len(self.train_split) / acc.num_processes
        )
        micro = cfg.batch_size * cfg.gradient_accumulation_steps
        total_steps = max(1, math.ceil(per_rank / micro)) * self.epochs
        if self.online is not None:  # at most every sample, or the sample budget
            samples = self.sample_budget or cfg.epochs * len(self.train_split)
            total_steps = max(1, math.ceil(samples / self.online.round_size))
        if self.sample_budget is not None and self.online is None:
            per_step = micro * acc.num_processes * self.passes[0]
            total_steps = max(1, math.ceil(self.sample_budget / per_step))
        self.scheduler: Any = None
        if self.gradient_free:
            # Parameter level (seed 001): no optimizer, the method moves the parameters itself.
            self.optimizer: Any = build_stepper(cfg, self.clf.model, total_steps, acc.num_processes)
            self.param_counts["trainable"] = self.optimizer.num_parameters
            # No DDP wrapper: nothing is backpropagated across processes; the processes stay
            # identical because they start identical and draw the same seeds.
            self.model = self.clf.model
        else:
            params = [p for p in self.clf.model.parameters() if p.requires_grad]
            self.optimizer = build_optimizer(cfg.optim, params)
            self.scheduler = get_scheduler(
                cfg.optim.scheduler,
                self.optimizer,
                num_warmup_steps=cfg.optim.warmup_steps,
                num_training_steps=total_steps,
            )
            self.model, self.optimizer = acc.prepare(self.clf.model, self.optimizer)
        self.memory = {"parameters": parameter_bytes(self.clf.model)}
        self.memory["inference_peak"] = self._inference_peak()
        self.setup_time = time.perf_counter() - t0
        self.output_dir = Path(cfg.output_dir)
        self.divergence = DivergenceGuard(
            cfg.divergence_factor,
            cfg.on_divergence,
            self.classes,
            self.output_dir,
            fix=_NON_FINITE_FIX.get(cfg.optim.name, _NON_FINITE_FIX["sgd"]),
            main_process=acc.is_main_process,
        )

    @torch.no_grad()
    def _inference_peak(self) -> int | None:
        """Peak memory of one eval-mode forward of a training batch: the reference."""
        model = self.accelerator.unwrap_model(self.model)
        batch = self._to_device(next(iter(self._loader(self.train_split, self.config.batch_size))))
        was = model.training
        model.eval()
        with PeakMemory(self.accelerator.device) as peak:
            self.clf.logits(batch, model)
        model.train(was)
        return peak.peak_bytes

    def _load_eval(self, path: str | None, processor: Any) -> Split | None:
        if not path:
            return None
        data = with_feature_columns(self.config.data, self.train_split.feature_columns)
        return load_split(path, data, classes=self.classes, processor=processor)

    # ------------------------------------------------------------------------------------
    def _loader(self, split: Split, batch_size: int, sampler=None) -> DataLoader:
        # A generator of its own: starting an iterator would otherwise draw from the global
        # RNG, and a resumed run (which starts one mid-epoch) would drift from the original.
        return DataLoader(
            split.dataset,
            batch_size=batch_size,
            sampler=sampler,
            shuffle=False,
            collate_fn=split.collate,
            num_workers=self.config.num_workers,
            generator=torch.Generator().manual_seed(self.config.seed),
        )

    def _to_device(self, batch: dict) -> dict:
        dev = self.accelerator.device
        return {k: v.to(dev) if torch.is_tensor(v) else v for k, v in batch.items()}

    @torch.no_grad()
    def evaluate(self, split: Split) -> dict[str, Any]:
        """Accuracy, mean loss and per-item outcomes (1 correct, 0 not, in the split's order)
        on a labelled split (every rank sees the whole split), and how many samples are
        predicted as / labelled with each class (the divergence guard)."""
        model = self.accelerator.unwrap_model(self.model)
        was = model.training
        model.eval()
        if not self.task.classification:  # a custom loss or metric: no classes to count
            batches = self._loader(split, self.config.eval_batch_size)
            out = evaluate_task(self.task, self.clf, model, map(self._to_device, batches))
            model.train(was)
            return out
        correct: list[int] = []
        loss_sum = 0.0
        c = len(self.classes)
        predicted, labels = torch.zeros(c, dtype=torch.long), torch.zeros(c, dtype=torch.long)
        for batch in self._loader(split, self.config.eval_batch_size):
            batch = self._to_device(batch)
            logits = self.clf.logits(batch, model)
            loss_sum += float(F.cross_entropy(logits, batch["labels"], reduction="sum"))
            pred = logits.argmax(-1)
            correct += (pred == batch["labels"]).int().tolist()
            predicted += torch.bincount(pred.cpu(), minlength=c)
            labels += torch.bincount(batch["labels"].cpu(), minlength=c)
        model.train(was)
        n = len(correct)
        return {
            "accuracy": sum(correct) / n,
            "loss": loss_sum / n,
            "correct": correct,
            "predicted": predicted.tolist(),
            "labels": labels.tolist(),
        }

    def _save(self, state: dict) -> None:
        acc = self.accelerator
        name = ckpt.checkpoint_name(self.output_dir, state["global_step"])
        acc.wait_for_everyone()  # every rank has the name before the main process adds a folder
        tmp = ckpt.checkpoint_dir(self.output_dir) / f".tmp-{name}"
        if acc.is_main_process:
            ckpt.begin_checkpoint(self.output_dir, name)
        acc.wait_for_everyone()
        ckpt.write_rng(tmp, acc.process_index)
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {**state, "sampler": self.sampler.state_dict()}
            state.update(config=fingerprint(self.config), data=self.data_digest)
            if self.online is not None:
                state["online"] = self.online.state_dict()
            model = acc.unwrap_model(self.model)
            ckpt.write_training_state(tmp, model, self.optimizer, self.scheduler, state)
            ckpt.commit_checkpoint(self.output_dir, tmp, name)
        acc.wait_for_everyone()

    def _resume(self) -> dict | None:
        """Load the checkpoint found (and checked) in the constructor; its loop state."""
        if self.resume_from is None:
            return None
        model = self.accelerator.unwrap_model(self.model)
        state = ckpt.load_training_state(
            self.resume_from, model, self.optimizer, self.scheduler, self.accelerator.process_index
        )
        self.sampler.load_state_dict(state["sampler"])
        if self.online is not None:
            self.online.load_state_dict(state.pop("online"))
        return state

    def _check_scorer(self) -> None:
        """Score a first batch before training, so a broken weight function or a fixed
        envelope below the weights fails early."""
        assert self.online is not None
        n = min(len(self.train_split), self.config.batch_size)
        self.online.check(self.clf.model, list(range(n)))
        self.weight_info["scoring_forwarded"] = self.weight_info.get("scoring_forwarded", 0) + n

    # ------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Run every epoch; return (and write) the run's results."""
        cfg, acc = self.config, self.accelerator
        state = self._resume() or {
            "epoch": 0,
            "step_in_epoch": 0,
            "round": 0,
            "global_step": 0,
            "forwarded": 0,
            "backpropagated": 0,
            "train_time": 0.0,
            "step_losses": [],
            "history": [],
        }
        resumed_from = state["global_step"] if state["global_step"] else None
        if resumed_from is None and self.test_split is not None:
            # The pretrained model's score: what fine-tuning is measured against.
            state["initial_test"] = self.evaluate(self.test_split)
        if resumed_from is None and self.eval_split is not None:
            state["initial_eval"] = self.evaluate(self.eval_split)  # the guard's start
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.model.train()
        for epoch in range(state["epoch"], self.epochs):
            if self._budget_spent(state):  # a resumed run that had already stopped early
                break
            self.sampler.set_epoch(epoch)
            if state["step_in_epoch"] == 0:  # the epoch starts (not resumed mid-epoch)
                state["epoch_first_step"] = len(state["step_losses"])
                if isinstance(self.optimizer, Metropolis):
                    state["epoch_proposals"] = [self.optimizer.proposed, self.optimizer.accepted]
            t_epoch = time.perf_counter()
            run = self._model_aware_epoch if self.online else self._epoch
            run(epoch, state)
            state["train_time"] += time.perf_counter() - t_epoch
            record = self._epoch_record(epoch, state)
            state["history"].append(record)
            state.update(epoch=epoch + 1, step_in_epoch=0, round=0)
            self._save(state)
            if acc.is_main_process and says_lines(cfg.progress):
                say(_format_record(record))
            if self._budget_spent(state):
                break
        if not state["global_step"]:
            accepted = sum(h["accepted"] for h in state["history"])
            raise NothingTrainedError(
                f"no training step was taken: rejection accepted {accepted} samples in "
                f"{len(state['history'])} epoch(s). Check rejection.weights, or lower "
                "rejection.envelope (an envelope far above the weights accepts almost nothing)."
            )
        return self._finish(state, resumed_from)

    def _bar(self, iterable, epoch: int, total: int | None = None):
        show = self.config.progress is True and self.accelerator.is_local_main_process
        desc = f"epoch {epoch + 1}" + ("" if self.sample_budget else f"/{self.epochs}")
        unit = "rounds" if self.online else "steps"
        return progress_bar(iterable, desc=desc, total=total, unit=unit, show=show)

    def _epoch(self, epoch: int, state: dict) -> list[float]:
        """Weights known before training: the sampler has already decided the epoch."""
        cfg = self.config
        k = cfg.gradient_accumulation_steps
        self.sampler.skip(state["step_in_epoch"] * cfg.batch_size * k)
        batches = iter(self._loader(self.train_split, cfg.batch_size, self.sampler))
        losses: list[float] = []
        bar = self._bar(range(math.ceil(len(self.sampler) / (cfg.batch_size * k))), epoch)
        for _ in bar:
            if self._budget_spent(state):
                break
            micro = [self._to_device(b) for b in islice(batches, k)]
            if not micro:
                break
            weights = [
                None if self.loss_weights is None else self.loss_weights[b["index"]] for b in micro
            ]
            n = sum(len(b["index"]) for b in micro) * self.accelerator.num_processes
            losses.append(self._step(list(zip(micro, weights)), state, n))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            self._after_step(state)
        return losses

    def _model_aware_epoch(self, epoch: int, state: dict) -> list[float]:
        """Weights that depend on the model: score a round, accept, train full batches."""
        online = self.online
        assert online is not None
        order = self.sampler.accepted_indices(epoch).tolist()
        g = online.round_size
        n_rounds = math.ceil(len(order) / g)
        losses: list[float] = []
        model = self.accelerator.unwrap_model(self.model)
        for r in self._bar(range(state["round"], n_rounds), epoch, n_rounds - state["round"]):
            losses += self._drain(state)
            if self._budget_spent(state):
                return losses
            indices = order[r * g : (r + 1) * g]
            state["forwarded"] += online.score_round(model, indices, epoch, state["global_step"])
            state["round"] = r + 1
        losses += self._drain(state, final=epoch == self.epochs - 1)
        return losses

    def _drain(self, state: dict, final: bool = False) -> list[float]:
        """Train on the queue while it holds a full step (or anything at all, if final)."""
        online = self.online
        assert online is not None
        losses = []
        while not self._budget_spent(state) and (micro := online.next_step(final)):
            batches = [(online.batch(idx), w.to(self.accelerator.device)) for idx, w in micro]
            losses.append(self._step(batches, state, online.last_step_size))
            self._after_step(state)
        return losses

    def _budget_spent(self, state: dict) -> bool:
        if self.gradient_free:
            max_iter = self.config.param_level.max_iter
            if self.optimizer.converged or (max_iter and self.optimizer.t >= max_iter):
                return True
        return self.sample_budget is not None and state[self.budget_key] >= self.sample_budget

    def _after_step(self, state: dict) -> None:
        state["step_in_epoch"] += 1
        every = self.config.checkpoint_every
        if every and state["global_step"] % every == 0:
            self._save(state)

    def _step(self, micro: list[tuple[dict, torch.Tensor | None]], state: dict, n: int) -> float:
        """One step of the run's method; counts its passes; profiles the first few steps."""
        step = self._gradient_free_step if self.gradient_free else self._optimizer_step
        if state["global_step"] < MEMORY_STEPS:
            with PeakMemory(self.accelerator.device) as peak:
                loss = step(micro, state, n)
            if peak.peak_bytes is not None and peak.net_bytes is not None:
                # What earlier steps left allocated (optimizer state) counts in later peaks.
                held = state.get("train_held", 0)
                state["train_peak"] = max(state.get("train_peak") or 0, held + peak.peak_bytes)
                state["train_held"] = held + peak.net_bytes
        else:
            loss = step(micro, state, n)
        state["forwarded"] += n * self.passes[0]
        state["backpropagated"] += n * self.passes[1]
        return loss

    def _gradient_free_step(
        self, micro: list[tuple[dict, torch.Tensor | None]], state: dict, n_step: int
    ) -> float:
        """Metropolis, MALA or zeroth-order SGD on the step's batch; the loss at θ."""
        acc = self.accelerator
        model = acc.unwrap_model(self.model)
        reduce = (lambda t: acc.reduce(t, "sum")) if acc.num_processes > 1 else None
        closure = batch_loss(micro, lambda b, w: self._loss_sum(b, w, model), n_step, reduce)
        model.eval()  # L must be a function of θ alone: no dropout, frozen norm statistics
        out = self.optimizer.step(closure)
        model.train()
        loss = out if isinstance(out, float) else out.loss
        self._check_finite(loss, state)
        state["global_step"] += 1
        state["step_losses"].append(loss)
        return loss

    def _loss_sum(self, batch: dict, weights: torch.Tensor | None, model: Any) -> torch.Tensor:
        """The run's loss of a micro-batch: the task's loss per sample, times its loss weight."""
        logits = self.clf.logits(batch, model)
        per_sample = self.task.loss(logits, batch)
        return (per_sample if weights is None else per_sample * weights).sum()

    def _check_finite(self, loss: float, state: dict) -> None:
        if not math.isfinite(loss):
            last = ckpt.latest_checkpoint(self.output_dir)
            raise NonFiniteLossError(
                f"the training loss is {loss} at epoch {state['epoch'] + 1}, step "
                f"{state['step_in_epoch'] + 1} (global step {state['global_step'] + 1}). "
                f"{_NON_FINITE_FIX.get(self.config.optim.name, _NON_FINITE_FIX['sgd'])} "
                f"Last checkpoint: {last or 'none'}."
            )

    def _optimizer_step(
        self, micro: list[tuple[dict, torch.Tensor | None]], state: dict, n_step: int
    ) -> float:
        """One optimizer step over micro-batches (gradient accumulation); the mean loss.

        ``n_step`` is the step's sample count over all processes: every sample weighs
        1/n_step, however the step is split into micro-batches and processes (DDP averages
        the processes' gradients, hence the factor num_processes).
        """
        cfg, acc = self.config, self.accelerator
        scale = acc.num_processes / n_step
        total = torch.zeros((), device=acc.device)
        for j, (batch, weights) in enumerate(micro):
            # Only the last micro-batch synchronises gradients across processes.
            sync = acc.no_sync(self.model) if j < len(micro) - 1 else nullcontext()
            with sync:
                loss = self._loss_sum(batch, weights, self.model) * scale
                acc.backward(loss)
            total += loss.detach()
        mean_loss = float(acc.reduce(total, "mean"))
        self._check_finite(mean_loss, state)
        if cfg.optim.max_grad_norm:
            acc.clip_grad_norm_(self.model.parameters(), cfg.optim.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        state["global_step"] += 1
        state["step_losses"].append(mean_loss)
        return mean_loss

    def _epoch_record(self, epoch: int, state: dict) -> dict[str, Any]:
        # Every step of the epoch, those before a mid-epoch resume included.
        losses = state["step_losses"][state["epoch_first_step"] :]
        if self.online is not None:
            stats = self.online.end_epoch()
        else:
            stats = self.sampler.stats(epoch)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": state["global_step"],
            "train_loss": sum(losses) / len(losses) if losses else math.nan,
            "accepted": stats.accepted,
            "acceptance_rate": stats.acceptance_rate,
            # With the forwards that computed the weights, as the run's total counts them.
            "forwarded": state["forwarded"] + self.weight_info.get("scoring_forwarded", 0),
        }
        if isinstance(self.optimizer, Metropolis):
            mh = self.optimizer
            p0, a0 = state.get("epoch_proposals", [0, 0])
            proposed = mh.proposed - p0
            record.update(
                step_acceptance=(mh.accepted - a0) / proposed if proposed else math.nan,
                sigma=mh.sigma,
                temperature=mh.temperature(mh.t),
            )
        ev = None
        if self.eval_split is not None:
            ev = self.evaluate(self.eval_split)
            record.update(eval_accuracy=ev["accuracy"], eval_loss=ev["loss"])
        self.divergence.check_epoch(epoch, state, record["train_loss"], ev)
        return record

    def _finish(self, state: dict, resumed_from: int | None) -> dict[str, Any]:
        acc = self.accelerator
        stats = self.sampler.stats(0)
        scoring = self.weight_info.get("scoring_forwarded", 0)
        result: dict[str, Any] = {
            "config": to_dict(self.config),
            "rsft_version": __version__,
            "data": self.data_digest,  # what a finished run may be reused for (compare)
            "kernels": kernel_settings(),  # what the bits depend on besides config and version
            "machine": machine_info(),
            "classes": self.classes,
            "parameters": self.param_counts,
            "weights": {k: v for k, v in self.weight_info.items() if k != "scoring_forwarded"},
            "acceptance_rate": _mean([h["acceptance_rate"] for h in state["history"]]),
            "ess_fraction": 1.0,
            "violations": stats.violations,
            "envelope": stats.envelope,
            "forwarded": state["forwarded"] + scoring,
            "backpropagated": state["backpropagated"],
            "setup_time": self.setup_time,
            "train_time": state["train_time"],
            "wall_time": self.setup_time + state["train_time"],
            "global_step": state["global_step"],
            "epochs_run": len(state["history"]),
            "resumed_from_step": resumed_from,
            "step_losses": state["step_losses"],
            "history": state["history"],
        }
        result.update(self._memory_record(state))
        if isinstance(self.optimizer, Metropolis):
            result.update(
                step_acceptance=self.optimizer.acceptance_rate,
                proposals=self.optimizer.proposed,
                sigma=self.optimizer.sigma,
            )
        if self.weights is not None:
            w = torch.as_tensor(self.weights, dtype=torch.float64)
            result["ess_fraction"] = float(w.sum() ** 2 / (w * w).sum() / len(w))
        if self.online is not None:
            total = self.online.stats
            result.update(
                acceptance_rate=total.acceptance_rate,
                ess_fraction=total.ess_fraction,
                violations=total.violations,
                envelope=total.envelope,
                epochs_run=len(state["history"]),
                trace=self.online.trace,
            )
        if self.test_split is not None:
            ev = self.evaluate(self.test_split)
            result.update(test_accuracy=ev["accuracy"], test_loss=ev["loss"])
            # Per-item outcomes: rsft compare's intervals cover the test set's sampling error.
            result.update(test_correct=ev["correct"], test_size=len(ev["correct"]))
            if "initial_test" in state:
                result["initial_test_accuracy"] = state["initial_test"]["accuracy"]
            self.divergence.check_test(state, ev)
        result.update(self.divergence.result(state))
        if acc.is_main_process:
            save_classifier(self.clf, self.output_dir / "model", self.classes)
            atomic_write_text(self.output_dir / "results.json", json.dumps(result, indent=2))
            if self.online is not None:
                plot_trace(self.online.trace, self.output_dir / "acceptance.png")
        acc.wait_for_everyone()
        return result

    def _memory_record(self, state: dict) -> dict[str, Any]:
        """Peak tensor memory of a training step and of one inference pass, weights included."""
        weights = self.memory["parameters"]
        inference, train = self.memory["inference_peak"], state.get("train_peak")
        out: dict[str, Any] = {"parameter_bytes": weights}
        if inference is not None and train is not None:
            out.update(
                peak_memory=weights + train,
                inference_memory=weights + inference,
                memory_vs_inference=(weights + train) / (weights + inference),
            )
        return out


_NON_FINITE_FIX = {
    "sgd": "Lower optim.lr, set optim.max_grad_norm, or check the inputs for extreme values.",
    "metropolis": "The loss at the current parameters is not finite: check the inputs for "
    "extreme values, or lower param_level.sigma (and keep param_level.target_acceptance set).",
    "mala": "Lower param_level.sigma or raise param_level.temperature (the gradient step is "
    "sigma²/(2T) times the gradient), or check the inputs for extreme values.",
    "zo_sgd": "Lower optim.lr (the step is lr times the estimate times a noise vector of norm "
    "sqrt(d)) or param_level.sigma, or check the inputs for extreme values.",
}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _format_record(r: dict[str, Any]) -> str:
    parts = [
        f"epoch {r['epoch']}",
        f"train loss {r['train_loss']:.4f}",
        f"accepted {r['accepted']} ({r['acceptance_rate']:.0%})",
    ]
    if "step_acceptance" in r:
        parts.append(f"steps kept {r['step_acceptance']:.0%} (σ {r['sigma']:.2g})")
    if "eval_accuracy" in r:
        parts.append(f"eval acc {r['eval_accuracy']:.2%}")
    return " | ".join(parts)
