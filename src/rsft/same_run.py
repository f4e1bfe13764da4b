"""Is this the same run? What a resumed run must match: its options and its data.

``rsft train`` (a checkpoint's ``trainer_state.json``) and ``rsft rft`` (``state.json``) record
the options that change what a run computes and a digest of each local file or folder it
reads. Resuming with other options or edited data would mix two runs in one result, so both
commands refuse it with the same messages, which name the option or the file that changed.

What a digest covers:

- a file (a CSV/JSON/parquet table, a prompt file): the SHA-256 of its bytes;
- a folder (images, a saved dataset, a model): every file's relative path, size and
  modification time, so adding, removing, replacing or editing a file is seen without
  reading every image. Links are followed (the files of a linked folder count, as they are
  read); a folder that links back above itself is refused rather than walked forever;
- a model named by Hub name (:mod:`rsft.hub`): its snapshot folder's, with its repo and
  commit; the run's identity names the model by its Hub name, wherever the cache is;
- a dataset named by Hub name: its repo, subset, split, the revision asked for, the commit
  read and ``datasets``' fingerprint of the split (:func:`rsft.hub.dataset_digest`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rsft.config import ConfigError, to_dict
from rsft.data.walk import walk_files
from rsft.hub import dataset_digest, is_hub_name, resolve_model, snapshot_origin

# How many changed options a message names with their values before it only counts them.
NAMED_CHANGES = 3

# The options that do not make a run another run, per config class (dotted names, as in a
# config file): where it writes, whether it resumes, how it reports, and how its work is
# spread over processes and engines. A resumed run may change them, and a finished run
# with other values is the same run (``rsft compare`` reuses it). Every other option is
# the run's identity.
NOT_IDENTITY: dict[str, tuple[str, ...]] = {
    "TrainConfig": (
        "output_dir",
        "resume",
        "progress",
        "num_workers",
        "eval_batch_size",
        "on_divergence",
        "divergence_factor",
        "report_to",  # where the run is logged, not what it computes
    ),
    "RFTConfig": (
        "output_dir",
        "resume",
        "progress",
        "rounds",  # a run with more rounds continues one with fewer
        "engine",  # where generation runs, not what it draws
        "sft.processes",  # the same global batch on any number of processes
        "sft.accelerate_config",
        "generation.template_timeout",  # a time limit, which changes no draw
        "report_to",
    ),
}

_UNSET = object()


def run_identity(config: Any) -> dict[str, Any]:
    """The options that make ``config``'s run the run it is, as they read back from JSON.

    The one answer to "is this the same run?": ``rsft train`` and ``rsft rft`` compare it
    with what a checkpoint or ``state.json`` recorded before resuming, and ``rsft compare``
    with a finished run's config before reusing it.
    """
    return identity_of(to_dict(config), type(config).__name__)


def identity_of(options: dict[str, Any], kind: str) -> dict[str, Any]:
    """:func:`run_identity` of a config of class ``kind`` written out as ``options`` (e.g.
    the config a results.json recorded). A model read from its snapshot folder in the
    Hugging Face cache is named by its Hub name: the same run before and after the name is
    resolved, wherever the cache is (its commit is in :func:`data_digest`)."""
    out = without(as_saved(options), NOT_IDENTITY[kind])
    model = out.get("model")
    if isinstance(model, dict) and isinstance(model.get("path"), str):
        model["path"] = snapshot_origin(Path(model["path"])).get("hub", model["path"])
    return out


def without(options: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """``options`` (as :func:`as_saved` gives them) less the dotted ``names``, in place."""
    for name in names:
        *sections, key = name.split(".")
        node = options
        for section in sections:
            node = node.get(section) or {}
        node.pop(key, None)
    return options


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


def data_digest(config: Any, fields: Sequence[str]) -> dict[str, dict]:
    """A digest of each local file or folder that the config's ``fields`` (``section.name``,
    as written in a config file) name, and of each Hub model or dataset they name by Hub
    name; a field that is unset or names no path is left out (``model.path`` may be an
    import path)."""
    out = {}
    for field in fields:
        section, name = field.split(".")
        options = getattr(config, section)
        value = getattr(options, name)
        if value and Path(value).expanduser().exists():
            path = Path(value).expanduser()
            out[field] = {**path_digest(path), **snapshot_origin(path)}
        elif is_hub_name(value) and (digest := _hub_digest(options, name, value)):
            out[field] = digest
    return out


def _hub_digest(options: Any, name: str, value: str) -> dict[str, Any] | None:
    """A Hub dataset's digest where its section names the split (``<name>_split``, beside
    ``subset`` and ``revision``: ``data.train_split``); a Hub model's, ``path`` of a section
    (with its ``revision``), from the snapshot folder it resolves to."""
    revision = getattr(options, "revision", None)
    split = getattr(options, f"{name}_split", None)
    if split is not None:
        return dataset_digest(value, split, getattr(options, "subset", None), revision)
    if name == "path":
        folder = resolve_model(value, revision)
        return {**path_digest(folder), **snapshot_origin(folder)}
    return None


def check_same_data(then: dict[str, dict], now: dict[str, dict], since: str) -> None:
    """Raise ConfigError naming the first field whose file or folder is not what it was
    ``since`` (e.g. "the checkpoint <folder> was written"), with the way out."""
    for field in sorted(set(now) | set(then)):
        if then.get(field) != now.get(field):
            raise ConfigError(
                f"{field} ({_describe(now.get(field) or then.get(field))}) changed since "
                f"{since} ({_change(then.get(field), now.get(field))}): resuming would mix "
                "two data sets in one run. Restore the data, or start over: a new "
                "output_dir, or resume: never."
            )


def changed_options(then: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted names (``seed``, ``sft.lr``) of the options whose values differ, sorted; a
    section is compared option by option, any other value as a whole."""
    names = []
    for key in sorted(set(then) | set(now)):
        old, new = then.get(key, _UNSET), now.get(key, _UNSET)
        if isinstance(old, dict) and isinstance(new, dict):
            names += changed_options(old, new, f"{prefix}{key}.")
        elif old != new:
            names.append(f"{prefix}{key}")
    return names


