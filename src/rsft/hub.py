"""Models and data named by their Hugging Face Hub name (``org/name``).

A string names a Hub repo when it reads ``org/name`` and is not an existing local path: a
file or folder that exists always wins (a folder ``org/name`` under the working directory is
that folder), and a name ending in a data file's suffix (``prompts/train.jsonl``) is a local
file that is missing, never a repo. The libraries' own code and cache do the loading:

- a model is resolved once, before anything else reads it, to its snapshot folder in the
  Hugging Face cache (``huggingface_hub.snapshot_download``; offline, the cache alone), so
  every later stage (the folder checks, vLLM, TRL) reads a local folder whose name is the
  commit;
- a dataset split is read by ``datasets.load_dataset(name, subset, split=..., revision=...)``.
  Offline, ``datasets`` reads only what an earlier load prepared in its own cache
  (``HF_DATASETS_CACHE``), whatever the revision asked for: the commit it read (the name of
  that cache folder) is checked against the revision here. No dataset code runs:
  ``datasets`` (4 and later) has no loading scripts, and a repo made of one is refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub
from datasets.naming import camelcase_to_snakecase
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import (
    GatedRepoError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from rsft.config import ConfigError
from rsft.data.datasets_io import quiet
from rsft.data.validate import DataError

# What transformers, vLLM and TRL read of a model repo; other formats' weights are not fetched.
MODEL_IGNORE = (
    "*.onnx", "onnx/*", "*.gguf", "*.msgpack", "*.h5", "*.ot", "*.tflite", "flax_model*",
    "tf_model*", "rust_model*", "openvino/*", "coreml/*", "*.mlmodel", "original/*",
)  # fmt: skip
# Suffixes of the local files rsft reads: such a name is a path, never a repo.
LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".arrow", ".safetensors", ".txt")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_SHA = re.compile(r"[0-9a-f]{7,40}")


def is_hub_name(value: str | os.PathLike[str] | None) -> bool:
    """Whether ``value`` names a Hub repo (``org/name``) rather than a local path."""
    if not value:
        return False
    text = str(value)
    return (
        _REPO_ID.fullmatch(text) is not None
        and ".." not in text
        and not text.lower().endswith(LOCAL_SUFFIXES)
        and not Path(text).expanduser().exists()
    )


def offline() -> bool:
    """Whether HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE for data) keeps the libraries off the
    network, as the libraries themselves read it."""
    return bool(hub_constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE)


def resolve_model(name: str, revision: str | None = None, *, what: str = "model.path") -> Path:
    """The local snapshot folder of the Hub model ``name`` at ``revision`` (the default
    branch when None), downloaded into the Hugging Face cache if it is not there (offline:
    read from the cache only)."""
    at = f" at revision {revision!r}" if revision else ""
    neither = f"{what}: {name!r} is no local folder, so it names a Hub model; "
    cache = hub_constants.HF_HUB_CACHE
    try:
        folder = huggingface_hub.snapshot_download(
            name, revision=revision, ignore_patterns=list(MODEL_IGNORE)
        )
    except LocalEntryNotFoundError as err:
        partly = f" ({err})" if isinstance(err, IncompleteSnapshotError) else ""
        if hub_constants.HF_HUB_OFFLINE:
            raise ConfigError(
                f"{neither}the model {name}{at} is not in the Hugging Face cache ({cache})"
                f"{partly} and HF_HUB_OFFLINE is set, so it cannot be downloaded. Download it "
                f"once with the network: `hf download {name}"
                f"{f' --revision {revision}' if revision else ''}` (`huggingface-cli download` "
                "in older huggingface_hub), or unset HF_HUB_OFFLINE."
            ) from None
        raise ConfigError(
            f"{neither}the Hub could not be reached and the model {name}{at} is not in the "
            f"Hugging Face cache ({cache}){partly}. Check the network, or download "
            f"it where there is one: `hf download {name}`."
        ) from None
    except GatedRepoError:
        raise ConfigError(
            f"{neither}the model {name} is gated: accept its terms on "
            f"https://huggingface.co/{name} and log in (`hf auth login`)."
        ) from None
    except RevisionNotFoundError:
        raise ConfigError(
            f"{neither}the model {name} has no revision {revision!r}: give a branch, a tag or "
            "a commit of it (model.revision)."
        ) from None
    except RepositoryNotFoundError:
        raise ConfigError(
            f"{neither}there is no model {name} on the Hub (or it is private: log in with "
            "`hf auth login`). Check the spelling, or give a local model folder."
        ) from None
    return Path(folder)


def snapshot_origin(path: Path) -> dict[str, str]:
    """``{"hub": repo, "commit": sha}`` for a snapshot folder of a Hugging Face cache
    (``.../models--org--name/snapshots/<sha>``), else ``{}``: what a digest records of it."""
    parts = Path(path).expanduser().absolute().parts
    if len(parts) < 3 or parts[-2] != "snapshots" or not parts[-3].startswith("models--"):
        return {}
    return {"hub": parts[-3][len("models--") :].replace("--", "/"), "commit": parts[-1]}


def load_dataset_split(
    name: str,
    split: str,
    subset: str | None = None,
    revision: str | None = None,
    *,
    what: str = "data.train",
) -> Any:
    """One split of the Hub dataset ``name`` as a ``datasets.Dataset``, read by
    ``datasets.load_dataset`` through its cache; every failure is told in rsft's words,
    naming the subsets or splits there are."""
    try:
        with quiet():
            table = datasets.load_dataset(name, subset, split=split, revision=revision)
    except ConnectionError as err:
        raise _not_cached(name, subset, revision, what, err) from None
    except datasets.exceptions.DatasetNotFoundError as err:
        raise DataError(
            f"{what}: {name!r} is no local file or folder, so it names a Hub dataset, and "
            f"the Hub says: {err} Check the spelling (or log in with `hf auth login` for a "
            "private or gated one), or give a local file."
        ) from None
    except RuntimeError as err:
        if "scripts are no longer supported" not in str(err):
            raise
        raise DataError(
            f"{what}: the Hub dataset {name} is a loading script, and rsft runs no dataset "
            "code: use its parquet conversion (data.revision: refs/convert/parquet), or a "
            "copy of it as data files."
        ) from None
    except ValueError as err:
        raise _which_part(name, split, subset, revision, what, err) from None
    _check_revision(name, revision, dataset_commit(table))
    return table


def dataset_commit(table: Any) -> str | None:
    """The commit a Hub dataset was read at: the name of the cache folder its files lie in."""
    files = getattr(table, "cache_files", None) or []
    return Path(files[0]["filename"]).parent.name if files else None


def dataset_digest(
    name: str, split: str, subset: str | None = None, revision: str | None = None
) -> dict[str, Any]:
    """What a resumed run compares of a Hub dataset split: its name, subset, split, the
    revision asked for, the commit read and ``datasets``' fingerprint of the split."""
    table = load_dataset_split(name, split, subset, revision)
    return {
        "hub_dataset": name, "subset": subset, "split": split, "revision": revision,
        "commit": dataset_commit(table), "fingerprint": table._fingerprint, "rows": len(table),
    }  # fmt: skip


