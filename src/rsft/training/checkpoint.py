"""Atomic, resumable checkpoints: safetensors weights, tensors-only optimizer state, JSON.

A run killed at any moment leaves a complete checkpoint that resuming finds:

1. every save gets a folder name never used before (``step-<step>-save<n>``, n counting the
   saves in ``output_dir``), so a save never replaces or deletes an existing checkpoint;
2. the files are written into ``.tmp-<name>``, flushed to disk, and listed with their sizes in
   ``manifest.json``, written last: a checkpoint is complete when its manifest is there and
   every file it lists has the listed size;
3. the folder is renamed into place (the commit), then ``latest`` is replaced atomically to
   name it (for people and tools: resuming does not depend on it);
4. only then are older checkpoints pruned (never the newest complete one, nor the one
   ``latest`` names), each renamed out of the way before it is deleted, so a half-deleted
   folder never looks like a checkpoint.

Resuming takes the newest complete checkpoint (the highest save number); if checkpoints exist
but none is complete, it stops with a message rather than silently start over. Nothing is
unpickled on load (``torch.load(weights_only=True)``): a checkpoint whose optimizer or
scheduler state holds objects is refused, naming the file. A save that fills the disk
removes its temporary folder and stops with :class:`~rsft.atomic.DiskFullError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from rsft.atomic import DiskFullError, atomic_write_text, fsync_dir, writing
from rsft.pickles import load_tensors

LATEST = "latest"
MANIFEST = "manifest.json"
_NAME = re.compile(r"step-(\d+)-save(\d+)")
# Folders of saves in progress (.tmp-) and of checkpoints being deleted (.del-).
_SCRATCH = (".tmp-", ".del-")


class CheckpointError(ValueError):
    """``output_dir`` holds checkpoints, but none of them can be resumed."""


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def checkpoint_name(output_dir: str | Path, step: int) -> str:
    """A name no folder in ``output_dir/checkpoints`` has had: the save counter goes up by one
    past every checkpoint there, finished, half-written or half-deleted."""
    root = checkpoint_dir(output_dir)
    saves = [int(m[2]) for m in map(_match, root.iterdir() if root.is_dir() else []) if m]
    return f"step-{step:08d}-save{max(saves, default=0) + 1:06d}"


def _match(path: Path) -> re.Match | None:
    name = path.name
    for prefix in _SCRATCH:
        name = name.removeprefix(prefix)
    return _NAME.fullmatch(name)


def _save_number(path: Path) -> int:
    m = _NAME.fullmatch(path.name)
    return int(m[2]) if m else -1


def is_complete(path: Path) -> bool:
    """All the files the checkpoint's manifest lists are there, at their listed sizes."""
    try:
        files = json.loads((path / MANIFEST).read_text())["files"]
        return all((path / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _committed(root: Path) -> list[Path]:
    """Checkpoint folders renamed into place (complete or not), oldest save first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.fullmatch(p.name)]
    return sorted(found, key=_save_number)


def _pointed(root: Path) -> Path | None:
    """The folder ``latest`` names (None without a readable ``latest``)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return root / (root / LATEST).read_text().strip()
    return None


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (None if there is none)."""
    complete = [p for p in _committed(checkpoint_dir(output_dir)) if is_complete(p)]
    return complete[-1] if complete else None


def checkpoint_to_resume(output_dir: str | Path) -> Path | None:
    """:func:`latest_checkpoint`; None when no save ever finished; :class:`CheckpointError`
    when checkpoints exist but none is complete. Warns when ``latest`` names a checkpoint
    that is gone or incomplete: something outside rsft changed the folder."""
    root = checkpoint_dir(output_dir)
    if not root.is_dir():
        return None
    path = latest_checkpoint(output_dir)
    pointed = _pointed(root)
    if path is not None and pointed is not None and not is_complete(pointed):
        warnings.warn(
            f"{root / LATEST} names {pointed.name}, which is missing or incomplete; resuming "
            f"from the newest complete checkpoint, {path.name}.",
            stacklevel=2,
        )
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if path is None and (found or pointed is not None):
        raise CheckpointError(
            f"{root} holds checkpoints but none is complete: each lacks its {MANIFEST} or a "
            f"file it lists, or has one truncated ({', '.join(found) or 'no folders left'}). "
            "Restore the missing files, or start over: delete that folder, set resume: never, "
            "or use a new output_dir."
        )
    return path


def begin_checkpoint(output_dir: str | Path, name: str) -> Path:
    """A fresh temporary folder to fill; :func:`commit_checkpoint` moves it into place.
    Leftovers of saves or deletions that a kill interrupted are removed first."""
    root = checkpoint_dir(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    for p in root.iterdir():
        if p.name.startswith("."):  # only rsft writes here: hidden entries are its scratch
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
    tmp = root / f".tmp-{name}"
    tmp.mkdir()
    return tmp


def write_rng(tmp: Path, rank: int) -> None:
    tensors = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    path = tmp / f"rng-{rank}.safetensors"
    with writing(path):
        safetensors.torch.save_file(tensors, str(path))


def write_training_state(
    tmp: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, state: dict
) -> None:
    """Fill the save in progress ``tmp``; a full disk removes it (its space is needed) and
    raises :class:`~rsft.atomic.DiskFullError` naming the file."""
    try:
        with writing(tmp / "model.safetensors"):
            safetensors.torch.save_model(model, str(tmp / "model.safetensors"))
        # Optimizer and scheduler state are tensors and numbers only: weights_only loads them.
        _save_tensors(optimizer.state_dict(), tmp / "optimizer.pt")
        if scheduler is not None:  # gradient-free methods have none
            _save_tensors(scheduler.state_dict(), tmp / "scheduler.pt")
        loop = tmp / "trainer_state.json"
        with writing(loop), open(loop, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(state))
    except DiskFullError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _save_tensors(obj: Any, path: Path) -> None:
    """``torch.save`` through a Python file: a full disk is then an OSError, not torch's
    "unexpected pos" with no cause."""
    with writing(path), open(path, "wb") as fh:
        torch.save(obj, fh)


def commit_checkpoint(output_dir: str | Path, tmp: Path, name: str, keep: int = 2) -> Path:
    """Seal ``tmp`` with its manifest, rename it into place, point ``latest`` at it, prune.

    Until the rename, resuming finds the previous checkpoint, untouched; after it, this one.
    """
    root = checkpoint_dir(output_dir)
    files = {}
    with writing(tmp):
        for f in sorted(tmp.iterdir()):
            with open(f, "rb") as fh:  # on disk before the manifest says the file is there
                os.fsync(fh.fileno())
            files[f.name] = f.stat().st_size
    atomic_write_text(tmp / MANIFEST, json.dumps({"files": files}, indent=1))
    final = root / name
    os.replace(tmp, final)  # the commit
    fsync_dir(root)
    atomic_write_text(root / LATEST, name)
    prune_checkpoints(root, keep)
    return final


def prune_checkpoints(root: Path, keep: int) -> None:
    """Delete all but the ``keep`` (at least 1) newest complete checkpoints, and every
    incomplete one; the one ``latest`` names stays too."""
    pointed = _pointed(root)
    complete = [p for p in _committed(root) if is_complete(p)]
    stay = set(complete[-max(keep, 1) :]) | {pointed}
    for old in _committed(root):
        if old not in stay:
            trash = root / f".del-{old.name}"
            os.replace(old, trash)  # never a half-deleted folder under a checkpoint's name
            shutil.rmtree(trash)


def load_training_state(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, rank: int
) -> dict:
    fix = (
        f"Delete the checkpoint folder {path} and run again: the run then resumes from the "
        "checkpoint before it, if there is one; or start over (resume: never, or a new "
        "output_dir)."
    )
    safetensors.torch.load_model(model, str(path / "model.safetensors"))
    optimizer.load_state_dict(load_tensors(path / "optimizer.pt", fix))
    if scheduler is not None:
        scheduler.load_state_dict(load_tensors(path / "scheduler.pt", fix))
    rng_file = path / f"rng-{rank}.safetensors"
    if rng_file.is_file():
        rng = safetensors.torch.load_file(str(rng_file))
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return json.loads((path / "trainer_state.json").read_text())
