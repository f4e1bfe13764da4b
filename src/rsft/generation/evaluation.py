"""The held-out evaluation of an RFT round's model: greedy pass@1, sampled pass@k and maj@k,
distinct-n; per prompt, what a comparison pairs arms on (``<stem>_generations.jsonl``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsft.atomic import atomic_write_jsonl
from rsft.generation.engines.base import Generator, Sampling
from rsft.generation.metrics import distinct_n, mean_pass_at_k
from rsft.generation.prompts import Prompts, chat_messages
from rsft.generation.results import HeldOutEval
from rsft.generation.scoring.answers import Extractor, majority
from rsft.generation.scoring.verifiers import Verifier, score


def held_out_generations(
    gen: Generator, cfg: Any, prompts: Prompts, seed: int, show: bool
) -> tuple[list[str], list[list[str]]]:
    """Each prompt's greedy answer and, with ``eval.k`` > 0, its k sampled ones."""
    e, g = cfg.eval, cfg.generation
    convs = [chat_messages(t, cfg.data.system_prompt) for t in prompts.texts]
    max_new = e.max_new_tokens or g.max_new_tokens
    greedy = [
        o[0] for o in gen.generate(convs, Sampling(max_new_tokens=max_new, greedy=True), show)
    ]
    sampled: list[list[str]] = []
    if e.k > 0:
        sampled = gen.generate(
            convs, Sampling(e.k, e.temperature, g.top_p, max_new, seed=seed), show
        )
    return greedy, sampled


def held_out_metrics(
    cfg: Any,
    prompts: Prompts,
    verifier: Verifier,
    greedy: list[str],
    sampled: list[list[str]],
    stem: Path,
    say: Callable[[str], None],
    timeout: float | None = None,
    answers: Extractor | None = None,
) -> HeldOutEval:
    """Score the answers; write ``<stem>_generations.jsonl`` (per prompt: the greedy answer
    marked correct or not, how many of the sampled ones are, the majority answer, the
    prompt's group); return the metrics. ``timeout``: the verifier's time limit;
    ``answers``: how the verifier reads an answer (maj@k), None when it does not."""
    e, p = cfg.eval, prompts
    flat = greedy + [t for texts in sampled for t in texts]
    n = len(p)
    texts = p.texts + [t for t in p.texts for _ in range(e.k)]
    refs = p.references + [r for r in p.references for _ in range(e.k)]
    v = cfg.verifier
    result = score(verifier, texts, flat, refs, workers=v.workers, timeout=timeout)
    if result.n_failed:
        say(f"{stem.name}: {result.summary()}")
    ok = [r is not None and r >= e.threshold for r in result.rewards]
    metrics = HeldOutEval(
        prompts=n,
        pass_at_1=sum(ok[:n]) / n,
        failed=result.n_failed,
        timeouts=result.timeouts,
        mean_length=sum(len(t) for t in greedy) / n,
        distinct_n=e.distinct_n,
        distinct=distinct_n(flat[n:] if e.k > 0 else greedy, e.distinct_n),
    )
    rows: list[dict[str, Any]] = [
        {"prompt_id": p.ids[i], "completion": greedy[i], "correct": ok[i]} for i in range(n)
    ]
    if p.groups is not None:
        by_group: dict[str, list[bool]] = {}
        for row, group in zip(rows, p.groups):
            row["group"] = group
            by_group.setdefault(group, []).append(row["correct"])
        metrics.groups = {g: sum(v) / len(v) for g, v in sorted(by_group.items())}
    if e.k > 0:
        per_prompt = [ok[n + i * e.k : n + (i + 1) * e.k] for i in range(n)]
        metrics.k = e.k
        metrics.pass_at_1_sampled = mean_pass_at_k(per_prompt, 1)
        metrics.pass_at_k = mean_pass_at_k(per_prompt, e.k)
        for row, marks in zip(rows, per_prompt):
            row.update(sampled=len(marks), sampled_correct=sum(marks))
        if answers is not None:
            for i, row in enumerate(rows):
                texts = sampled[i]
                row["majority"], row["majority_correct"] = majority(
                    [answers(t) for t in texts], per_prompt[i]
                )
            metrics.maj_at_k = sum(r["majority_correct"] for r in rows) / n
        for row, texts in zip(rows, sampled):
            row["samples"] = texts
    atomic_write_jsonl(stem.parent / f"{stem.name}_generations.jsonl", rows)
    return metrics
