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
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from rsft.config import check_output_dir
from rsft.data import Split, load_split, with_feature_columns
from rsft.data_level import RejectionSampler
from rsft.data_level.sources import compute_weights
from rsft.memory import PeakMemory, parameter_bytes
from rsft.models import load_for_finetuning, load_processor, save_classifier
from rsft.models.inference import eval_mode, to_device
from rsft.models.task import Task
from rsft.output_lock import output_lock
from rsft.plots.trace import plot_trace
from rsft.progress import progress_bar, say, says_lines
from rsft.training import checkpoint as ckpt
from rsft.training.batch_sources import ModelAwareSource, SamplerSource, Step, build_sampler
from rsft.training.budget import plan_budget
from rsft.training.callbacks import Callback, CallbackList
from rsft.training.config import PARAM_LEVEL, TrainConfig
from rsft.training.divergence import DivergenceGuard
from rsft.training.evaluation import evaluate_split, make_loader
from rsft.training.gradient_free import PASSES, check_method
from rsft.training.inputs import with_inputs
from rsft.training.model_aware import ModelAwareRejection
from rsft.training.records import build_result, epoch_record, format_record
from rsft.training.results import RunResult
from rsft.training.resume import data_digest, find_resumable, fingerprint
from rsft.training.state import StepResult, TrainState
from rsft.training.steppers import build_stepper, non_finite_fix
from rsft.training.stops import NonFiniteLossError, NothingTrainedError
from rsft.training.tracking import tracked

# Optimizer steps profiled for peak memory (the first creates the optimizer state).
MEMORY_STEPS = 2


