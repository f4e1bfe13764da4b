"""Prompts that load but would make a run's figures or its fine-tuning mislead: warnings.

Each is a :class:`PromptWarning`, emitted once, before any model is loaded where it can be:

- held-out prompts that are also training prompts: held-out pass@1 would measure memorisation;
- prompts too long for the model's context, or for ``sft.max_length`` (SFT truncates there,
  so the completion the model should learn is cut off): counted as the run renders them;
- a round's SFT set made mostly of duplicated training prompts (see :func:`warn_duplicates`).

Two prompts count as the same when their texts are equal up to case and whitespace
(:func:`normalized`).
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from rsft.generation.config import RFTConfig
from rsft.generation.prompts import Prompts, chat_messages
from rsft.generation.templates import check_template, load_tokenizer, render

# A round's SFT set is dominated by duplicated prompts when more than this share of its
# records come from them.
DOMINANT_SHARE = 0.5


class PromptWarning(UserWarning):
    """The prompts load, but a figure or the fine-tuning would probably mislead."""


def normalized(text: str) -> str:
    """The text with its whitespace collapsed and its case folded: what "the same prompt" is."""
    return " ".join(text.split()).casefold()


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def _warn(message: str) -> None:
    warnings.warn(message, PromptWarning, stacklevel=3)


def warn_overlap(train: Prompts, held_out: Prompts) -> None:
    """Warn when held-out prompts are also training prompts."""
    seen = {normalized(t) for t in train.texts}
    shared = [i for i, t in enumerate(held_out.texts) if normalized(t) in seen]
    if shared:
        i = shared[0]
        _warn(
            f"{len(shared)} of the {len(held_out)} held-out prompts (data.eval: "
            f"{held_out.source}) are also training prompts (data.train: {train.source}), the "
            f"same text up to case and whitespace, e.g. {held_out.ids[i]} "
            f"{_short(held_out.texts[i])}: held-out pass@1 would then measure memorisation. "
            "Remove them from data.eval (or from data.train)."
        )


def warn_duplicates(records: list[dict[str, Any]], train: Prompts, rnd: int) -> None:
    """Warn when more than half of the records round ``rnd`` fine-tunes on (its accepted set,
    or every round's with ``data_mode: accumulate``) come from duplicated training prompts:
    prompts whose text occurs more than once among the run's training prompts. Each copy is
    sampled and accepted on its own, so the SFT set then mostly teaches those few prompts."""
    counts = Counter(normalized(t) for t in train.texts)
    text_of = dict(zip(train.ids, train.texts))
    from_dup = [
        text_of[r["prompt_id"]]
        for r in records
        if r["prompt_id"] in text_of and counts[normalized(text_of[r["prompt_id"]])] > 1
    ]
    if len(from_dup) <= DOMINANT_SHARE * len(records):
        return
    by_text = Counter(normalized(t) for t in from_dup)
    top, n_records = by_text.most_common(1)[0]
    example = next(t for t in from_dup if normalized(t) == top)
    repeated = sum(1 for n in counts.values() if n > 1)
    _warn(
        f"round {rnd}: {len(from_dup)} of the {len(records)} SFT records come from training "
        f"prompts that occur more than once in data.train ({train.source}: {repeated} "
        f"text{'s' if repeated > 1 else ''} repeated, up to case and whitespace), e.g. "
        f"{_short(example)} ({counts[top]} times, {n_records} records): fine-tuning then "
        "mostly learns those prompts. Remove the repeated rows from data.train."
    )


def model_context(model: str | Path) -> int | None:
    """``max_position_embeddings`` of the model folder's config.json (None: not given, or the
    file does not read; the model's loader reports that)."""
    try:
        config = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("max_position_embeddings") if isinstance(config, dict) else None
    return value if isinstance(value, int) and value > 0 else None


def prompt_lengths(
    tokenizer: Any, prompts: Prompts, system_prompt: str | None, template_timeout: float
) -> list[int]:
    """Each prompt's length in tokens, rendered as the run renders it (chat template,
    system prompt) and tokenised as the generators tokenise it. The template is first run
    under its time limit (:func:`check_template`): a looping one stops here, not hangs."""
    conversations = [chat_messages(t, system_prompt) for t in prompts.texts]
    check_template(tokenizer, conversations, template_timeout)
    texts = [render(tokenizer, c) for c in conversations]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def warn_long_prompts(cfg: RFTConfig, train: Prompts, held_out: Prompts, vllm: bool) -> None:
    """Warn about prompts whose tokens plus the completion's budget exceed the model's
    context (with vLLM engines, ``engine.max_model_len`` when it is smaller), and about
    training prompts that exceed ``sft.max_length`` with it."""
    tok = load_tokenizer(cfg.model.path, cfg.model.trust_remote_code)
    context = _context(cfg, vllm)
    g, e = cfg.generation, cfg.eval
    eval_name = "eval.max_new_tokens" if e.max_new_tokens else "generation.max_new_tokens"
    splits = [
        (train, "data.train", g.max_new_tokens, "generation.max_new_tokens"),
        (held_out, "data.eval", e.max_new_tokens or g.max_new_tokens, eval_name),
    ]
    for prompts, field, max_new, max_name in splits:
        lengths = prompt_lengths(tok, prompts, cfg.data.system_prompt, g.template_timeout)
        over = (prompts, field, lengths, max_new, max_name)
        if context is not None:
            limit, what, other_fix = context
            fix = f"Shorten or drop those prompts, {other_fix}or lower {max_name}."
            _warn_too_long(*over, limit, what, fix)
        if prompts is train:
            _warn_too_long(
                *over,
                cfg.sft.max_length,
                f"sft.max_length ({cfg.sft.max_length} tokens)",
                "SFT truncates each sequence there, so the completion the model should learn "
                "is cut off. Raise sft.max_length, or shorten those prompts.",
            )


def _context(cfg: RFTConfig, vllm: bool) -> tuple[int, str, str] | None:
    """The longest prompt + completion the generators take: in tokens, named, and the fix
    that raises it (None: the model's config gives no context length)."""
    context = model_context(cfg.model.path)
    engine = cfg.engine.max_model_len if vllm else None
    if engine is not None and (context is None or engine < context):
        return engine, f"engine.max_model_len ({engine} tokens)", "raise engine.max_model_len, "
    if context is None:
        return None
    where = Path(cfg.model.path) / "config.json"
    return (
        context,
        f"the model's context ({context} tokens: max_position_embeddings in {where})",
        "",
    )


def _warn_too_long(
    prompts: Prompts,
    field: str,
    lengths: list[int],
    max_new: int,
    max_name: str,
    limit: int,
    what: str,
    fix: str,
) -> None:
    over = [i for i, n in enumerate(lengths) if n + max_new > limit]
    if not over:
        return
    i = max(over, key=lengths.__getitem__)
    _warn(
        f"{len(over)} of the {len(prompts)} prompts of {field} ({prompts.source}) are too "
        f"long for {what} once the {max_new} tokens of {max_name} are added: the longest, "
        f"{prompts.ids[i]} {_short(prompts.texts[i])}, has {lengths[i]} tokens as rendered "
        f"with the chat template. {fix}"
    )
