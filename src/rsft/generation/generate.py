"""Sampling completions: the :class:`Generator` interface and transformers' batched ``generate``.

A generator takes conversations (chat messages) and a :class:`Sampling`, and returns, per
conversation, a list of completion texts. Here randomness comes from one seed per call, so
a resumed run that regenerates a chunk draws what the first run drew. vLLM engines
implement the same interface over HTTP (``engine_client.py``, ``engines.py``).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rsft.generation.templates import (
    TEMPLATE_TIMEOUT,
    Conversation,
    check_template,
    load_tokenizer,
    render,
)
from rsft.models.folders import check_config_files, check_remote_code
from rsft.progress import progress_bar


@dataclass(frozen=True)
class Sampling:
    """How to sample: ``n`` completions per conversation, greedy or at a temperature."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    greedy: bool = False
    seed: int = 0


class Generator:
    """A backend: conversations in, ``sampling.n`` completion texts per conversation out."""

    generated_tokens: int = 0
    tokenizer: Any = None  # backends that render prompts with a chat template set it
    _model_attr = "model"
    _template_checked = False
    template_timeout: float = TEMPLATE_TIMEOUT  # generation.template_timeout

    def generate(
        self, conversations: list[Conversation], sampling: Sampling, progress: bool = False
    ) -> list[list[str]]:
        raise NotImplementedError

    def generate_chunks(
        self,
        chunks: list[list[Conversation]],
        sampling_for: Callable[[int], Sampling],
        on_done: Callable[[int, list[list[str]]], None],
        progress: bool = False,
        desc: str = "generate",
    ) -> None:
        """Every chunk in turn; ``on_done(i, outputs)`` as each is complete (engines with
        replicas spread the chunks over them instead)."""
        self.check_template([c for chunk in chunks for c in chunk])
        bar = progress_bar(total=len(chunks), desc=desc, unit="chunks", show=progress)
        for i, chunk in enumerate(chunks):
            on_done(i, self.generate(chunk, sampling_for(i)))
            bar.update(1)
        bar.close()

    def check_template(self, conversations: list[Conversation]) -> None:
        """Before the first generation: the chat template renders the longest of
        ``conversations`` in time (:func:`~rsft.generation.templates.check_template`)."""
        if self.tokenizer is not None and not self._template_checked:
            check_template(self.tokenizer, conversations, self.template_timeout)
            self._template_checked = True

    def close(self) -> None:
        """Free the model (and the GPU memory it holds) before the next stage loads one."""
        if hasattr(self, self._model_attr):
            delattr(self, self._model_attr)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def check_model_folder(
    path: str | Path, what: str = "model.path", hint: str = "", trust_remote_code: bool = False
) -> Path:
    """A clear error, before anything loads, when a model folder is missing or incomplete,
    its config files are not JSON objects, or it asks to run its own code untrusted. Only
    model.path can be trusted (``trust_remote_code``): rsft never runs the code of a folder
    in another role (``what``, e.g. a reward model)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{what}: {str(folder)!r} does not exist, so it is not a transformers model folder "
            f"(config.json, weights, tokenizer). {hint}".rstrip()
        )
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{what}: {folder} has no config.json, so it is not a transformers model folder. "
            f"{hint}".rstrip()
        )
    never = None if what == "model.path" else what
    check_remote_code(folder, check_config_files(folder), trust_remote_code, never)
    return folder


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("model.device is cuda but no GPU is visible; use auto or cpu.")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


class TransformersGenerator(Generator):
    """Batched sampling with ``model.generate``: prompts sorted by length (less padding),
    ``n`` sequences per prompt in one call, answers put back in the callers' order."""

    def __init__(
        self,
        path: str | Path,
        *,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int = 64,
        trust_remote_code: bool = False,
        template_timeout: float = TEMPLATE_TIMEOUT,
    ) -> None:
        from transformers import AutoModelForCausalLM

        from rsft.data.datasets_io import quiet

        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(path, trust_remote_code)
        with quiet():
            self.model = AutoModelForCausalLM.from_pretrained(
                str(path),
                dtype=resolve_dtype(dtype, self.device),
                trust_remote_code=trust_remote_code,
            ).to(self.device)
        self.model.eval()
        self.batch_size = batch_size
        self.template_timeout = template_timeout
        self.generated_tokens = 0

    @torch.no_grad()
    def generate(
        self, conversations: list[Conversation], sampling: Sampling, progress: bool = False
    ) -> list[list[str]]:
        tok = self.tokenizer
        self.check_template(conversations)
        texts = [render(tok, c) for c in conversations]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        n = sampling.n
        per_batch = max(1, self.batch_size // n)
        out: list[list[str]] = [[] for _ in texts]
        torch.manual_seed(sampling.seed)
        sample_args: dict[str, Any] = (
            {"do_sample": False}
            if sampling.greedy
            else {
                "do_sample": True,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "top_k": 0,
            }  # top_k 0: sample from q itself
        )
        bar = progress_bar(total=len(texts) * n, desc="generate", unit="seq", show=progress)
        for start in range(0, len(order), per_batch):
            idx = order[start : start + per_batch]
            enc = tok(
                [texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.device)
            seqs = self.model.generate(
                **enc,
                max_new_tokens=sampling.max_new_tokens,
                num_return_sequences=n,
                pad_token_id=tok.pad_token_id,
                **sample_args,
            )
            new = seqs[:, enc["input_ids"].shape[1] :]
            self.generated_tokens += int((new != tok.pad_token_id).sum())
            decoded = tok.batch_decode(new, skip_special_tokens=True)
            for j, i in enumerate(idx):
                out[i] = [d.strip() for d in decoded[j * n : (j + 1) * n]]
            bar.update(len(idx) * n)
        bar.close()
        return out
