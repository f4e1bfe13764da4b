"""transformers' batched ``generate`` in this process: the backend without vLLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rsft.generation.engines.base import Generator, Sampling
from rsft.generation.templates import TEMPLATE_TIMEOUT, Conversation, load_tokenizer, render
from rsft.models.devices import resolve_device, resolve_dtype
from rsft.progress import progress_bar


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
