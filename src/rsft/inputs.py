"""Python objects given in place of paths: a model object, a ``datasets.Dataset``, rows.

rsft's stages read their inputs from disk (vLLM engines and the SFT stage load a model folder,
a resumed run checks the digest of each file it read: :mod:`rsft.same_run`), so an object is
written once into ``<output_dir>/inputs/`` and the run goes on from that path, as if the
config had named it. Both levels take objects this way (:mod:`rsft.generation.inputs`,
:mod:`rsft.training.inputs`). Each is written atomically (a temporary name, then a rename). A
rerun with the same inputs has the same digests (a table's bytes; a model folder is kept as it
is when the new one holds the same files, since a folder's digest reads its mtimes), so the
run's identity stays the same and the run resumes. Other inputs replace the old ones, and
the resume check then refuses them, as it would an edited file.

A ``datasets.Dataset`` is written as parquet, which keeps its features (images as bytes,
lists, class labels); a list of rows as JSON Lines.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rsft.atomic import atomic_target, atomic_write_text
from rsft.config import ConfigError

INPUTS = "inputs"  # the folder of output_dir the objects are written to


def inputs_dir(output_dir: str | os.PathLike[str]) -> Path:
    return Path(output_dir).expanduser() / INPUTS


def is_path(value: Any) -> bool:
    """Whether ``value`` names a file, folder or hub model (rather than being an object)."""
    return isinstance(value, (str, os.PathLike))


def model_input(
    output_dir: str | os.PathLike[str],
    model: Any,
    processor: Any,
    *,
    needs_processor: bool,
    write: bool = True,
) -> str:
    """``model.path`` for ``model``: a path as given, an object written to ``inputs/model``.

    ``write=False`` (the other processes of a distributed run) gives the path only: the main
    process writes it."""
    if is_path(model):
        return str(model)
    folder = inputs_dir(output_dir) / "model"
    if write:
        save_model(model, processor, folder, needs_processor=needs_processor)
    return str(folder)


def table_inputs(
    output_dir: str | os.PathLike[str], tables: Mapping[str, Any], *, write: bool = True
) -> dict[str, str]:
    """The path of each table given (its name, e.g. ``train`` → a path or an object; None
    skipped): a path as given, an object written to ``inputs/<name>.parquet`` or ``.jsonl``."""
    paths = {}
    for name, data in tables.items():
        if data is None or is_path(data):
            if data is not None:
                paths[name] = str(data)
            continue
        stem = inputs_dir(output_dir) / name
        file = stem.with_suffix(".parquet" if _is_dataset(data) else ".jsonl")
        paths[name] = str(save_table(data, file, f"{name}=") if write else file)
    return paths


def save_model(model: Any, processor: Any, folder: Path, *, needs_processor: bool = True) -> Path:
    """A transformers model object (and its tokenizer or image processor) as a model folder."""
    if not hasattr(model, "save_pretrained"):
        raise ConfigError(
            f"model: a {type(model).__name__} cannot be written as a model folder; give a "
            "transformers model object (it has save_pretrained), a model folder, a hub name, "
            "or (for a torch module) its class's import path 'pkg.module:Class' as model.path "
            "with model.kwargs."
        )
    if processor is None:
        processor = _processor_of(model, needs_processor)

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        if processor is not None:
            processor.save_pretrained(str(tmp))

    return _write_once(folder, write)


def _processor_of(model: Any, needed: bool) -> Any:
    """The tokenizer or image processor saved beside the model's own folder, when it came
    from one."""
    from rsft.models.loading import load_processor

    source = getattr(model, "name_or_path", "") or ""
    processor = load_processor(source) if source and Path(source).is_dir() else None
    if processor is None and needed:
        raise ConfigError(
            "model: a model object needs its tokenizer (tokenizer=...), which rsft saves beside "
            "it for generation and fine-tuning."
        )
    return processor


def _is_dataset(data: Any) -> bool:
    return callable(getattr(data, "to_parquet", None))  # datasets.Dataset


def save_table(data: Any, file: Path, what: str) -> Path:
    """A ``datasets.Dataset`` (as parquet) or a list of row mappings (as JSON Lines)."""
    # A file's digest is of its bytes (rsft.same_run), and both writers give the same bytes
    # for the same rows, so writing them again keeps the run's identity.
    if _is_dataset(data):
        with atomic_target(file) as tmp:
            data.to_parquet(str(tmp))
        return file
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in _rows(data, what))
    return atomic_write_text(file, text)


def _rows(data: Any, what: str) -> list[dict[str, Any]]:
    if isinstance(data, Sequence) and all(isinstance(r, Mapping) for r in data):
        return [dict(r) for r in data]
    raise ConfigError(
        f"{what}: a {type(data).__name__} is not a data set rsft can read; give a file path, "
        "a datasets.Dataset, or a list of rows (dicts)."
    )


def _write_once(target: Path, write: Any) -> Path:
    """Write the folder ``target`` with ``write(tmp)`` at a temporary name beside it; keep
    the one already there when the new one holds the same files (a folder's digest is of its
    files' mtimes), else swap the new one in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)
    tmp = Path(folder) / target.name
    try:
        tmp.mkdir()
        write(tmp)
        if _same(tmp, target):
            return target
        if target.is_dir():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
        return target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _same(new: Path, old: Path) -> bool:
    if not old.is_dir():
        return False
    compare = filecmp.dircmp(new, old)
    if compare.left_only or compare.right_only or compare.funny_files or compare.subdirs:
        return False
    _, mismatch, errors = filecmp.cmpfiles(new, old, compare.common_files, shallow=False)
    return not mismatch and not errors
