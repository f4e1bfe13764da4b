"""Which checkpoint a run may resume, and what it must match: the config and the data.

Every checkpoint records the run's config (less the options that may change between a run and
its resumption) and a digest of the data it names. Resuming with another config or edited data
would mix two runs in one result, so it is refused with a message naming what changed; so is
starting over in an ``output_dir`` that holds a finished run's ``results.json`` (with
``resume: auto`` and no checkpoint to resume, the results would be silently replaced).

What the data digest covers (``data.train``, ``data.eval``, ``data.test``,
``rejection.target_unlabelled`` and a local ``model.path``):

- a file (a CSV/JSON/parquet table): the SHA-256 of its bytes;
- a folder (images, a saved dataset, a model): every file's relative path, size and
  modification time, so adding, removing, replacing or editing a file is seen without
  reading every image. Links are followed (the files of a linked folder count, as they are
  read); a folder that links back above itself is refused rather than walked forever.

Not covered: the code an import path names (a model class, a weight or verifier function).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from rsft.config import ConfigError, to_dict
from rsft.data.walk import walk_files
from rsft.training import checkpoint as ckpt

# Options that may change between a run and its resumption without changing the result.
RESUMABLE_CHANGES = (
    "resume",
    "progress",
    "num_workers",
    "eval_batch_size",
    "output_dir",
    "on_divergence",
    "divergence_factor",
)

# The config fields that name data, as written in a config file.
DATA_FIELDS = (
    "data.train",
    "data.eval",
    "data.test",
    "rejection.target_unlabelled",
    "model.path",
)


def fingerprint(config: Any) -> dict:
    """The config a checkpoint must have been written with, for this run to resume it."""
    d = to_dict(config)
    for key in RESUMABLE_CHANGES:
        d.pop(key, None)
    return d


def data_digest(config: Any) -> dict[str, dict]:
    """A digest of each local file or folder the config names (see the module docstring)."""
    out = {}
    for field in DATA_FIELDS:
        section, name = field.split(".")
        value = getattr(getattr(config, section), name)
        if value and Path(value).expanduser().exists():  # model.path may be an import path
            out[field] = path_digest(Path(value).expanduser())
    return out


def path_digest(path: Path) -> dict[str, Any]:
    """SHA-256 of a file's bytes; for a folder, of its files' relative paths, sizes, mtimes."""
    if path.is_file():
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return {"file": str(path), "bytes": path.stat().st_size, "sha256": h.hexdigest()}
    h, count, total = hashlib.sha256(), 0, 0
    for f in walk_files(path):  # what the image folder scan reads: links in, loops refused
        st = f.stat()
        h.update(f"{f.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        count, total = count + 1, total + st.st_size
    return {"folder": str(path), "files": count, "bytes": total, "listing_sha256": h.hexdigest()}


def find_resumable(config: Any, digest: dict[str, dict]) -> Path | None:
    """The checkpoint this run continues from (None: start from step 0), checked to be this
    run's: the same config and the same data. Raises ConfigError naming what differs."""
    out = Path(config.output_dir)
    if config.resume == "never":
        return None
    path = ckpt.checkpoint_to_resume(out)
    if path is None:
        if (out / "results.json").is_file():
            raise ConfigError(
                f"{out} holds a finished run's results.json but no checkpoint to resume from, "
                "and starting over would replace those results. Use a new output_dir, or set "
                "resume: never to start over and replace them."
            )
        return None
    saved = json.loads((path / "trainer_state.json").read_text())
    if saved.get("config") != fingerprint(config):
        raise ConfigError(
            f"{out} holds a checkpoint of a run with a different config. Use a new "
            "output_dir, delete the old one, or set resume: never to start over."
        )
    then = saved.get("data", {})
    for field in sorted(set(digest) | set(then)):
        if then.get(field) != digest.get(field):
            raise ConfigError(
                f"{field} ({_describe(digest.get(field) or then.get(field))}) changed since "
                f"the checkpoint {path} was written ({_change(then.get(field), digest.get(field))})"
                ": resuming would train one run on two data sets. Restore the data, or start "
                "over: a new output_dir, or resume: never."
            )
    return path


def _describe(d: dict) -> str:
    return d.get("file") or d.get("folder") or "?"


def _change(then: dict | None, now: dict | None) -> str:
    if then is None or now is None:
        return "it was not there then" if then is None else "it is not there now"
    if "file" in now:
        return f"its SHA-256 differs; {then.get('bytes')} bytes then, {now['bytes']} now"
    return (
        f"files added, removed or modified: {then.get('files')} files of {then.get('bytes')} "
        f"bytes then, {now['files']} of {now['bytes']} now"
    )
