"""The fine-tuning loop: plain, rejection-sampled (reject) or importance-weighted (weight).

Reads top to bottom: ``FineTuner(config)`` loads and validates everything (data, model,
weights, sampler) before any training starts and picks the run's two components: a *batch
source* (:mod:`rsft.training.batch_sources`: the sampler's epoch, or the model-aware queue)
and a *stepper* (:mod:`rsft.training.steppers`: a gradient step, or a parameter-level
method). ``train()`` runs the epochs on accelerate, so one code path serves CPU, one GPU and
DDP; it checkpoints atomically, resumes mid-epoch, calls the callbacks
(:mod:`rsft.training.callbacks`) and returns a :class:`~rsft.training.results.RunResult`.
Plain fine-tuning is the same loop with every weight equal to 1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import get_scheduler

from rsft import __version__
from rsft.config import ConfigError, check_output_dir, to_dict
from rsft.data import Split, load_split, with_feature_columns
from rsft.data_level import RejectionSampler
from rsft.data_level.sources import compute_weights
from rsft.memory import PeakMemory, parameter_bytes
from rsft.models import apply_freeze, load_classifier, load_processor, save_classifier
from rsft.plots.trace import plot_trace
from rsft.portable import kernel_settings, machine_info
from rsft.progress import progress_bar, say, says_lines
from rsft.rule import Envelope
from rsft.training import checkpoint as ckpt
from rsft.training.batch_sources import ModelAwareSource, SamplerSource, Step
from rsft.training.callbacks import Callback, CallbackList
from rsft.training.config import PARAM_LEVEL, TrainConfig
from rsft.training.divergence import DivergenceGuard
from rsft.training.evaluation import evaluate, make_loader, to_device
from rsft.training.gradient_free import PASSES, build_stepper, check_method
from rsft.training.model_aware import ModelAwareRejection
from rsft.training.results import RunResult
from rsft.training.resume import data_digest, find_resumable, fingerprint
from rsft.training.state import StepResult, TrainState
from rsft.training.steppers import GradientStepper, ParamLevelStepper, Stepper, build_optimizer

# Optimizer steps profiled for peak memory (the first creates the optimizer state).
MEMORY_STEPS = 2


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class NothingTrainedError(RuntimeError):
    """Rejection accepted no sample in the whole run: not a single step was taken."""


class FineTuner:
    """One fine-tuning run, configured by a :class:`TrainConfig`."""

    def __init__(
        self,
        config: TrainConfig,
        accelerator: Accelerator | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.config = cfg = config
        self.accelerator = acc = accelerator or Accelerator()
        self.callbacks = CallbackList(callbacks, self)
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
        self.output_dir = Path(cfg.output_dir)
        self.state = TrainState()  # the run's state while it trains
        if self.gradient_free:
            # Parameter level: no optimizer, the method moves the parameters itself.
            method = build_stepper(cfg, self.clf.model, total_steps, acc.num_processes)
            self.param_counts["trainable"] = method.num_parameters
            self.model = self.clf.model
            self.stepper: Stepper = ParamLevelStepper(
                acc,
                self.model,
                method,
                cfg.optim.name,
                self._loss_sum,
                self._check_finite,
                max_iter=cfg.param_level.max_iter,
            )
        else:
            params = [p for p in self.clf.model.parameters() if p.requires_grad]
            optimizer = build_optimizer(cfg.optim, params)
            scheduler = get_scheduler(
                cfg.optim.scheduler,
                optimizer,
                num_warmup_steps=cfg.optim.warmup_steps,
                num_training_steps=total_steps,
            )
            self.model, optimizer = acc.prepare(self.clf.model, optimizer)
            self.stepper = GradientStepper(
                acc,
                self.model,
                optimizer,
                scheduler,
                self._loss_sum,
                self._check_finite,
                max_grad_norm=cfg.optim.max_grad_norm,
            )
        self.source = self._batch_source()
        self.memory = {"parameters": parameter_bytes(self.clf.model)}
        self.memory["inference_peak"] = self._inference_peak()
        self.setup_time = time.perf_counter() - t0
        self.divergence = DivergenceGuard(
            cfg.divergence_factor,
            cfg.on_divergence,
            self.classes,
            self.output_dir,
            fix=_NON_FINITE_FIX.get(cfg.optim.name, _NON_FINITE_FIX["sgd"]),
            main_process=acc.is_main_process,
        )

    def add_callback(self, callback: Callback) -> None:
        """Call ``callback``'s hooks from now on (after the ones given to the constructor)."""
        self.callbacks.add(callback)

    @property
    def optimizer(self) -> Any:
        """The torch optimizer, or the parameter-level method (what a checkpoint saves)."""
        return self.stepper.optimizer

    @property
    def scheduler(self) -> Any:
        return self.stepper.scheduler

    def _batch_source(self) -> SamplerSource | ModelAwareSource:
        cfg, acc = self.config, self.accelerator
        if self.online is not None:
            return ModelAwareSource(
                self.online,
                self.sampler,
                lambda: acc.unwrap_model(self.model),
                acc.device,
                lambda: self.epochs - 1,
                self.callbacks,
            )
        return SamplerSource(
            self.sampler,
            lambda sampler: self._loader(self.train_split, cfg.batch_size, sampler),
            self._to_device,
            cfg.batch_size,
            cfg.gradient_accumulation_steps,
            acc.num_processes,
            self.loss_weights,
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

    def _loader(self, split: Split, batch_size: int, sampler=None) -> DataLoader:
        cfg = self.config
        return make_loader(split, batch_size, cfg.seed, cfg.num_workers, sampler)

    def _to_device(self, batch: dict) -> dict:
        return to_device(batch, self.accelerator.device)

    def evaluate(self, split: Split) -> dict[str, Any]:
        """Accuracy, mean loss, per-item outcomes and class counts on a labelled split
        (every rank sees the whole split): :func:`rsft.training.evaluation.evaluate`."""
        with self.callbacks.phase("evaluate"):
            return evaluate(
                self.accelerator.unwrap_model(self.model),
                self.clf.logits,
                self._loader(split, self.config.eval_batch_size),
                len(self.classes),
                self.accelerator.device,
            )

    # --- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self, state: TrainState) -> None:
        """An atomic checkpoint of the model, the stepper, the sampler and ``state``."""
        acc = self.accelerator
        with self.callbacks.phase("save"):
            name = ckpt.checkpoint_name(self.output_dir, state.global_step)
            acc.wait_for_everyone()  # every rank has the name before the main process adds it
            tmp = ckpt.checkpoint_dir(self.output_dir) / f".tmp-{name}"
            if acc.is_main_process:
                ckpt.begin_checkpoint(self.output_dir, name)
            acc.wait_for_everyone()
            ckpt.write_rng(tmp, acc.process_index)
            acc.wait_for_everyone()
            if acc.is_main_process:
                saved = {**state.to_dict(), "sampler": self.sampler.state_dict()}
                saved.update(config=fingerprint(self.config), data=self.data_digest)
                saved.update(self.source.state_dict())
                model = acc.unwrap_model(self.model)
                ckpt.write_training_state(tmp, model, self.optimizer, self.scheduler, saved)
                ckpt.commit_checkpoint(self.output_dir, tmp, name)
            acc.wait_for_everyone()
        self.callbacks.call("on_save", state)

    def _resume(self) -> TrainState | None:
        """Load the checkpoint found (and checked) in the constructor; its loop state."""
        if self.resume_from is None:
            return None
        model = self.accelerator.unwrap_model(self.model)
        saved = ckpt.load_training_state(
            self.resume_from, model, self.optimizer, self.scheduler, self.accelerator.process_index
        )
        self.sampler.load_state_dict(saved.pop("sampler"))
        self.source.load_state_dict(saved)
        for key in ("config", "data"):  # checked when the checkpoint was found
            saved.pop(key, None)
        return TrainState.from_dict(saved)

    def _check_scorer(self) -> None:
        """Score a first batch before training, so a broken weight function or a fixed
        envelope below the weights fails early."""
        assert self.online is not None
        n = min(len(self.train_split), self.config.batch_size)
        self.online.check(self.clf.model, list(range(n)))
        self.weight_info["scoring_forwarded"] = self.weight_info.get("scoring_forwarded", 0) + n

    # --- the loop ------------------------------------------------------------------------
    def train(self) -> RunResult:
        """Run every epoch; return (and write) the run's results."""
        cfg, acc = self.config, self.accelerator
        self.state = state = self._resume() or TrainState()
        resumed_from = state.global_step or None
        if resumed_from is None and self.test_split is not None:
            # The pretrained model's score: what fine-tuning is measured against.
            state.initial_test = self.evaluate(self.test_split)
        if resumed_from is None and self.eval_split is not None:
            state.initial_eval = self.evaluate(self.eval_split)  # the guard's start
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.callbacks.call("on_train_begin", state)
        self.model.train()
        for epoch in range(state.epoch, self.epochs):
            if self._budget_spent(state):  # a resumed run that had already stopped early
                break
            self.sampler.set_epoch(epoch)
            if state.step_in_epoch == 0:  # the epoch starts (not resumed mid-epoch)
                state.epoch_first_step = len(state.step_losses)
                self.stepper.epoch_begin(state)
            self.callbacks.call("on_epoch_begin", epoch, state)
            t_epoch = time.perf_counter()
            with self.callbacks.phase("epoch"):
                self._run_epoch(epoch, state)
            state.train_time += time.perf_counter() - t_epoch
            record = self._epoch_record(epoch, state)
            self.callbacks.call("on_epoch_end", epoch, state, record)
            state.history.append(record)
            state.epoch, state.step_in_epoch, state.round = epoch + 1, 0, 0
            self.save_checkpoint(state)
            if acc.is_main_process and says_lines(cfg.progress):
                say(_format_record(record))
            if self._budget_spent(state):
                break
        if not state.global_step:
            accepted = sum(h["accepted"] for h in state.history)
            raise NothingTrainedError(
                f"no training step was taken: rejection accepted {accepted} samples in "
                f"{len(state.history)} epoch(s). Check rejection.weights, or lower "
                "rejection.envelope (an envelope far above the weights accepts almost nothing)."
            )
        with self.callbacks.phase("finish"):
            result = self._finish(state, resumed_from)
        self.callbacks.call("on_train_end", result)
        return result

    def _run_epoch(self, epoch: int, state: TrainState) -> None:
        """Take the batch source's steps until the epoch or the budget ends."""
        show = self.config.progress is True and self.accelerator.is_local_main_process
        desc = f"epoch {epoch + 1}" + ("" if self.sample_budget else f"/{self.epochs}")
        total = self.source.total(state)
        bar = progress_bar(desc=desc, total=total, unit=self.source.unit, show=show)
        steps = self.source.steps(epoch, state, bar.update)
        try:
            while not self._budget_spent(state):  # checked before the source does any work
                step = next(steps, None)
                if step is None:
                    break
                result = self._step(step, state)
                bar.set_postfix(loss=f"{result.loss:.4f}")
                state.step_in_epoch += 1
                every = self.config.checkpoint_every
                if every and state.global_step % every == 0:
                    self.save_checkpoint(state)
                self.callbacks.call("on_step_end", state, result)
        finally:
            steps.close()
            bar.close()

    def _budget_spent(self, state: TrainState) -> bool:
        if self.stepper.done():
            return True
        spent = getattr(state, self.budget_key)
        return self.sample_budget is not None and spent >= self.sample_budget

    def _step(self, step: Step, state: TrainState) -> StepResult:
        """One step of the run's stepper; counts its passes; profiles the first few steps."""
        self.callbacks.call("on_step_begin", step.micro, state)
        with self.callbacks.phase("step"):
            if state.global_step < MEMORY_STEPS:
                with PeakMemory(self.accelerator.device) as peak:
                    loss = self.stepper.step(step.micro, step.samples)
                if peak.peak_bytes is not None and peak.net_bytes is not None:
                    # What earlier steps left allocated (optimizer state) counts later.
                    held = state.train_held
                    state.train_peak = max(state.train_peak or 0, held + peak.peak_bytes)
                    state.train_held = held + peak.net_bytes
            else:
                loss = self.stepper.step(step.micro, step.samples)
        state.global_step += 1
        state.step_losses.append(loss)
        forward, backward = self.stepper.passes
        state.forwarded += step.samples * forward
        state.backpropagated += step.samples * backward
        return StepResult(loss, step.samples)

    def _loss_sum(self, batch: dict, weights: torch.Tensor | None, model: Any) -> torch.Tensor:
        """The run's loss of a micro-batch: cross-entropy per sample, times its loss weight."""
        logits = self.clf.logits(batch, model)
        per_sample = F.cross_entropy(logits, batch["labels"], reduction="none")
        return (per_sample if weights is None else per_sample * weights).sum()

    def _check_finite(self, loss: float) -> None:
        if not math.isfinite(loss):
            state = self.state
            last = ckpt.latest_checkpoint(self.output_dir)
            raise NonFiniteLossError(
                f"the training loss is {loss} at epoch {state.epoch + 1}, step "
                f"{state.step_in_epoch + 1} (global step {state.global_step + 1}). "
                f"{_NON_FINITE_FIX.get(self.config.optim.name, _NON_FINITE_FIX['sgd'])} "
                f"Last checkpoint: {last or 'none'}."
            )

    # --- records and results -------------------------------------------------------------
    def _epoch_record(self, epoch: int, state: TrainState) -> dict[str, Any]:
        losses = state.epoch_losses
        stats = self.source.epoch_stats(epoch)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": state.global_step,
            "train_loss": sum(losses) / len(losses) if losses else math.nan,
            "accepted": stats.accepted,
            "acceptance_rate": stats.acceptance_rate,
            # With the forwards that computed the weights, as the run's total counts them.
            "forwarded": state.forwarded + self.weight_info.get("scoring_forwarded", 0),
        }
        record.update(self.stepper.epoch_record(state))
        ev = None
        if self.eval_split is not None:
            ev = self.evaluate(self.eval_split)
            record.update(eval_accuracy=ev["accuracy"], eval_loss=ev["loss"])
        self.divergence.check_epoch(epoch, state, record["train_loss"], ev)
        return record

    def _finish(self, state: TrainState, resumed_from: int | None) -> RunResult:
        acc = self.accelerator
        scoring = self.weight_info.get("scoring_forwarded", 0)
        if self.online is not None:
            stats = self.online.stats  # the whole run's
            acceptance, ess = stats.acceptance_rate, stats.ess_fraction
        else:
            stats = self.sampler.stats(0)
            acceptance, ess = _mean([h["acceptance_rate"] for h in state.history]), 1.0
            if self.weights is not None:
                w = torch.as_tensor(self.weights, dtype=torch.float64)
                ess = float(w.sum() ** 2 / (w * w).sum() / len(w))
        result = RunResult(
            config=to_dict(self.config),
            rsft_version=__version__,
            data=self.data_digest,
            kernels=kernel_settings(),
            machine=machine_info(),
            classes=self.classes,
            parameters=self.param_counts,
            weights={k: v for k, v in self.weight_info.items() if k != "scoring_forwarded"},
            acceptance_rate=acceptance,
            ess_fraction=ess,
            violations=stats.violations,
            envelope=stats.envelope,
            forwarded=state.forwarded + scoring,
            backpropagated=state.backpropagated,
            setup_time=self.setup_time,
            train_time=state.train_time,
            wall_time=self.setup_time + state.train_time,
            global_step=state.global_step,
            epochs_run=len(state.history),
            resumed_from_step=resumed_from,
            step_losses=state.step_losses,
            history=state.history,
            trace=self.online.trace if self.online is not None else None,
            **self._memory_record(state),
            **self.stepper.result_fields(),
        )
        if self.test_split is not None:
            ev = self.evaluate(self.test_split)
            result.test_accuracy, result.test_loss = ev["accuracy"], ev["loss"]
            # Per-item outcomes: rsft compare's intervals cover the test set's sampling error.
            result.test_correct, result.test_size = ev["correct"], len(ev["correct"])
            if state.initial_test is not None:
                result.initial_test_accuracy = state.initial_test["accuracy"]
            self.divergence.check_test(state, ev)
        guard = self.divergence.result(state)
        result.diverged, result.divergence = guard["diverged"], guard["divergence"]
        if acc.is_main_process:
            save_classifier(self.clf, self.output_dir / "model", self.classes)
            result.write(self.output_dir / "results.json")
            if self.online is not None:
                plot_trace(self.online.trace, self.output_dir / "acceptance.png")
        acc.wait_for_everyone()
        return result

    def _memory_record(self, state: TrainState) -> dict[str, Any]:
        """Peak tensor memory of a training step and of one inference pass, weights included."""
        weights = self.memory["parameters"]
        inference, train = self.memory["inference_peak"], state.train_peak
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
