"""The model's tokenizer and chat template: a conversation rendered into the prompt text.

A chat template is a Jinja program from the model folder (``chat_template.jinja``, or
``chat_template`` in ``tokenizer_config.json``) that runs on every prompt of a run, on both
backends. Two of its faults would pass silently or hang: a template that renders a
conversation to nothing (the model would continue an empty or blank prompt, or transformers
would fail deep inside ``generate``), and one that loops for hours (jinja2's sandbox caps each
``range`` at 100000, not nested loops), which no thread can interrupt. :func:`render` refuses
the first, :func:`check_template` the second; both raise :class:`TemplateError`, an input
error, before generation starts.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsft.config import ConfigError
from rsft.generation.scoring.timed_pool import TIMED_OUT, TimedPool
from rsft.models.folders import remote_code_error

Conversation = list[dict[str, str]]
TEMPLATE_TIMEOUT = 10.0  # generation.template_timeout's default: seconds to render one prompt
FIX = "fix the template, or give the tokenizer another one"
_RENDERED_IN_TIME: set[str] = set()  # digests of (template, conversation) already checked


class TemplateError(ConfigError):
    """The model's chat template cannot render the run's prompts."""


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> Any:
    """The model's tokenizer, left-padded for generation, with a pad token."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except ValueError as err:  # a tokenizer that asks to run its own code
        raise remote_code_error(Path(path), err) from err
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def template_file(tokenizer: Any) -> str:
    """Where the tokenizer's chat template comes from, for error messages."""
    folder = Path(str(getattr(tokenizer, "name_or_path", "")))
    if not folder.is_dir():
        return f"the tokenizer of {str(folder)!r}"
    jinja = folder / "chat_template.jinja"
    return str(jinja if jinja.is_file() else folder / "tokenizer_config.json")


def render(tokenizer: Any, conversation: Conversation) -> str:
    """The prompt text the model continues: its chat template, or the plain user turn.

    A template that renders the conversation to only whitespace (an empty template
    included) is refused rather than sent as the prompt."""
    if getattr(tokenizer, "chat_template", None) is None:
        return "\n".join(m["content"] for m in conversation) + "\n"
    import jinja2

    try:
        return _not_blank(tokenizer, _apply(tokenizer, conversation))
    except jinja2.TemplateError as err:
        raise _failed(tokenizer, f"{type(err).__name__}: {err}") from err


def check_template(
    tokenizer: Any, conversations: list[Conversation], timeout: float = TEMPLATE_TIMEOUT
) -> None:
    """Render the longest of ``conversations`` in a worker process within ``timeout`` seconds
    (``generation.template_timeout``).

    Only a killed process stops a looping template, but a worker per prompt would cost a
    round trip each. A template's cost grows with its conversation, if at all, so the
    longest one of a generator's first call stands for all of them: once it renders in time,
    the rest render in this process. Each (template, conversation) is checked once per
    process, so later rounds and evaluations on the same prompts cost nothing.
    """
    template = getattr(tokenizer, "chat_template", None)
    if template is None or not conversations:
        return
    longest = max(conversations, key=lambda c: sum(len(str(m.get("content"))) for m in c))
    key = json.dumps([template, longest], sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()
    if digest in _RENDERED_IN_TIME:
        return
    pool = TimedPool(
        functools.partial(_renderer, tokenizer),
        workers=1,
        timeout=timeout,
        task="rendering",
    )
    for _, text, error in pool.run([(longest,)]):
        if text is TIMED_OUT:
            raise TemplateError(
                f"the chat template in {template_file(tokenizer)} took longer than "
                f"{timeout:g} s (generation.template_timeout) to render one prompt; {FIX}."
            )
        if error is not None:
            raise _failed(tokenizer, error)
        _not_blank(tokenizer, text)
    _RENDERED_IN_TIME.add(digest)


def _apply(tokenizer: Any, conversation: Conversation) -> str:
    return tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)


def _renderer(tokenizer: Any) -> Callable[[Conversation], str]:
    """What a :class:`TimedPool` worker calls: the template applied by ``tokenizer``."""
    return functools.partial(_apply, tokenizer)


def _not_blank(tokenizer: Any, text: str) -> str:
    if not text.strip():
        raise TemplateError(
            f"the chat template in {template_file(tokenizer)} renders a conversation to "
            f"{text[:40]!r}, so the model would see no prompt; {FIX} (without a template, "
            "rsft sends the plain user turn)."
        )
    return text


def _failed(tokenizer: Any, error: str) -> TemplateError:
    return TemplateError(
        f"the chat template in {template_file(tokenizer)} fails on a prompt ({error}); {FIX}."
    )
