"""The ``sft`` section of an RFT config: the fine-tuning stage, and how it is launched.

Its options are checked when the config is read; its accelerate config and the machine it
runs on by :func:`check_sft_launch`, once before any model loads (accelerate itself would
fail only after the model and data are loaded on every process).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from rsft.config import ConfigError, opt, section
from rsft.generation.sft.arguments import check_trl_options
from rsft.models.devices import gpu_count, uses_gpu

ACCELERATE_HINT = (
    "Give an accelerate config YAML (configs/accelerate/ddp.yaml, fsdp.yaml, "
    "deepspeed_zero2.yaml, deepspeed_zero3.yaml, or one written by `accelerate config`), or "
    "leave sft.accelerate_config unset: sft.processes > 1 alone runs DDP."
)


def check_accelerate_config(path: str, processes: int, lora: bool) -> dict[str, Any]:
    """Read ``path`` with accelerate's own loader and refuse what rsft cannot launch.

    Checked here, before any model loads, because accelerate would only fail (or, for an
    FSDP sharded state dict, silently save no weights) after the model and data are loaded
    on every process. Returns the file's options.
    """
    where = f"sft.accelerate_config {path!r}"
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{where} does not exist. {ACCELERATE_HINT}")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{where} is not valid YAML: {err}. {ACCELERATE_HINT}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of options.")
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.utils import DistributedType

    try:
        cluster = load_config_from_file(str(file))
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"{where}: accelerate cannot read it: {err}") from err
    if not isinstance(cluster, ClusterConfig):
        raise ConfigError(f"{where}: only compute_environment LOCAL_MACHINE can be launched.")
    if cluster.num_machines != 1:
        raise ConfigError(
            f"{where} has num_machines: {cluster.num_machines}; rsft launches the processes of "
            "one machine. Set num_machines: 1."
        )
    if cluster.num_processes not in (-1, None, processes):
        raise ConfigError(
            f"{where} has num_processes: {cluster.num_processes} but sft.processes is "
            f"{processes}. Set sft.processes={cluster.num_processes} (rsft passes it to "
            "accelerate launch), or remove num_processes from the file."
        )
    kind = cluster.distributed_type
    if kind == DistributedType.FSDP:
        state = str(cluster.fsdp_config.get("fsdp_state_dict_type", "FULL_STATE_DICT"))
        if "FULL_STATE_DICT" not in state:
            raise ConfigError(
                f"{where} has fsdp_state_dict_type: {state}; the fine-tuned model is saved "
                "as one transformers folder only from a full state dict (transformers' "
                "Trainer.save_model saves nothing otherwise). Set fsdp_state_dict_type: "
                "FULL_STATE_DICT."
            )
    if kind == DistributedType.DEEPSPEED:
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise ConfigError(
                f"{where} uses DeepSpeed, which is not installed: pip install deepspeed."
            )
        ds = cluster.deepspeed_config
        stage3 = ds.get("zero_stage") == 3
        if stage3 and not ds.get("deepspeed_config_file") and not ds.get("zero3_save_16bit_model"):
            raise ConfigError(
                f"{where}: ZeRO-3 saves a DeepSpeed checkpoint, not a model folder, unless "
                "the weights are gathered: set zero3_save_16bit_model: true."
            )
    sharded = kind == DistributedType.FSDP or (
        kind == DistributedType.DEEPSPEED and cluster.deepspeed_config.get("zero_stage") == 3
    )
    if lora and sharded:
        raise ConfigError(
            f"{where} shards the weights (FSDP or ZeRO-3), and rsft merges LoRA adapters into "
            "the model after training, which needs the full weights in one process. Use "
            "sft.lora=false, or a DDP or ZeRO-2 config."
        )
    return data


@section("sft")
@dataclass
class SFTSection:
    """The fine-tuning stage: TRL's SFTTrainer, loss on the completions only."""

    epochs: float = opt(2.0, gt=0, help="Passes over the accepted set.")
    lr: float = opt(2e-5, gt=0, help="Learning rate.")
    batch_size: int = opt(
        8,
        ge=1,
        help="Sequences per micro-batch, summed over the sft.processes (each process takes "
        "batch_size / processes), so an optimizer step sees batch_size x "
        "gradient_accumulation_steps sequences whatever the number of processes.",
    )
    gradient_accumulation_steps: int = opt(1, ge=1, help="Micro-batches per optimizer step.")
    max_length: int = opt(512, ge=1, help="Longest prompt + completion, in tokens.")
    scheduler: Literal["constant", "linear", "cosine", "constant_with_warmup"] = opt(
        "linear", help="Learning-rate schedule."
    )
    warmup_ratio: float = opt(0.0, ge=0, lt=1, help="Share of the steps used to warm up.")
    weight_decay: float = opt(0.0, ge=0, help="Weight decay.")
    lora: bool = opt(False, help="Train LoRA adapters (PEFT) instead of every weight.")
    lora_r: int = opt(16, ge=1, help="LoRA rank.")
    lora_alpha: int = opt(32, help="LoRA scaling alpha.")
    lora_dropout: float = opt(0.05, ge=0, lt=1, help="LoRA dropout.")
    lora_target_modules: list[str] | str = opt(
        "all-linear", help="LoRA target modules: a list of names, or all-linear."
    )
    gradient_checkpointing: bool = opt(False, help="Trade compute for memory.")
    save_steps: int = opt(50, ge=1, help="Checkpoint every N steps (a killed run resumes there).")
    processes: int = opt(
        1,
        ge=1,
        fix="1: fine-tune in the pipeline's process.",
        help="Processes the fine-tuning runs on. 1: in the pipeline's own process. More: a "
        "child command under `accelerate launch` (DDP: gloo on CPU, NCCL on GPUs, one GPU "
        "per process); batch_size must be divisible by it. Output in <stage>/sft.log. "
        "docs/generation.md: SFT across processes.",
    )
    trl: dict[str, Any] = opt(
        factory=dict,
        help="Any other field of trl.SFTConfig, passed through as given, e.g. {max_grad_norm: "
        "0.5, report_to: wandb, neftune_noise_alpha: 5}; checked by TRL's own parser when "
        "the config is read. The fields rsft sets from its options (learning_rate from "
        "sft.lr, ...) are refused here, naming the option.",
    )
    accelerate_config: str | None = opt(
        None,
        help="An accelerate config YAML for the fine-tuning (DDP, FSDP, DeepSpeed ZeRO on "
        "GPUs: configs/accelerate/). Given, the stage always runs under `accelerate launch` "
        "with sft.processes processes (the file's num_processes, if any, must agree).",
    )

    def __post_init__(self) -> None:
        if self.batch_size % self.processes:
            lower = self.batch_size - self.batch_size % self.processes
            raise ConfigError(
                f"sft.batch_size ({self.batch_size}) must be divisible by sft.processes "
                f"({self.processes}): each process takes batch_size / processes sequences, so "
                f"that the global batch does not depend on the number of processes. Use "
                f"sft.batch_size={lower or self.processes} or another sft.processes."
            )
        check_trl_options(self.trl)

    @property
    def launched(self) -> bool:
        """Whether the stage runs as a child command under ``accelerate launch``."""
        return self.processes > 1 or self.accelerate_config is not None


