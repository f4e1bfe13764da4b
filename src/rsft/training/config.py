"""The options of one fine-tuning run (``rsft train``), as dataclasses.

A YAML config mirrors these sections: ``model``, ``data``, ``optim``, ``rejection`` and the
top-level run options (the ``rejection`` section is :mod:`rsft.data_level.config`). Bad
combinations fail in ``__post_init__`` with a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rsft.config import ConfigError, opt, options_given, section
from rsft.data import DataConfig
from rsft.data.config import ALL_FEATURES
from rsft.data_level.config import (  # noqa: F401 (the rejection section, re-exported)
    MODEL_AWARE,
    EnvelopeConfig,
    RejectionConfig,
)
from rsft.models.task import TaskConfig, check_task_options
from rsft.param_level import SigmaAdapter, TemperatureSchedule
from rsft.progress import PROGRESS_HELP, Progress
from rsft.tracking import REPORT_TO_HELP, check_report_to, require_backends


def _do(names: list[str]) -> str:
    """``does`` for one option, ``do`` for several: "optim.lr does not apply"."""
    return "does" if len(names) == 1 else "do"


@section("model")
@dataclass
class ModelConfig:
    """Where the pretrained model comes from, and which of its parameters train."""

    path: str = opt(
        "",
        help="A transformers model folder or its Hub name org/name, an rsft checkpoint "
        "folder, or the import path 'pkg.module:Class' of a torch module (built with kwargs). "
        "An import path imports and runs that code; a folder runs none unless "
        "trust_remote_code is set (docs/security.md).",
    )
    kwargs: dict[str, Any] = opt(factory=dict, help="Keyword arguments for an import-path model.")
    trust_remote_code: bool = opt(
        False,
        help="Let a model folder run code: an rsft checkpoint whose class is outside rsft "
        "(e.g. the saved output_dir/model of a run whose model.path was your own "
        "'pkg.module:Class'), or a transformers folder with custom code (auto_map). Only for "
        "folders you trust (docs/security.md).",
    )
    head: str | None = opt(
        None,
        help="Attribute name of the classification head; found "
        "automatically (classifier, fc, head, or the last Linear) when unset.",
    )
    freeze: Literal["none", "all_but_head", "last_n", "patterns"] = opt(
        "all_but_head",
        help="Which parameters stay fixed: none; all_but_head (train the head "
        "only); last_n (the head and the last train_last_n blocks); patterns (freeze_patterns).",
    )
    train_last_n: int = opt(1, help="With freeze: last_n, how many of the last blocks train.")
    blocks: str | None = opt(
        None,
        help="Dotted name of the ModuleList holding the model's "
        "blocks, for freeze: last_n; the longest ModuleList when unset.",
    )
    freeze_patterns: list[str] = opt(
        factory=list,
        help="With freeze: patterns, glob patterns "
        "of parameter names to freeze (e.g. 'bert.embeddings.*').",
    )
    trainable_patterns: list[str] = opt(
        factory=list,
        help="Glob patterns of parameters that always train, whatever the policy (e.g. '*.bias').",
    )
    revision: str | None = opt(
        None, help="A model.path named by Hub name: its branch, tag or commit (default: main)."
    )

    def __post_init__(self) -> None:
        if self.freeze == "last_n" and self.train_last_n < 1:
            raise ConfigError("model.train_last_n must be >= 1 with freeze: last_n.")
        if self.freeze == "patterns" and not self.freeze_patterns:
            raise ConfigError("freeze: patterns needs model.freeze_patterns (glob patterns).")


@section("data")
@dataclass
class DataSection(DataConfig):
    """The data files, and how to read them (see :class:`rsft.data.DataConfig`)."""

    train: str = opt(
        "",
        help="Labelled training data: a class-per-folder image tree, a CSV, "
        "JSON(L) or parquet table, or a dataset saved with save_to_disk.",
    )
    eval: str | None = opt(None, help="Labelled data evaluated after every epoch (same format).")
    test: str | None = opt(None, help="Labelled held-out data evaluated once at the end.")


PARAM_LEVEL = ("metropolis", "mala", "zo_sgd")
HOT_COLD = "exp(-L/T) needs T > 0 (small T: greedy; large T: a random walk)."


@section("optim")
@dataclass
class OptimConfig:
    name: Literal["sgd", "adam", "adamw", "metropolis", "mala", "zo_sgd"] = opt(
        "sgd",
        help="The optimizer. Gradient-free, forward passes only (settings under param_level): "
        "metropolis (accept a random step with probability min(1, exp(-ΔL/T))), zo_sgd "
        "(MeZO's two-point estimate, lr = optim.lr); mala (a gradient step plus noise, "
        "with the Hastings correction).",
    )
    lr: float = opt(0.01, gt=0, fix="Try 0.01 for SGD, 1e-3 for Adam.", help="Learning rate.")
    momentum: float = opt(
        0.9, ge=0, lt=1, fix="Use 0.9, or 0 for no momentum.", help="SGD momentum."
    )
    nesterov: bool = opt(False, help="Nesterov momentum (SGD).")
    weight_decay: float = opt(0.0, ge=0, fix="Use 0 to turn it off.", help="Weight decay.")
    scheduler: Literal["constant", "linear", "cosine", "constant_with_warmup"] = opt(
        "constant", help="Learning-rate schedule (transformers' get_scheduler)."
    )
    warmup_steps: int = opt(
        0, ge=0, fix="Use 0 for no warm-up.", help="Warm-up steps of the schedule."
    )
    max_grad_norm: float | None = opt(
        None,
        gt=0,
        fix="It is the largest gradient norm kept (e.g. 1.0); leave it unset (null) to turn "
        "clipping off.",
        help="Clip the gradient norm to this (off if unset).",
    )

    def __post_init__(self) -> None:
        if self.name == "sgd" and self.nesterov and self.momentum == 0:
            raise ConfigError("optim.nesterov needs optim.momentum > 0 (e.g. 0.9).")


@section("param_level")
@dataclass
class ParamLevelConfig:
    """Parameter-level methods (optim.name: metropolis, mala, zo_sgd): updates accepted or
    rejected."""

    patterns: list[str] = opt(
        factory=list,
        help="Glob patterns of the parameters the method moves (e.g. 'classifier.*', '*.bias', "
        "'*norm*', '*lora_*'); default: every parameter model.freeze leaves trainable.",
    )
    sigma: float = opt(
        1e-3,
        gt=0,
        fix="Try 1e-3.",
        help="Standard deviation of the Gaussian proposal (metropolis, mala: the starting "
        "value when adapted) or the finite-difference step ε (zo_sgd).",
    )
    temperature: float = opt(
        1.0,
        gt=0,
        fix=HOT_COLD,
        help="T of the target exp(-L/T); 1, the default, targets exp(-L) itself.",
    )
    temperature_end: float | None = opt(
        None,
        gt=0,
        fix=HOT_COLD,
        help="The temperature at the end of the run, for an annealing schedule.",
    )
    temperature_schedule: Literal["constant", "linear", "geometric", "cosine"] = opt(
        "constant", help="How T goes from temperature to temperature_end."
    )
    target_acceptance: float | Literal["auto"] | None = opt(
        "auto",
        gt=0,
        lt=1,
        fix="Use auto (each method's optimum), or null to keep σ fixed.",
        help="σ is adapted towards this acceptance rate; auto: each method's optimum in many "
        "dimensions (0.234 for metropolis, a random walk; 0.574 for mala); null keeps σ fixed.",
    )
    adapt_every: int = opt(20, ge=1, help="Adapt σ after every window of this many proposals.")
    adapt_gain: float = opt(
        1.0,
        gt=0,
        fix="Try 1 (the default).",
        help="Step of the log-σ adaptation (it shrinks as 1/sqrt(k)).",
    )
    adapt_until: int | None = opt(
        None,
        help="Stop adapting σ after this many proposals (a burn-in: the chain is then exact); "
        "null adapts throughout.",
    )
    restore: Literal["exact", "subtract"] = opt(
        "exact",
        help="Undo a rejected step bit for bit (1 byte per tuned parameter) or by "
        "subtracting it again (MeZO: no memory, exact within rounding).",
    )
    max_iter: int | None = opt(
        None,
        ge=1,
        help="Stop after this many steps (proposals), or at the run's budget (epochs, "
        "budget), whichever comes first.",
    )
    tol: float = opt(0.0, help="Convergence: the smallest relative improvement of the loss.")
    patience: int = opt(
        0,
        ge=0,
        help="Stop when the smoothed loss has not improved by tol in this many steps (0: off).",
    )

    def __post_init__(self) -> None:
        try:  # the schedules' own checks, should they ever hold more than the ones above
            TemperatureSchedule(self.temperature, self.temperature_end, "constant")
            target = None if self.target_acceptance == "auto" else self.target_acceptance
            SigmaAdapter(target, self.adapt_every, self.adapt_gain)
        except ValueError as err:
            raise ConfigError(f"param_level: {err}") from err
        if self.temperature_schedule == "constant" and self.temperature_end is not None:
            raise ConfigError(
                "param_level.temperature_end needs a param_level.temperature_schedule "
                "(linear, geometric or cosine) to anneal towards it."
            )
        if self.temperature_schedule != "constant" and self.temperature_end is None:
            raise ConfigError(
                f"param_level.temperature_schedule: {self.temperature_schedule} needs "
                "param_level.temperature_end."
            )


@section("")
@dataclass
class TrainConfig:
    model: ModelConfig = opt(factory=ModelConfig, help="The pretrained model.")
    data: DataSection = opt(factory=DataSection, help="The data.")
    optim: OptimConfig = opt(factory=OptimConfig, help="Optimizer and schedule.")
    rejection: RejectionConfig = opt(factory=RejectionConfig, help="Rejection sampling.")
    param_level: ParamLevelConfig = opt(
        factory=ParamLevelConfig, help="Parameter-level methods (metropolis, mala, zo_sgd)."
    )
    task: TaskConfig = opt(
        factory=TaskConfig, help="The per-sample loss, metric and batching (docs/tasks.md)."
    )
    epochs: int = opt(3, ge=1, help="Passes over the (accepted) training data.")
    budget: Literal["epochs", "samples", "forwards"] = opt(
        "epochs",
        help="epochs: run `epochs` passes over the accepted data (rejection makes each "
        "cheaper); samples: run as many passes as it takes to backpropagate as many samples "
        "as `epochs` plain epochs (the same compute as plain fine-tuning); forwards: stop at "
        "as many forwarded samples as `epochs` plain epochs (the budget of gradient-free "
        "methods, which forward every sample twice).",
    )
    gradient_accumulation_steps: int = opt(
        1, ge=1, help="Micro-batches of batch_size per optimizer step (per process)."
    )
    batch_size: int = opt(32, ge=1, help="Training batch size (per process).")
    eval_batch_size: int = opt(256, ge=1, help="Batch size of evaluation and feature extraction.")
    seed: int = opt(0, help="Seed of everything: head init, shuffling, acceptance coins.")
    output_dir: str = opt("runs/train", help="Checkpoints, the final model and results.json.")
    checkpoint_every: int = opt(
        0, ge=0, help="Also checkpoint every N optimizer steps (0: at epoch ends only)."
    )
    resume: Literal["auto", "never"] = opt(
        "auto",
        help="auto: continue from the last complete checkpoint in output_dir when there is "
        "one (refused if the config or the data changed since, or if output_dir holds a "
        "finished run's results.json but no checkpoint); never: start over.",
    )
    num_workers: int = opt(
        0, ge=0, fix="0: load in the main process.", help="DataLoader worker processes."
    )
    progress: Progress = opt(True, help=PROGRESS_HELP.format(unit="epoch"))
    on_divergence: Literal["warn", "stop"] = opt(
        "warn",
        help="What a diverged run does: warn (a warning; results.json records it, and the "
        "run as diverged when its final model is) or stop (an error, exit code 1; a collapse "
        "must last to the next epoch). Diverged: an epoch's mean train loss or the eval loss "
        "above divergence_factor times its start, or (nearly) every eval or test sample "
        "predicted as one class that most of them are not.",
    )
    divergence_factor: float = opt(
        10.0,
        gt=1,
        fix="Try 10 (the default).",
        help="A loss above this many times its value before training (at least ln(classes), "
        "the loss of a uniform guess) counts as divergence.",
    )
    report_to: list[str] | str = opt(
        factory=list, help=REPORT_TO_HELP.format(unit="epoch") + " rsft compare: every run."
    )

    def _check_param_level(self) -> None:
        """Options that the chosen method would silently ignore are an error, not a no-op."""
        # What the user set counts, not what differs from the default: an option written out
        # with its default value is as ignored as any other.
        name, changed = self.optim.name, options_given(self.param_level)
        applies = {
            "metropolis": changed,
            "mala": changed,
            "zo_sgd": {"patterns", "sigma", "max_iter", "tol", "patience"},
        }.get(name, set())
        ignored = sorted(changed - applies)
        if ignored:
            which = "zo_sgd" if name == "zo_sgd" else f"optim.name: {name}"
            raise ConfigError(
                f"{', '.join('param_level.' + k for k in ignored)} {_do(ignored)} not apply "
                f"to {which}: "
                "param_level sets metropolis and mala (all of it) and zo_sgd (patterns, sigma, "
                "max_iter, tol, patience). Remove it, or choose the method it belongs to."
            )
        if name in PARAM_LEVEL:
            given = options_given(self.optim)
            unused = [
                k
                for k in ("weight_decay", "max_grad_norm", "nesterov", "warmup_steps")
                if k in given
            ]
            if unused:
                raise ConfigError(
                    f"{', '.join('optim.' + k for k in unused)} {_do(unused)} not apply to "
                    f"optim.name: {name}, which takes no gradient step with an optimizer "
                    "(optim.lr is zo_sgd's step size; the rest are ignored). Remove it."
                )

    def __post_init__(self) -> None:
        self.report_to = check_report_to(self.report_to)
        self._check_param_level()
        check_task_options(self)
        if self.data.feature_columns == ALL_FEATURES:
            # The weight columns rejection reads are no features: they would leak the weights.
            exclude = self.data.exclude_columns
            weights = (self.rejection.column, self.rejection.balance_column)
            exclude += [c for c in weights if c and c not in exclude]
        if self.optim.name in PARAM_LEVEL:
            if self.optim.scheduler != "constant":
                raise ConfigError(
                    f"optim.scheduler: {self.optim.scheduler} does not apply to "
                    f"optim.name: {self.optim.name}; use param_level.temperature_schedule "
                    "(and σ adaptation) instead, or scheduler: constant."
                )
            if self.rejection.model_aware:
                raise ConfigError(
                    f"optim.name: {self.optim.name} moves the parameters with forward passes "
                    "only and cannot be combined with model-aware rejection.weights "
                    f"({self.rejection.weights})."
                )


def preflight(cfg: TrainConfig, given: dict[str, Any] | None = None) -> None:
    """The checks run once before anything loads or is written, not while the config is
    built: that the inputs are named, in the config or ``given`` as objects to
    :class:`~rsft.training.FineTuner` (option → object or None), and that the trackers of
    ``report_to`` are installed."""
    given = given or {}
    required = {
        "model.path": (cfg.model.path, "a model folder or an import path (or model=)"),
        "data.train": (cfg.data.train, "a folder or a table of labelled samples (or train=)"),
    }
    for name, (value, what) in required.items():
        if not value and given.get(name) is None:
            raise ConfigError(f"{name} is required: {what}.")
    require_backends(cfg.report_to)  # a tracker named but not installed