class FineTuner:
    """One fine-tuning run: a :class:`TrainConfig`, and the inputs as its paths or as
    Python objects (a model, datasets: :mod:`rsft.training.inputs`)."""

    def __init__(
        self,
        config: TrainConfig | None = None,
        accelerator: Accelerator | None = None,
        callbacks: Sequence[Callback] = (),
        *,
        model: Any = None,
        processor: Any = None,
        train: Any = None,
        eval: Any = None,
        test: Any = None,
        target: Any = None,
    ) -> None:
        self.accelerator = acc = accelerator or Accelerator()
        self.config = cfg = with_inputs(
            config or TrainConfig(), acc, model=model, processor=processor,
            train=train, eval=eval, test=test, target=target,
        )  # fmt: skip
        self.callbacks = CallbackList(callbacks, self)
        set_seed(cfg.seed)
        t0 = time.perf_counter()
        check_output_dir(cfg.output_dir, main_process=acc.is_main_process)

        # 1. Data, validated before anything else is built.
        processor = load_processor(cfg.model.path, trust_remote_code=cfg.model.trust_remote_code)
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

        # 2. The pretrained model, its head resized, the frozen part frozen.
        self.clf, self.param_counts = load_for_finetuning(
            cfg.model, self.classes, processor, cfg.seed
        )
        self.clf.model.to(acc.device)
        if cfg.optim.name in PARAM_LEVEL:  # before the weights: a bad pattern fails now
            check_method(cfg, self.clf.model, acc.num_processes)

        # 3. Per-sample weights (known before training) and the sampler that uses them.
        self.weights, self.weight_info = compute_weights(
            cfg, self.train_split, self.clf, acc.device, self.task
        )
        rej = cfg.rejection
        seed = cfg.seed if rej.seed is None else rej.seed
        self.online: ModelAwareRejection | None = None
        if rej.model_aware:
            # Weights that depend on the model are scored during training: the sampler
            # only shuffles; every process walks the same global order, round by round.
            self.online = ModelAwareRejection(cfg, self.train_split, self.clf, acc, self.task)
            self.sampler = RejectionSampler(num_samples=len(self.train_split), seed=seed)
            self.loss_weights = None
            self._check_scorer()
        else:
            self.sampler, self.loss_weights = build_sampler(
                rej, self.weights, len(self.train_split), acc, seed
            )

        # 4. How long it trains, and the stepper: an optimizer or a parameter-level method.
        self.gradient_free = cfg.optim.name in PARAM_LEVEL
        self.passes = PASSES.get(cfg.optim.name, (1, 1))
        budget = plan_budget(
            cfg,
            len(self.train_split),
            self.sampler.expected_acceptance,
            self.passes,
            acc.num_processes,
            self.online.round_size if self.online is not None else None,
        )
        self.epochs, self.sample_budget = budget.epochs, budget.sample_budget
        self.budget_key = budget.budget_key
        self.output_dir = Path(cfg.output_dir)
        self.state = TrainState()  # the run's state while it trains
        self.model, self.stepper = build_stepper(
            cfg, acc, self.clf.model, budget.total_steps, self._loss_sum, self._check_finite
        )
        if self.gradient_free:
            self.param_counts["trainable"] = self.stepper.optimizer.num_parameters
        self.source = self._batch_source()
        self.memory = {"parameters": parameter_bytes(self.clf.model)}
        self.memory["inference_peak"] = self._inference_peak()
        self.setup_time = time.perf_counter() - t0
        self.divergence = DivergenceGuard(
            cfg.divergence_factor,
            cfg.on_divergence,
            self.classes,
            self.output_dir,
            fix=non_finite_fix(cfg.optim.name),
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
        with eval_mode(model), PeakMemory(self.accelerator.device) as peak:
            self.clf.logits(batch, model)
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
            model = self.accelerator.unwrap_model(self.model)
            loader = self._loader(split, self.config.eval_batch_size)
            device, n = self.accelerator.device, len(self.classes)
            return evaluate_split(self.task, self.clf, model, loader, device, n)

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
        """Score a first batch now: a broken weight function or too low an envelope fails."""
        assert self.online is not None
        n = min(len(self.train_split), self.config.batch_size)
        self.online.check(self.clf.model, list(range(n)))
        self.weight_info["scoring_forwarded"] = self.weight_info.get("scoring_forwarded", 0) + n

    # --- the loop ------------------------------------------------------------------------
    def train(self) -> RunResult:
        """Run every epoch; return (and write) the run's results, logged to report_to's trackers.
        ``output_dir`` is locked meanwhile (:mod:`rsft.output_lock`): a second run on it stops."""
        with output_lock(self.output_dir, "rsft train", self.accelerator), tracked(self):
            return self._train()

    def _train(self) -> RunResult:
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
            record = epoch_record(self, epoch, state)
            self.callbacks.call("on_epoch_end", epoch, state, record)
            state.history.append(record)
            state.epoch, state.step_in_epoch, state.round = epoch + 1, 0, 0
            self.save_checkpoint(state)
            if acc.is_main_process and says_lines(cfg.progress):
                say(format_record(record, cfg.task.metric))
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
                state.add_peak(peak.peak_bytes, peak.net_bytes)
            else:
                loss = self.stepper.step(step.micro, step.samples)
        state.global_step += 1
        state.step_losses.append(loss)
        forward, backward = self.stepper.passes
        state.forwarded += step.samples * forward
        state.backpropagated += step.samples * backward
        return StepResult(loss, step.samples)

    def _loss_sum(self, batch: dict, weights: torch.Tensor | None, model: Any) -> torch.Tensor:
        """The run's loss of a micro-batch: the task's loss per sample, times its loss weight."""
        logits = self.clf.logits(batch, model)
        per_sample = self.task.loss(logits, batch)
        return (per_sample if weights is None else per_sample * weights).sum()

    def _check_finite(self, loss: float) -> None:
        if not math.isfinite(loss):
            last = ckpt.latest_checkpoint(self.output_dir)
            fix = non_finite_fix(self.config.optim.name)
            raise NonFiniteLossError.at(loss, self.state, fix, last)

    # --- records and results -------------------------------------------------------------
    def _finish(self, state: TrainState, resumed_from: int | None) -> RunResult:
        acc = self.accelerator
        result = build_result(self, state, resumed_from)
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
