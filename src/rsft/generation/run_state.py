"""The bookkeeping of an ``rsft rft`` run in its ``output_dir``: is it the same run, or a fresh one.

``state.json`` records the options that change what the run computes (their hash, and the
options themselves, so that a refusal can name what changed) and a digest of the prompt files
and of the model folder (:mod:`rsft.same_run`). ``resume: auto`` continues only a run of the
same options and data; ``resume: never`` deletes what an earlier run wrote (and nothing
else) and starts over.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rsft import __version__
from rsft.atomic import atomic_write_text
from rsft.config import ConfigError, to_dict
from rsft.generation.config import RFTConfig
from rsft.same_run import (
    as_saved,
    check_same_data,
    data_digest,
    describe_changes,
    run_identity,
    without,
)

# The files and folders a run reads, whose edits between a kill and the rerun are refused.
DATA_FIELDS = ("data.train", "data.eval", "model.path")

# What the pipeline writes at the top of output_dir, besides its round_<r> folders:
# `resume: never` deletes these and nothing else (a lock file, the user's own files stay).
RUN_FILES = ("results.json", "summary.md", "pass_at_1.png", "config.yaml")
RUN_FOLDERS = ("engines",)
DELETING = ".del-"  # a folder being deleted is renamed to this prefix + its name first


# Options added after runs were first recorded, with their defaults: left out of the hash
# when at the default, so a run from before they existed (which computed the same) resumes.
LATER_OPTIONS: dict[str, Any] = {
    "train_on": "accepted",
    "model.revision": None,
    "data.solution_column": None,
    "data.group_column": None,
    "data.train_split": "train",
    "data.eval_split": "test",
    "data.subset": None,
    "data.revision": None,
    "data.answer_pattern": None,
}


def _get(options: dict[str, Any], name: str, default: Any) -> Any:
    node: Any = options
    for key in name.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def options_hash(options: dict[str, Any]) -> str:
    """A short hash of a run's identity (:func:`rsft.same_run.run_identity`).

    ``eval.threshold`` is left out when it equals ``selection.threshold``, and ``sft.trl``
    when it is empty: the run then computes what it did before these options existed, and a
    run from then hashes as it did, so it resumes."""
    ev, sft = options["eval"], options["sft"]
    if ev.get("threshold") == options["selection"]["threshold"]:
        options = {**options, "eval": {k: v for k, v in ev.items() if k != "threshold"}}
    if not sft.get("trl"):  # likewise sft.trl, when it passes nothing to TRL
        options = {**options, "sft": {k: v for k, v in sft.items() if k != "trl"}}
    at_default = [k for k, v in LATER_OPTIONS.items() if _get(options, k, v) == v]
    options = without(as_saved(options), at_default)
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]


def prepare_output(
    cfg: RFTConfig, out: Path, say: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, dict]]:
    """Check that ``out`` is empty or holds this very run (``resume: auto``), or clear the
    earlier run (``resume: never``); then record this run's options and data (returned:
    its identity options and data digests)."""
    options, digest = run_identity(cfg), data_digest(cfg, DATA_FIELDS)
    state_path = out / "state.json"
    if cfg.resume == "never":
        removed = start_over(out)
        if removed:
            say(f"resume: never: deleted the earlier run's {', '.join(removed)} in {out}")
    elif state_path.is_file():
        check_same_run(json.loads(state_path.read_text()), options, digest, out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg)))
    state = {"config_hash": options_hash(options), "config": options, "data": digest}
    write_json(state_path, {**state, "rsft_version": __version__})
    return options, digest


def check_same_run(
    state: dict[str, Any], options: dict[str, Any], digest: dict[str, dict], out: Path
) -> None:
    """Raise ConfigError when ``state`` (an earlier run's state.json) is of other options or
    other data, naming the options or the file that changed."""
    if state.get("config_hash") != options_hash(options):
        # A state.json from before rsft kept the options has only the hash to compare.
        changes = describe_changes(state["config"], options) if "config" in state else ""
        raise ConfigError(
            f"{out} holds a run with different options{f' ({changes})' if changes else ''}; "
            "resuming it would mix two runs. Use another output_dir, or resume=never to "
            "start over."
        )
    # A run from before rsft recorded digests resumes unchecked; from now on it is checked.
    if "data" in state:
        check_same_data(state["data"], digest, f"the run in {out} started")


def start_over(out: Path) -> list[str]:
    """Delete what an earlier run wrote in ``out``: its round_<r> folders, engine logs,
    results, summary, plot, config and, last, its state.json. Returns the names deleted."""
    if not out.is_dir():
        return []
    for leftover in out.glob(f"{DELETING}*"):  # a deletion that a kill interrupted
        if _ours(leftover.name[len(DELETING) :]):
            shutil.rmtree(leftover)
    rounds = sorted((p for p in out.iterdir() if _is_round(p.name)), key=lambda p: int(p.name[6:]))
    names = [p.name for p in rounds] + list(RUN_FOLDERS + RUN_FILES) + ["state.json"]
    removed = []
    for name in names:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            trash = out / f"{DELETING}{name}"
            os.replace(path, trash)  # never a half-deleted round under its own name
            shutil.rmtree(trash)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def _is_round(name: str) -> bool:
    return name.startswith("round_") and name[6:].isdigit()


def _ours(name: str) -> bool:
    return _is_round(name) or name in RUN_FOLDERS


def finished_as(cfg: RFTConfig, out: Path) -> bool:
    """Whether ``out`` holds a finished run (results.json) of this very run: the same
    identity, data and rsft version (what ``rsft compare`` reuses)."""
    state_path = out / "state.json"
    if not ((out / "results.json").is_file() and state_path.is_file()):
        return False
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        rounds = len(json.loads((out / "results.json").read_text(encoding="utf-8"))["rounds"])
    except (ValueError, KeyError, TypeError):
        return False
    return (
        rounds == cfg.rounds  # more rounds continue a run: it is not finished
        and state.get("rsft_version") == __version__
        and state.get("config_hash") == options_hash(run_identity(cfg))
        and state.get("data") == data_digest(cfg, DATA_FIELDS)
    )
