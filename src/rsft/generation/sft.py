"""The fine-tuning stage: TRL's SFTTrainer on the accepted completions.

Records arrive in the chat-messages format (``{"messages": [...]}``, the assistant's turn
last). They are split into TRL's conversational prompt/completion form, so the loss covers
the completion only. LoRA adapters (PEFT) are merged after training: every round hands the
next one a plain transformers folder; the adapter itself is kept beside it (``out/adapter``)
for vLLM engines that load adapters into a running base model.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from rsft.atomic import share_files
from rsft.data.datasets_io import quiet
from rsft.generation.config import SFTSection
from rsft.generation.generate import load_tokenizer, resolve_device, resolve_dtype
from rsft.progress import Progress, shows_bars


def prompt_completion(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` → ``prompt`` (every turn but the last) and ``completion`` (the last)."""
    rows = []
    for r in records:
        messages = r["messages"]
        if not messages or messages[-1]["role"] != "assistant":
            raise ValueError("an accepted record must end with the assistant's turn.")
        rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return rows


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
) -> Path:
    """Fine-tune ``base`` on ``records``; the merged model lands in ``out/model``.

    TRL's checkpoints go to ``out/trainer`` and a killed stage resumes from the last one.
    The final folder appears by an atomic rename, so ``out/model`` exists only when complete.
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    out = Path(out)
    final = out / "model"
    if final.is_dir():
        return final
    if not records:
        raise ValueError("no accepted samples to fine-tune on.")
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
    args = SFTConfig(
        output_dir=str(trainer_dir),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5 name
        bf16=torch_dtype == torch.bfloat16,
        fp16=False,
        use_cpu=dev == "cpu",
        seed=seed,
        data_seed=seed,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=1,
        logging_steps=max(1, cfg.save_steps // 5),
        report_to="none",
        disable_tqdm=not shows_bars(progress),
        dataset_num_proc=None,
    )
    with quiet():  # tokenizing a few thousand rows: not worth four progress bars
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(prompt_completion(records)),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    if progress is not True:  # without bars transformers prints every log; false: none of it
        trainer.remove_callback(PrinterCallback)
    last = get_last_checkpoint(str(trainer_dir)) if trainer_dir.is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    trained = trainer.model
    if cfg.lora:
        # The adapter alone too: engines that keep the base model load it at run time.
        adapter = out / "adapter"
        shutil.rmtree(out / "adapter.partial", ignore_errors=True)
        with quiet():
            trained.save_pretrained(str(out / "adapter.partial"))
        shutil.rmtree(adapter, ignore_errors=True)
        (out / "adapter.partial").rename(adapter)
        trained = trained.merge_and_unload()
    staging = out / "model.partial"
    shutil.rmtree(staging, ignore_errors=True)
    with quiet():
        trained.save_pretrained(str(staging))
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(str(staging))
    share_files(staging)  # safetensors leaves its weights file 0600
    staging.rename(final)
    shutil.rmtree(trainer_dir, ignore_errors=True)  # optimizer states: large, no longer needed
    del trainer, trained, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return final