def describe_changes(then: dict[str, Any], now: dict[str, Any]) -> str:
    """``seed: 0 then, 1 now; sft.lr: 0.001 then, 0.0001 now`` for the first few changed
    options, and how many more there are; "" when none differs."""
    names = changed_options(then, now)
    parts = [
        f"{name}: {_value(then, name)} then, {_value(now, name)} now"
        for name in names[:NAMED_CHANGES]
    ]
    if len(names) > NAMED_CHANGES:
        parts.append(f"and {len(names) - NAMED_CHANGES} more")
    return "; ".join(parts)


def as_saved(obj: Any) -> Any:
    """``obj`` as it reads back from a JSON file (tuples become lists), for comparing."""
    return json.loads(json.dumps(obj))


def _value(options: dict[str, Any], name: str) -> str:
    value: Any = options
    for key in name.split("."):
        value = value.get(key, _UNSET) if isinstance(value, dict) else _UNSET
    return "not set" if value is _UNSET else json.dumps(value)


def _describe(d: dict) -> str:
    return d.get("file") or d.get("folder") or d.get("hub_dataset") or "?"


def _change(then: dict | None, now: dict | None) -> str:
    if then is None or now is None:
        return "it was not there then" if then is None else "it is not there now"
    if "file" in now:
        return f"its SHA-256 differs; {then.get('bytes')} bytes then, {now['bytes']} now"
    if "hub" in now and then.get("commit") != now["commit"]:
        return f"the Hub model {now['hub']}: commit {then.get('commit')} then, {now['commit']} now"
    if "hub_dataset" in now:
        return (
            f"commit {then.get('commit')}, {then.get('rows')} rows then; commit {now['commit']}, "
            f"{now['rows']} rows now (subset, split, revision or fingerprint may differ too)"
        )
    return (
        f"files added, removed or modified: {then.get('files')} files of {then.get('bytes')} "
        f"bytes then, {now['files']} of {now['bytes']} now"
    )
