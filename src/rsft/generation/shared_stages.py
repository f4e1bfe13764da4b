"""Stages one run can take from another instead of computing them again.

The arms of a comparison differ in what they do with the candidates (the rule, the
fine-tuning set), not in the base model's held-out evaluation or in round 1's candidates,
which the base model draws before any rule applies. A run given ``donors`` (other run
folders, e.g. the earlier arms of the same seed) copies those files from the first donor
whose stage had the same inputs: the same options (all but those the stage does not read)
and the same data (digests of the files it reads). The copy is what this run would have
computed (on seeded engines bit for bit; on vLLM's CPU engine, whose sampling is not
seed-reproducible, the arms then share the very same candidates, so they differ only by
what they do with them). A donor whose stage does not match is never used.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsft.atomic import atomic_target
from rsft.same_run import as_saved, without

# What neither shared stage reads: how candidates are chosen and learned from.
_LEARNING = (
    "selection",
    "sft",
    "start_from",
    "data_mode",
    "train_on",
    "data.solution_column",
)


@dataclass(frozen=True)
class Stage:
    name: str
    files: tuple[str, ...]  # relative to the run folder; the first one marks it done
    ignores: tuple[str, ...]  # options (dotted) the stage does not read
    data: tuple[str, ...]  # the data fields whose digests it depends on


BASE_EVAL = Stage(
    "the base model's held-out evaluation",
    ("round_0/eval.json", "round_0/eval_generations.jsonl"),
    _LEARNING
    + ("data.train", "data.max_train_prompts", "generation.k", "generation.chunk_prompts"),
    ("data.eval", "model.path"),
)
FIRST_CANDIDATES = Stage(
    "round 1's candidates",
    ("round_1/candidates.jsonl",),
    _LEARNING + ("eval", "verifier", "data.eval", "data.max_eval_prompts", "data.group_column"),
    ("data.train", "model.path"),
)


def stage_key(stage: Stage, options: dict[str, Any], digest: dict[str, Any]) -> str:
    """A hash of what ``stage`` reads: a run's identity options and its data digests."""
    own = without(as_saved(options), stage.ignores)
    data = {k: v for k, v in digest.items() if k in stage.data}
    text = json.dumps({"options": own, "data": data}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def borrow(
    stage: Stage, out: Path, donors: Sequence[Path], options: dict[str, Any], digest: dict
) -> Path | None:
    """Copy ``stage``'s files into ``out`` from the first donor whose stage had the same
    inputs (its ``state.json``); returns that donor, or None (nothing copied)."""
    if (out / stage.files[0]).is_file():
        return None
    key = stage_key(stage, options, digest)
    for donor in donors:
        state = Path(donor) / "state.json"
        if not state.is_file() or not all((Path(donor) / f).is_file() for f in stage.files):
            continue
        recorded = json.loads(state.read_text(encoding="utf-8"))
        if stage_key(stage, recorded.get("config", {}), recorded.get("data", {})) != key:
            continue
        for name in reversed(stage.files):  # the marker last: a kill leaves it undone
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            with atomic_target(out / name) as tmp:
                shutil.copyfile(Path(donor) / name, tmp)
        return Path(donor)
    return None
