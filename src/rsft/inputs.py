"""Python objects given in place of paths: a model object, a ``datasets.Dataset``.

rsft's stages read their inputs from disk (vLLM engines and the SFT stage load a model folder,
a resumed run checks the digest of each file it read: :mod:`rsft.same_run`), so an object is
written once into ``<output_dir>/inputs/`` and the run goes on from that path, as if the
config had named it. Each is written atomically (a temporary name, then a rename). A rerun
with the same inputs has the same digests (a table's bytes; a model folder is kept as it is
when the new one holds the same files, since a folder's digest reads its mtimes), so the
run's identity stays the same and the run resumes. Other inputs replace the old ones, and
the resume check then refuses them, as it would an edited file.
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

from rsft.atomic import atomic_write_text
from rsft.config import ConfigError

INPUTS = "inputs"  # the folder of output_dir the objects are written to


def inputs_dir(output_dir: str | os.PathLike[str]) -> Path:
    return Path(output_dir).expanduser() / INPUTS


def is_path(value: Any) -> bool:
    """Whether ``value`` names a file, folder or hub model (rather than being an object)."""
    return isinstance(value, (str, os.PathLike))


def save_model(model: Any, tokenizer: Any, folder: Path) -> Path:
    """A transformers model object (and its tokenizer) as a model folder at ``folder``."""
    if not hasattr(model, "save_pretrained"):
        raise ConfigError(
            f"model: a {type(model).__name__} cannot be written as a model folder; give a "
            "transformers model object (it has save_pretrained), a model folder, or a hub name."
        )
    if tokenizer is None:
        tokenizer = _tokenizer_of(model)

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))

    return _write_once(folder, write)


def _tokenizer_of(model: Any) -> Any:
    """The tokenizer saved beside the model's own folder, when it came from one."""
    source = getattr(model, "name_or_path", "") or ""
    if source and Path(source).is_dir():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(source)
    raise ConfigError(
        "model: a model object needs its tokenizer (tokenizer=...), which rsft saves beside it "
        "for generation and fine-tuning."
    )


def save_table(data: Any, file: Path, what: str) -> Path:
    """A ``datasets.Dataset`` or a list of row mappings as a JSON Lines file at ``file``."""
    # A file's digest is of its bytes (rsft.same_run), so writing the same rows again keeps
    # the run's identity: the project's atomic writer serves, no keep-if-same step needed.
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in _rows(data, what))
    return atomic_write_text(file, text)


def _rows(data: Any, what: str) -> list[dict[str, Any]]:
    to_list = getattr(data, "to_list", None)  # datasets.Dataset, pandas-free
    if callable(to_list):
        return list(to_list())
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
