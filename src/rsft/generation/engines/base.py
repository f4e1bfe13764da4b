"""What every generation backend is: conversations and a :class:`Sampling` in, completion texts out.

A generator returns, per conversation, a list of completion texts. Randomness comes from one
seed per call, so a resumed run that regenerates a chunk draws what the first run drew.
Backends: transformers' batched ``generate`` in this process (:mod:`.local`) and vLLM engines
over HTTP (:mod:`.client`, started and spread over by :mod:`.pool`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rsft.generation.templates import TEMPLATE_TIMEOUT, Conversation, check_template
from rsft.models.devices import free_memory
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
        free_memory()
