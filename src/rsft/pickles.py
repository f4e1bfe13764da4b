"""torch files (``.pt``, ``.pth``, ``.bin``) read without running the code a pickle can hold.

A checkpoint's optimizer and scheduler states are pickles. rsft and transformers load them
with ``torch.load(weights_only=True)``, which refuses any object beyond tensors, numbers and
containers: unpickling an object runs code it names. torch's refusal suggests loading the
file with ``weights_only=False``; here it becomes :class:`UnsafePickleError`, naming the file
and what it holds, and saying how to resume without it.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

PICKLE_SUFFIXES = (".pt", ".pth", ".bin")
# transformers pickles its TrainingArguments into every checkpoint; resuming never loads it.
NOT_LOADED = ("training_args.bin",)


class UnsafePickleError(ValueError):
    """A torch file holds pickled objects, not only tensors and numbers: it is not loaded."""


def unsafe_globals(path: Path) -> list[str]:
    """The classes and functions the pickle in ``path`` names beyond what weights_only allows
    (read from its opcodes, nothing run); [] when torch cannot tell."""
    find = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)  # torch 2.6+
    if find is None:
        return []
    try:
        return list(find(str(path)))
    except Exception:  # not a torch zip file, or unreadable: the refusal stands without names
        return []


def unsafe_pickle_error(path: Path, fix: str) -> UnsafePickleError:
    names = unsafe_globals(path)
    holds = f" ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})" if names else ""
    return UnsafePickleError(
        f"{path} holds pickled Python objects{holds}, not only tensors and numbers: rsft will "
        "not unpickle it, because unpickling runs the code it names. A checkpoint saved by "
        f"rsft or transformers holds no such objects, so this file was changed. {fix}"
    )


def load_tensors(path: Path, fix: str) -> Any:
    """``torch.load(path, weights_only=True)``; :class:`UnsafePickleError` for a file that
    holds objects (``fix``: what the user can do instead)."""
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        raise unsafe_pickle_error(path, fix) from err


def first_unsafe_file(folder: Path) -> Path | None:
    """The first torch file in ``folder`` that holds objects weights_only refuses."""
    for path in sorted(folder.iterdir()):
        if path.name in NOT_LOADED or path.suffix not in PICKLE_SUFFIXES:
            continue
        if path.is_file() and unsafe_globals(path):
            return path
    return None


@contextlib.contextmanager
def refusing_unsafe_pickles(folder: Path | None, fix: str) -> Iterator[None]:
    """Turn a refused pickle of the checkpoint ``folder`` that a library loads (transformers'
    Trainer resuming) into :class:`UnsafePickleError` naming the file."""
    try:
        yield
    except pickle.UnpicklingError as err:
        if folder is None:
            raise
        bad = first_unsafe_file(folder) if folder.is_dir() else None
        raise unsafe_pickle_error(bad or folder, fix) from err