def _not_cached(
    name: str, subset: str | None, revision: str | None, what: str, err: Exception
) -> DataError:
    load = f"datasets.load_dataset({name!r}{f', {subset!r}' if subset else ''})"
    if offline():
        return DataError(
            f"{what}: the Hub dataset {name}{f' (revision {revision})' if revision else ''} is "
            f"not in the datasets cache ({datasets.config.HF_DATASETS_CACHE}) and "
            "HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE) is set, so it cannot be downloaded. Load "
            f"it once with the network (unset both, and run rsft or `{load}`), then run "
            "offline: datasets reads offline what it prepared then, not a `hf download` of the "
            "repo."
        )
    return DataError(
        f"{what}: the Hub could not be reached for the dataset {name}, and it is not in the "
        f"datasets cache ({datasets.config.HF_DATASETS_CACHE}): {err}. Check the network."
    )


def _which_part(
    name: str, split: str, subset: str | None, revision: str | None, what: str, err: Exception
) -> Exception:
    """The error for a subset or split that ``name`` does not have, naming those it has;
    ``err`` as it is when it is another problem."""
    subsets = _subsets(name, revision)
    if subset is None and len(subsets) > 1:
        return DataError(
            f"{what}: the Hub dataset {name} has several subsets ({', '.join(subsets)}): set "
            "data.subset to one of them."
        )
    if subset is not None and subsets and subset not in subsets:
        return DataError(
            f"data.subset: the Hub dataset {name} has no subset {subset!r}; its subsets"
            f"{' in the datasets cache (offline)' if offline() else ''} are {', '.join(subsets)}."
        )
    try:
        with quiet():
            splits = datasets.get_dataset_split_names(name, subset, revision=revision)
    except Exception:  # noqa: BLE001 (the original error says more)
        return err
    wanted = [re.sub(r"\[.*\]$", "", s).strip() for s in split.split("+")]
    if any(s not in splits for s in wanted):
        option = "data.train_split" if what == "data.train" else "data.eval_split"
        return DataError(
            f"{option}: the Hub dataset {name}{f' ({subset})' if subset else ''} has no split "
            f"{split!r}; its splits are {', '.join(splits)}."
        )
    return err


def _subsets(name: str, revision: str | None) -> list[str]:
    """The subsets (configs) of ``name``: from the Hub, or offline those datasets prepared
    in its cache (the folders its offline loader reads)."""
    if offline():
        org, repo = name.split("/")
        root = Path(datasets.config.HF_DATASETS_CACHE) / f"{org}___{camelcase_to_snakecase(repo)}"
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    try:
        with quiet():
            return datasets.get_dataset_config_names(name, revision=revision)
    except Exception:  # noqa: BLE001 (then the original error is reported)
        return []


def _check_revision(name: str, revision: str | None, commit: str | None) -> None:
    """Refuse a dataset read at another commit than ``revision`` asks for: offline (or with
    the Hub out of reach), datasets reads its latest cached version whatever the revision."""
    if not revision or commit is None:
        return
    expected = revision if _SHA.fullmatch(revision) else _cached_ref(name, revision)
    if expected is None and not offline():
        return  # online, datasets read the revision asked for
    if expected is not None and commit.startswith(expected):
        return
    which = (
        f"{revision!r} is commit {expected}"
        if expected and expected != revision
        else f"{revision!r} is not it"
        if expected
        else f"which commit {revision!r} is was never fetched"
    )
    raise DataError(
        f"data.revision: the Hub dataset {name} in the datasets cache is at commit {commit}, "
        f"and {which}; offline, datasets reads only its latest cached version. Load that "
        "revision once with the network (unset HF_HUB_OFFLINE), or give the commit that is "
        "cached."
    )


def _cached_ref(name: str, revision: str) -> str | None:
    """The commit the branch or tag ``revision`` of dataset ``name`` pointed at when it was
    last fetched, from the Hugging Face cache (None when it was never fetched)."""
    path = huggingface_hub.try_to_load_from_cache(
        name, "README.md", revision=revision, repo_type="dataset"
    )
    return Path(path).parent.name if isinstance(path, str) else None
