"""Read local files with HF ``datasets``, leaving nothing behind in the user's cache."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
from datasets.utils import logging as ds_logging

from rsft.data.validate import DataError, require_rows


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hide datasets' per-file and per-map progress bars and transformers' weight-loading
    bars for the duration, restoring the caller's choice: rsft shows its own progress."""
    from transformers.utils import logging as tf_logging

    was_disabled = datasets.utils.are_progress_bars_disabled()
    tf_was_enabled = tf_logging.is_progress_bar_enabled()
    verbosity = ds_logging.get_verbosity()
    datasets.disable_progress_bars()
    tf_logging.disable_progress_bar()
    ds_logging.set_verbosity_error()
    try:
        yield
    finally:
        ds_logging.set_verbosity(verbosity)
        if not was_disabled:
            datasets.enable_progress_bars()
        if tf_was_enabled:
            tf_logging.enable_progress_bar()


def load_builder(builder: str, *, source: str, **kwargs: Any) -> datasets.Dataset:
    """``datasets.load_dataset(builder, ...)`` of local files into memory.

    The sources are local and cheap to re-read, so each load prepares into a temporary
    cache that is deleted right after (``keep_in_memory``): no stale cache can hide an
    edited file, and nothing accumulates in ~/.cache. The packaged builders
    (csv/json/parquet/imagefolder) need no network, so this works offline.
    """
    try:
        with quiet(), tempfile.TemporaryDirectory(prefix="rsft-datasets-") as cache:
            return datasets.load_dataset(
                builder, split="train", cache_dir=cache, keep_in_memory=True, **kwargs
            )
    except DataError:
        raise
    except Exception as err:
        if "corresponds to no data" in str(err):  # datasets' words for a file without rows
            require_rows(0, source)
        cause = err.__cause__ or err
        raise DataError(
            f"cannot read {source} as {builder}: {type(cause).__name__}: {cause}. Check that "
            f"the file is valid {builder}, or set data.format to its real format."
        ) from err


def load_saved(path: Path) -> datasets.Dataset:
    """A dataset written by ``Dataset.save_to_disk`` (memory-mapped in place, not copied)."""
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as err:
        raise DataError(
            f"cannot load {path} as a saved datasets folder ({type(err).__name__}: {err}). "
            "Point at a folder written by Dataset.save_to_disk, or set data.format."
        ) from err
    if isinstance(loaded, datasets.DatasetDict):
        raise DataError(
            f"{path} holds several splits {list(loaded)}; point at one of them, e.g. "
            f"{path / next(iter(loaded))}."
        )
    return loaded
