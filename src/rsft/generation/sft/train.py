"""The fine-tuning stage: TRL's SFTTrainer on the accepted completions.

Records arrive in the chat-messages format (``{"messages": [...]}``, the assistant's turn
last). They are split into TRL's conversational prompt/completion form, so the loss covers
the completion only. LoRA adapters (PEFT) are merged after training: every round hands the
next one a plain transformers folder; the adapter itself is kept beside it (``out/adapter``)
for vLLM engines that load adapters into a running base model.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rsft.atomic import atomic_write_text, share_files, writing
from rsft.data.datasets_io import quiet
from rsft.generation.sft.arguments import trl_arguments
from rsft.generation.sft.config import SFTSection
from rsft.generation.sft.guard import STAGE, SFTGuard, check_weights
from rsft.generation.templates import load_tokenizer
from rsft.models.devices import free_memory, resolve_device, resolve_dtype
from rsft.pickles import refusing_unsafe_pickles
from rsft.progress import Progress, say, says_lines, shows_bars
from rsft.tracking.base import TRACKERS_DIR, run_name_of
from rsft.tracking.transformers_env import tracker_environment


def prompt_completion(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` → ``prompt`` (every turn but the last) and ``completion`` (the last)."""
    rows = []
    for r in records:
        messages = r["messages"]
        if not messages or messages[-1]["role"] != "assistant":
            raise ValueError("an accepted record must end with the assistant's turn.")
        rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return rows


def last_complete_checkpoint(trainer_dir: Path) -> Path | None:
    """The newest of TRL's checkpoints that was saved to the end, or None.

    transformers writes a checkpoint's files straight into ``checkpoint-N`` and its
    ``trainer_state.json`` last; a stage killed during a save leaves that folder without it
    (or with it cut short), and resuming from it would fail. The previous checkpoint is only
    deleted after the new one is complete, so it is still there.
    """
    if not trainer_dir.is_dir():
        return None
    steps = []
    for folder in trainer_dir.glob("checkpoint-*"):
        tail = folder.name.removeprefix("checkpoint-")
        if tail.isdigit() and folder.is_dir():
            steps.append((int(tail), folder))
    for _, folder in sorted(steps, reverse=True):
        try:
            json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return folder
    return None


