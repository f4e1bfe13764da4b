"""How the ``sft`` section becomes TRL's ``SFTConfig``: rsft's own options, then ``sft.trl``.

rsft sets the fields in :data:`OWNED` from its own options (each names the option to use);
every other ``trl.SFTConfig`` field may be given in ``sft.trl`` and is passed through as it
is, over rsft's defaults for it (:data:`DEFAULTS`). ``sft.trl`` is checked by TRL's own parser
(``HfArgumentParser``) when the config is read, so a typo or a bad value stops the run before
any model loads. One place for the mapping: the check and the stage both use it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rsft.config import ConfigError
from rsft.tracking.base import PROJECT

if TYPE_CHECKING:
    from rsft.generation.sft.config import SFTSection

# TRL's fields that rsft sets, and the option (or reason) that decides each.
OWNED = {
    "output_dir": "output_dir (the stage writes into <round>/sft/trainer)",
    "num_train_epochs": "sft.epochs",
    "max_steps": "sft.epochs",
    "learning_rate": "sft.lr",
    "per_device_train_batch_size": "sft.batch_size (split over sft.processes)",
    "gradient_accumulation_steps": "sft.gradient_accumulation_steps",
    "lr_scheduler_type": "sft.scheduler",
    "warmup_steps": "sft.warmup_ratio",
    "weight_decay": "sft.weight_decay",
    "max_length": "sft.max_length",
    "activation_checkpointing": "sft.gradient_checkpointing",
    "gradient_checkpointing": "sft.gradient_checkpointing",
    "bf16": "model.dtype",
    "fp16": "model.dtype",
    "use_cpu": "model.device",
    "seed": "seed",
    "data_seed": "seed",
    "save_strategy": "sft.save_steps",
    "save_steps": "sft.save_steps",
    "logging_nan_inf_filter": "nothing: the divergence guard needs every NaN loss logged",
    "disable_tqdm": "progress",
    "resume_from_checkpoint": "resume (a killed stage resumes from its last checkpoint)",
}
# rsft's values for TRL fields that sft.trl may change.
DEFAULTS: dict[str, Any] = {
    "save_total_limit": 1,  # only the newest checkpoint is resumed from
    "report_to": "none",  # trackers only when asked for (report_to, or sft.trl.report_to)
    "dataset_num_proc": None,
}


def trl_arguments(
    cfg: SFTSection,
    *,
    output_dir: str,
    seed: int,
    bf16: bool,
    cpu: bool,
    bars: bool,
    report_to: Sequence[str] = (),
    run_name: str | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``trl.SFTConfig`` for this stage. ``report_to``: the run's
    trackers (transformers takes the same names), logged to as the run ``run_name`` in the
    project ``rsft`` (trackio's, with no Space made after training); ``sft.trl`` may still
    set any of those fields for the stage."""
    own = {
        "output_dir": output_dir,
        "num_train_epochs": cfg.epochs,
        "learning_rate": cfg.lr,
        "per_device_train_batch_size": cfg.batch_size // cfg.processes,  # same global batch
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "lr_scheduler_type": cfg.scheduler,
        # transformers 5 has no warmup_ratio: a warmup_steps below 1 is a ratio of the steps
        # (sft.warmup_ratio is checked to be below 1).
        "warmup_steps": cfg.warmup_ratio,
        "weight_decay": cfg.weight_decay,
        "max_length": cfg.max_length,
        "activation_checkpointing": cfg.gradient_checkpointing,  # transformers 5 name
        "bf16": bf16,
        "fp16": False,
        "use_cpu": cpu,
        "seed": seed,
        "data_seed": seed,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "logging_nan_inf_filter": False,  # a NaN step is logged as NaN, for the guard to see
        "disable_tqdm": not bars,
    }
    logging: dict[str, Any] = {"logging_steps": max(1, cfg.save_steps // 5)}
    if report_to:
        logging.update(report_to=list(report_to), project=PROJECT, trackio_static_space_id=False)
        if run_name is not None:
            logging["run_name"] = run_name
    return {**DEFAULTS, **logging, **cfg.trl, **own}


def check_trl_options(options: dict[str, Any]) -> None:
    """Refuse an ``sft.trl`` key that is not a ``trl.SFTConfig`` field, one that rsft sets
    itself (naming the option to use), or a value TRL's parser rejects."""
    if not options:
        return  # TRL takes seconds to import: only when there is something to check
    import dataclasses
    import tempfile

    from transformers import HfArgumentParser
    from trl import SFTConfig

    fields = {f.name for f in dataclasses.fields(SFTConfig) if f.init}
    for key in options:
        if key in OWNED:
            raise ConfigError(f"sft.trl.{key} is set by rsft from {OWNED[key]}; set that instead.")
        if key not in fields:
            close = difflib.get_close_matches(str(key), sorted(fields - set(OWNED)), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"sft.trl.{key} is not an option of trl.SFTConfig (TRL's fine-tuning "
                f"arguments).{hint}"
            )
    with tempfile.TemporaryDirectory() as tmp:
        probe = {**options, "output_dir": tmp, "use_cpu": True, "bf16": False}
        try:
            HfArgumentParser(SFTConfig).parse_dict(probe)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"sft.trl: trl.SFTConfig refuses {options!r}: {err}") from err