def check_sft_launch(sft: SFTSection, device: str) -> None:
    """What a launch needs of the files and the machine, checked before any model loads
    (accelerate itself would fail only after the model and data are loaded on every
    process): the accelerate config, then the devices."""
    if sft.accelerate_config is not None:
        check_accelerate_config(sft.accelerate_config, sft.processes, sft.lora)
    if sft.launched:
        check_sft_devices(sft, device)


def check_sft_devices(sft: SFTSection, device: str) -> None:
    """Refuse a launch the machine cannot run: more processes than GPUs, DeepSpeed or FSDP
    without a GPU, no gloo backend for CPU processes."""
    if uses_gpu(device):
        gpus = gpu_count()
        if sft.processes > gpus:
            raise ConfigError(
                f"sft.processes is {sft.processes} but {gpus} GPU(s) are visible; each process "
                f"takes one GPU. Use sft.processes={max(gpus, 1)}, or model.device=cpu."
            )
        return
    if sft.accelerate_config is not None:
        options = yaml.safe_load(Path(sft.accelerate_config).expanduser().read_text())
        kind = str(options.get("distributed_type", ""))
        if kind in ("DEEPSPEED", "FSDP"):
            raise ConfigError(
                f"sft.accelerate_config uses {kind}, which rsft runs on GPUs only, and the "
                "fine-tuning runs on the CPU here (no GPU is visible, or model.device is cpu). "
                "Leave sft.accelerate_config unset: sft.processes > 1 alone runs DDP with gloo "
                "on CPU."
            )
    if sft.processes > 1:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_gloo_available()):
            raise ConfigError(
                f"sft.processes={sft.processes} on CPU needs torch.distributed with the gloo "
                "backend, which this torch build lacks. Use sft.processes=1."
            )
