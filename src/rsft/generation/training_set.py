"""What a round fine-tunes on (``train_on``): the accepted candidates, the prompts' reference
solutions (plain fine-tuning), or both (the RFT paper's set: a reference that an accepted
candidate repeats is kept once).

Records are chat conversations (TRL's conversational format) with where each came from.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rsft.atomic import atomic_write_jsonl, read_jsonl
from rsft.generation.dedup import deduplicate
from rsft.generation.metrics import distinct_n
from rsft.generation.prompt_checks import warn_duplicates
from rsft.generation.prompts import Prompts, chat_messages
from rsft.generation.results import RoundSelection


class NothingAcceptedError(RuntimeError):
    """A round accepted no candidate, so there is nothing to fine-tune on."""


def chat_records(rows: list[dict[str, Any]], system: str | None) -> list[dict[str, Any]]:
    """One record per row: the prompt's conversation, then the completion as the answer."""
    return [
        {
            "messages": chat_messages(r["prompt"], system)
            + [{"role": "assistant", "content": r["completion"]}],
            "prompt_id": r["prompt_id"],
            "reward": r.get("reward"),
            **({"source": r["source"]} if "source" in r else {}),
        }
        for r in rows
    ]


def reference_rows(prompts: Prompts) -> list[dict[str, Any]]:
    """Each training prompt with its worked reference solution as the completion."""
    if prompts.solutions is None:
        raise ValueError("the prompts were read without data.solution_column")
    return [
        {"prompt_id": i, "prompt": t, "completion": sol, "reward": None, "source": "reference"}
        for i, t, sol in zip(prompts.ids, prompts.texts, prompts.solutions)
    ]


def with_references(
    kept: list[dict[str, Any]], prompts: Prompts, dedup: str
) -> list[dict[str, Any]]:
    """The references, then the kept candidates that do not repeat their prompt's reference
    (or each other) under ``dedup`` (``selection.dedup``)."""
    rows = reference_rows(prompts) + [{**r, "source": "accepted"} for r in kept]
    keep = deduplicate(
        [r["prompt_id"] for r in rows], [r["completion"] for r in rows], [True] * len(rows),
        mode=dedup,
    )  # fmt: skip
    return [r for r, k in zip(rows, keep) if k]


def reference_selection(prompts: Prompts, n: int) -> RoundSelection:
    """The round's record under ``train_on: reference``: nothing generated, every prompt's
    reference kept (``n``: the n of distinct-n)."""
    solutions = prompts.solutions or []
    return RoundSelection(
        candidates=0,
        prompts=len(prompts),
        failed=0,
        timeouts=0,
        failures="",
        accepted=0,
        kept=len(solutions),
        prompts_kept=len(solutions),
        distinct=distinct_n(solutions, n),
        rule={"rule": "reference"},
    )


def write_references(rdir: Path, prompts: Prompts, cfg: Any) -> RoundSelection:
    """``train_on: reference``: write the round's fine-tuning set (the reference solutions)
    and its record, once; a resumed run reads them back."""
    path = rdir / "selection.json"
    if not path.is_file():
        rdir.mkdir(parents=True, exist_ok=True)
        records = chat_records(reference_rows(prompts), cfg.data.system_prompt)
        atomic_write_jsonl(rdir / "accepted.jsonl", records)
        reference_selection(prompts, cfg.eval.distinct_n).write(path)
    return RoundSelection.read(path)


def round_records(
    out: Path, rounds: Iterable[int], data_file: str, prompts: Prompts
) -> list[dict[str, Any]]:
    """The records a fine-tuning stage reads: ``data_file`` of each of ``rounds`` (the last
    one, or every one so far with ``data_mode: accumulate``); none is an error saying what
    to change."""
    rounds = list(rounds)
    records = [rec for r in rounds for rec in read_jsonl(out / f"round_{r}" / data_file)]
    rnd = rounds[-1]
    if data_file == "accepted.jsonl":  # once a round (the control draws on the same rows)
        warn_duplicates(records, prompts, rnd)
    if not records:
        stats = RoundSelection.read(out / f"round_{rnd}" / "selection.json")
        failed = f" {stats.failures}." if stats.failed else ""
        raise NothingAcceptedError(
            f"round {rnd}: no candidate was accepted, so there is nothing to fine-tune on."
            f"{failed} Sample more (generation.k, more prompts), raise "
            "generation.temperature, or use a looser rule (selection.rule: best_of_k or "
            "top_fraction)."
        )
    return records
