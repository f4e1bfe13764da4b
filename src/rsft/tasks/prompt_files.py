"""Writing an embedded LLM task's prompt files, once per set of options.

Each task (:mod:`rsft.tasks.arithmetic`, :mod:`rsft.tasks.word_problems`) makes its
training and held-out rows from a seed; this writes them as ``train.jsonl`` and
``eval.jsonl`` with a manifest of the options, so a second ``rsft prepare`` with the same
options reuses the files (and the run that read them resumes), and converts the model once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsft import __version__
from rsft.atomic import atomic_write_jsonl, atomic_write_text


def prepare_prompts(
    out: str | Path,
    options: dict[str, Any],
    make: Callable[[], tuple[list[dict], list[dict]]],
    *,
    with_model: bool,
    force: bool,
) -> dict[str, str]:
    """Write ``make()``'s training and held-out rows under ``out`` (unless the manifest shows
    the same ``options``), and SmolLM2 in ``out/model`` when ``with_model``."""
    out = Path(out)
    manifest = out / "manifest.json"
    options = {**options, "rsft_version": __version__}
    paths = {"train": str(out / "train.jsonl"), "eval": str(out / "eval.jsonl")}
    fresh = manifest.is_file() and json.loads(manifest.read_text()).get("options") == options
    if force or not fresh:
        train, held_out = make()
        for name, rows in (("train", train), ("eval", held_out)):
            atomic_write_jsonl(paths[name], rows)
        atomic_write_text(manifest, json.dumps({"options": options, "paths": paths}, indent=2))
    if with_model:
        from rsft.tasks.arithmetic import convert_smollm2

        paths["model"] = str(convert_smollm2(out / "model", force=force))
    return paths