def sft_train(
    base: str | Path,
    records: list[dict[str, Any]],
    out: str | Path,
    cfg: SFTSection,
    *,
    seed: int,
    dtype: str = "auto",
    device: str = "auto",
    progress: Progress = True,
    trust_remote_code: bool = False,
    stage: str = STAGE,
    report_to: Sequence[str] = (),
) -> Path:
    """Fine-tune ``base`` on ``records``; the merged model lands in ``out/model``.

    TRL's checkpoints go to ``out/trainer`` and a killed stage resumes from the last one.
    The final folder appears by an atomic rename, so ``out/model`` exists only when complete.
    The logged losses are kept in ``out/sft_history.json``. A NaN or infinite loss, gradient
    norm or weight stops the stage before anything is saved, with an error that starts with
    ``stage`` (:mod:`rsft.generation.sft.guard`).

    The same function runs in the pipeline's process and in each process of
    ``accelerate launch`` (:mod:`rsft.generation.sft.launch`): transformers' Trainer does the
    distribution; each process takes ``batch_size / processes`` sequences of a micro-batch
    and only the main process writes the model.

    ``report_to`` names the trackers transformers logs the stage to (the run's), their files
    under ``out/trackers`` (:mod:`rsft.tracking.transformers_env`).
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    out = Path(out)
    final = out / "model"
    if final.is_dir():
        return final
    if not records:
        raise ValueError("no accepted samples to fine-tune on.")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != cfg.processes:
        raise RuntimeError(
            f"sft.processes is {cfg.processes} but this fine-tuning runs on {world} process(es) "
            "(WORLD_SIZE): the per-process batch would not add up to sft.batch_size."
        )
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    tokenizer = load_tokenizer(base, trust_remote_code)
    tokenizer.padding_side = "right"
    with quiet():
        model = AutoModelForCausalLM.from_pretrained(
            str(base), dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_target_modules,
            task_type="CAUSAL_LM",
        )
    trainer_dir = out / "trainer"
    kwargs = trl_arguments(
        cfg,
        output_dir=str(trainer_dir),
        seed=seed,
        bf16=torch_dtype == torch.bfloat16,
        cpu=dev == "cpu",
        bars=shows_bars(progress),
        report_to=report_to,
        run_name=run_name_of(out, parts=3),
    )
    args = SFTConfig(**kwargs)
    # transformers' trackers read their folders from the environment, when they are built.
    with tracker_environment(report_to, out / TRACKERS_DIR):
        with quiet():  # tokenizing a few thousand rows: not worth four progress bars
            trainer = SFTTrainer(
                model=model,
                args=args,
                train_dataset=Dataset.from_list(prompt_completion(records)),
                processing_class=tokenizer,
                peft_config=peft_config,
                callbacks=[SFTGuard(stage, len(tokenizer))],
            )
        if progress is not True:  # without bars transformers prints every log; false: none
            trainer.remove_callback(PrinterCallback)
        last = last_complete_checkpoint(trainer_dir)
        if last is not None and says_lines(progress) and os.environ.get("RANK", "0") == "0":
            say(f"resuming the fine-tuning from {last}")
        poisoned = (
            f"Delete {last} and run again: the fine-tuning resumes from an earlier checkpoint "
            "if there is one, else it starts over."
        )
        with refusing_unsafe_pickles(last, poisoned), writing(trainer_dir):  # resumes, saves
            trainer.train(resume_from_checkpoint=None if last is None else str(last))
    check_weights(trainer.model, stage, trainer.args, trainer.state)  # never save NaN weights
    main = trainer.is_world_process_zero()
    staging = out / "model.partial"
    if main:
        shutil.rmtree(staging, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    with quiet(), writing(staging):
        if cfg.lora:  # the config refuses LoRA with sharded weights: every process holds them
            if main:
                # The adapter alone too: engines that keep the base model load it at run time.
                adapter = out / "adapter"
                shutil.rmtree(out / "adapter.partial", ignore_errors=True)
                trainer.model.save_pretrained(str(out / "adapter.partial"))
                shutil.rmtree(adapter, ignore_errors=True)
                (out / "adapter.partial").rename(adapter)
                trainer.model.merge_and_unload().save_pretrained(str(staging))
        else:  # on every process: FSDP and ZeRO-3 gather the full weights here
            trainer.save_model(str(staging))
    trainer.accelerator.wait_for_everyone()
    if main:
        history = {
            "processes": trainer.args.world_size,  # as run, not as configured
            "per_process_batch": trainer.args.per_device_train_batch_size,
            "global_batch": trainer.args.world_size
            * trainer.args.per_device_train_batch_size
            * trainer.args.gradient_accumulation_steps,
            "steps": [h for h in trainer.state.log_history if "loss" in h],
            "summary": next(
                (h for h in reversed(trainer.state.log_history) if "train_runtime" in h), {}
            ),
        }
        _finish(staging, final, tokenizer, history, out / "sft_history.json")
        shutil.rmtree(trainer_dir, ignore_errors=True)  # optimizer states: large, no longer needed
    del trainer, model
    free_memory()
    return final


def _finish(
    staging: Path, final: Path, tokenizer: Any, history: dict[str, Any], history_path: Path
) -> None:
    """Complete the saved folder, keep the loss history, and rename the folder into place."""
    if not any(staging.glob("*.safetensors")):
        raise RuntimeError(
            f"the fine-tuned model was not saved: {staging} holds no weights. With an "
            "accelerate config, check that it gathers the full weights (FSDP: "
            "fsdp_state_dict_type FULL_STATE_DICT; ZeRO-3: zero3_save_16bit_model true)."
        )
    (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle: a model folder runs no code
    tokenizer.padding_side = "left"
    with writing(staging):
        tokenizer.save_pretrained(str(staging))
    atomic_write_text(history_path, json.dumps(history, indent=2) + "\n")
    share_files(staging)  # safetensors leaves its weights file 0600
    staging.rename(final)
