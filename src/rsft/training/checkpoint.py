"""Atomic, resumable checkpoints: safetensors weights, tensors-only optimizer state, JSON.

A checkpoint is written into a temporary folder and renamed into place, then ``latest`` is
replaced atomically: a run killed at any moment leaves the previous checkpoint intact.
Nothing is unpickled on load (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from rsft.atomic import atomic_write_text

LATEST = "latest"


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    root = checkpoint_dir(output_dir)
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / "trainer_state.json").is_file() else None


def begin_checkpoint(output_dir: str | Path, name: str) -> Path:
    """A fresh temporary folder to fill; :func:`commit_checkpoint` moves it into place."""
    root = checkpoint_dir(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def write_rng(tmp: Path, rank: int) -> None:
    tensors = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, str(tmp / f"rng-{rank}.safetensors"))


def write_training_state(
    tmp: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, state: dict
) -> None:
    save_model(model, str(tmp / "model.safetensors"))
    # Optimizer and scheduler state are tensors and numbers only: weights_only loading works.
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    if scheduler is not None:  # gradient-free methods have none
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(state))


def commit_checkpoint(output_dir: str | Path, tmp: Path, name: str, keep: int = 2) -> Path:
    root = checkpoint_dir(output_dir)
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_text(root / LATEST, name)
    done = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
    )
    for old in done[:-keep]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_training_state(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, rank: int
) -> dict:
    load_model(model, str(path / "model.safetensors"))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    if scheduler is not None:
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng_file = path / f"rng-{rank}.safetensors"
    if rng_file.is_file():
        rng = load_file(str(rng_file))
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return json.loads((path / "trainer_state.json").read_text())
