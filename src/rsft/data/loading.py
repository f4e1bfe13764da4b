"""``load_split``: read one split of any supported format into a :class:`Split`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rsft.data.config import FORMATS, SUFFIX_FORMATS, DataConfig
from rsft.data.images import load_image_folder
from rsft.data.split import Split
from rsft.data.tables import load_table
from rsft.data.tensors import load_tensors
from rsft.data.validate import DataError

# Files that ``save_to_disk`` writes (a Dataset, or a DatasetDict of several splits).
SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def infer_format(path: Path, cfg: DataConfig) -> str:
    """The format of ``path``: ``cfg.format`` when set (checked against the path), else a
    saved-datasets folder, an image folder, or the file suffix."""
    if not path.exists():
        raise DataError(
            f"data path {path} does not exist (resolved to {path.resolve()}). Check the path; "
            "relative paths are taken from the current directory."
        )
    fmt = cfg.format
    if fmt is None:
        if path.is_dir():
            return "hf" if any((path / m).is_file() for m in SAVED_MARKERS) else "imagefolder"
        fmt = SUFFIX_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise DataError(
                f"cannot tell the format of {path} from its suffix {path.suffix!r}; set "
                f"data.format to one of {list(FORMATS)}."
            )
        return fmt
    wants_dir = fmt in ("imagefolder", "hf")
    if wants_dir != path.is_dir():
        raise DataError(
            f"data.format is {fmt!r}, which needs a {'folder' if wants_dir else 'file'}, but "
            f"{path} is a {'folder' if path.is_dir() else 'file'}. Fix the path or data.format."
        )
    return fmt


def load_split(
    path: str | Path,
    cfg: DataConfig,
    *,
    classes: list[str] | None = None,
    labelled: bool = True,
    processor: Any = None,
) -> Split:
    """Load and validate one split.

    ``classes=None`` marks the training split: classes come from it (sorted class folders;
    sorted label values, numbers numerically; a ClassLabel column's own names). Other
    splits pass the training classes, and labels are mapped onto them. ``labelled=False``
    loads samples without labels (the label column may be absent). ``processor`` is an
    image processor (default: built from ``cfg``) or, for text, a tokenizer (required).
    All checks run here, so bad data fails before training starts.
    """
    # Absolute (not symlink-resolved): datasets reports absolute paths, and messages and
    # column("path") then name files unambiguously.
    path = Path(os.path.abspath(Path(path).expanduser()))
    fmt = infer_format(path, cfg)
    if classes is not None:
        classes = [str(c) for c in classes]
    if fmt == "imagefolder":
        return load_image_folder(path, cfg, classes=classes, labelled=labelled, processor=processor)
    if fmt == "tensors":
        return load_tensors(path, cfg, classes=classes, labelled=labelled)
    return load_table(path, fmt, cfg, classes=classes, labelled=labelled, processor=processor)
