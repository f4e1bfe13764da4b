"""Checks that run when a split is loaded, so bad data fails before any training starts.

Every failure is a :class:`DataError` whose message names the problem, where it is
(file, column, row or image path) and how to fix it.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from itertools import islice
from numbers import Number
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

MAX_LISTED = 10  # how many offending values/paths a message lists before summarising


class DataError(ValueError):
    """The data cannot be used as given; the message says what to change."""


class DataWarning(UserWarning):
    """The data loads, but is probably not what the model expects."""


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else "")


def require_column(name: str, role: str, available: Sequence[str], source: str, fix: str) -> None:
    """Raise unless ``name`` is a column; the message lists the columns that do exist."""
    if name not in available:
        raise DataError(
            f"{role} column {name!r} not found in {source}. Available columns: "
            f"{list(available)}. {fix}"
        )


def require_rows(n: int, source: str) -> None:
    if n == 0:
        raise DataError(f"{source} holds no samples; point the split at data that has some.")


# --- labels -----------------------------------------------------------------------------


def label_key(value: Any) -> str | None:
    """The class name of a raw label value; None when the value is missing.

    Integral floats map to the int's name, so a column read as float (pandas does that when
    it has gaps) still matches classes written as ints elsewhere.
    """
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    return str(value)


def sorted_classes(values: Iterable[Any]) -> list[str]:
    """Class names of a training split: numbers sorted numerically, anything else by name."""
    distinct = {key: value for value in values if (key := label_key(value)) is not None}
    if all(isinstance(v, Number) for v in distinct.values()):
        return sorted(distinct, key=lambda k: (float(distinct[k]), k))
    return sorted(distinct)


# A label that reads as a number: digits, an optional point and exponent, spaces around.
_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve".split()
)


def _plural(kind: str) -> str:
    return kind + ("es" if kind.endswith("s") else "s")


def _counted(keys: Iterable[str], counts: Counter, unit: str) -> str:
    return _listing([f"{k!r} ({counts[k]} {unit}{'s' if counts[k] != 1 else ''})" for k in keys])


def check_label_spellings(
    values: Sequence[Any], where: str, unit: str = "row", kind: str = "class"
) -> None:
    """Refuse one number written several ways ("1", "1.0", "01", " 1"): each spelling would
    silently become a class of its own. Warn (:class:`DataWarning`) when numbers and text
    are mixed ("1" and "one"): those are distinct classes too, which may not be meant.

    Compares the class names of :func:`label_key`, so a float column's 42.0 is "42", as
    before; ``where`` names the column in messages, ``kind`` what a value is ("group").
    """
    counts = Counter(k for v in values if (k := label_key(v)) is not None)
    numbers: dict[Decimal, list[str]] = {}
    for key in counts:
        if _NUMBER.fullmatch(key):
            numbers.setdefault(Decimal(key.strip()), []).append(key)
    for spellings in numbers.values():
        if len(spellings) > 1:
            raise DataError(
                f"values {_counted(spellings, counts, unit)} in {where} are one number "
                f"written {len(spellings)} ways, so they would become {len(spellings)} "
                f"{_plural(kind)}. Write each {kind} one way (e.g. all of these as "
                f"{spellings[0].strip()!r}) and load again."
            )
    text = [k for k in counts if not _NUMBER.fullmatch(k)]
    if not numbers or not text:
        return
    words = [k for k in text if k.strip().lower() in NUMBER_WORDS]
    shown = [spellings[0] for spellings in numbers.values()]
    same = f", so {words[0]!r} is not the {kind} of the number it spells" if words else ""
    warnings.warn(
        f"the values in {where} mix numbers ({_counted(shown, counts, unit)}) with text "
        f"({_counted(text, counts, unit)}): each distinct value becomes a {kind} of its "
        f"own{same}. If some of them are meant to be one {kind}, write them one way; if the "
        f"text values are {_plural(kind)} of their own, ignore this warning.",
        DataWarning,
        stacklevel=2,
    )


def encode_labels(
    values: Sequence[Any], classes: Sequence[str], where: str, unit: str = "row"
) -> torch.Tensor:
    """Map raw label values onto class ids, refusing missing values and unknown classes.

    ``where`` names the labels' place in messages ("column 'label' of data/eval.csv").
    """
    keys = [label_key(v) for v in values]
    missing = [i for i, k in enumerate(keys) if k is None]
    if missing:
        raise DataError(
            f"{len(missing)} {unit}(s) have no label in {where} (first at {unit} "
            f"{missing[0]}). Fill or drop those {unit}s, or load the split as unlabelled."
        )
    ids = {name: i for i, name in enumerate(classes)}
    unknown = Counter(k for k in keys if k not in ids)
    if unknown:
        described = [f"{k!r} ({n} {unit}{'s' if n != 1 else ''})" for k, n in unknown.items()]
        raise DataError(
            f"label value(s) {_listing(described)} in {where} are not among the known "
            f"classes {list(classes)}. Remove those {unit}s, fix the labels, or add samples "
            "of that class to the training split."
        )
    return torch.tensor([ids[k] for k in keys], dtype=torch.long)


def require_two_classes(labels: torch.Tensor, classes: Sequence[str], source: str) -> None:
    present = sorted({classes[i] for i in labels.tolist()})
    if len(present) < 2:
        raise DataError(
            f"the training split {source} has {len(present)} class(es) {present}; a classifier "
            "needs samples of at least 2 classes. Check the label column or the class folders."
        )


# --- numeric features ---------------------------------------------------------------------


def _is_numeric(dtype: pa.DataType) -> bool:
    return (
        pa.types.is_integer(dtype)
        or pa.types.is_floating(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_decimal(dtype)
    )


def _is_list(dtype: pa.DataType) -> bool:
    return (
        pa.types.is_list(dtype)
        or pa.types.is_large_list(dtype)
        or pa.types.is_fixed_size_list(dtype)
        or pa.types.is_list_view(dtype)
    )


def is_numeric_column(dtype: pa.DataType) -> bool:
    """Numbers, or lists (of lists) of numbers: what a feature column may hold."""
    while _is_list(dtype):
        dtype = dtype.value_type
    return _is_numeric(dtype)


def feature_matrix(name: str, column: pa.ChunkedArray | pa.Array, source: str) -> np.ndarray:
    """One feature column as a float32 (rows, width) array: a scalar gives width 1, a list
    of length k gives width k. Refuses text, ragged lists and NaN/inf, which would
    otherwise surface as a shape error or a NaN loss mid-training."""
    fix = "Feature columns must hold numbers, or lists of numbers of one fixed length."
    if not is_numeric_column(column.type):
        example = next((v for v in column.to_pylist() if v is not None), None)
        raise DataError(
            f"feature column {name!r} of {source} holds {column.type} values (e.g. "
            f"{example!r}), not numbers. {fix} Encode it numerically or remove it from "
            "feature_columns."
        )
    if _is_numeric(column.type):
        # Through float64 so missing values of any numeric type become NaN (caught below).
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        matrix = values.astype(np.float32)[:, None]
    else:
        rows = column.to_pylist()
        lengths = Counter(len(r) if r is not None else None for r in rows)
        if None in lengths:
            first = next(i for i, r in enumerate(rows) if r is None)
            raise DataError(
                f"feature column {name!r} of {source} has {lengths[None]} missing value(s) "
                f"(first at row {first}). Fill or drop those rows."
            )
        if len(lengths) > 1:
            usual = lengths.most_common(1)[0][0]
            first = next(i for i, r in enumerate(rows) if len(r) != usual)
            raise DataError(
                f"feature column {name!r} of {source} is ragged: its lists have lengths "
                f"{sorted(lengths)} (most are {usual}; row {first} has {len(rows[first])}). "
                f"{fix} Pad or truncate the lists to one length."
            )
        try:
            matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
        except (ValueError, TypeError) as err:  # nested lists ragged below the first level
            raise DataError(
                f"feature column {name!r} of {source} has nested lists of different "
                f"lengths or missing entries ({err}). {fix}"
            ) from err
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise DataError(
            f"feature column {name!r} of {source} has {int(bad.sum())} row(s) with missing or "
            f"non-finite values (NaN/inf; first at row {int(np.argmax(bad))}). Fill, clip or "
            "drop those rows: one NaN input makes the whole training loss NaN."
        )
    return matrix


SCALE_SPREAD = 1e3
"""Feature columns whose standard deviations span this factor or more get a warning."""


def warn_feature_scales(columns: dict[str, np.ndarray], source: str) -> None:
    """Warn when the feature columns' standard deviations span three orders of magnitude
    or more: fine-tuning on such inputs often collapses to predicting one class, silently.
    Constant columns are left out (their scale says nothing)."""
    names: list[str] = []
    for name, matrix in columns.items():
        width = matrix.shape[1]
        names += [name] if width == 1 else [f"{name}[{j}]" for j in range(width)]
    std = np.concatenate([m.astype(np.float64).std(axis=0) for m in columns.values()])
    varying = np.flatnonzero(std > 0)
    if len(varying) < 2:
        return
    lo, hi = varying[np.argmin(std[varying])], varying[np.argmax(std[varying])]
    if std[hi] < SCALE_SPREAD * std[lo]:
        return
    warnings.warn(
        f"the feature columns of {source} are on very different scales: their standard "
        f"deviations range from {std[lo]:.3g} ({names[lo]}) to {std[hi]:.3g} ({names[hi]}). "
        "Fine-tuning on such features often ends predicting one class for every sample: "
        "standardize them (each column minus its mean, divided by its standard deviation) "
        "the same way as the data the model was pretrained on.",
        DataWarning,
        stacklevel=2,
    )


# --- images ------------------------------------------------------------------------------


def _open(src: str | bytes) -> Image.Image:
    return Image.open(io.BytesIO(src) if isinstance(src, bytes) else src)


def _verify(item: tuple[str, str | bytes]) -> str | None:
    """None if the image decodes, else its name and the reason. ``verify`` checks the file's
    structure (PNG checksums) but decodes no pixels, so a truncated JPEG passes it: ``load``
    decodes them all."""
    name, src = item
    try:
        with _open(src) as image:
            image.verify()
        with _open(src) as image:  # verify() leaves the image unusable: open it again
            image.load()
    except FileNotFoundError:
        return f"{name} (file not found)"
    except Exception as err:  # PIL raises many types for bad files; all mean "unusable"
        return f"{name} ({type(err).__name__}: {err})"
    return None


def verify_images(items: Iterable[tuple[str, str | bytes]], source: str) -> None:
    """Open and decode every image once, so a corrupt or truncated file is named by its path
    now rather than crashing a DataLoader worker hours into training. Reads in parallel
    threads (the work is mostly file I/O and decoding, which releases the GIL) and in chunks,
    so embedded image bytes are not all held at once.
    """
    failures: list[str] = []
    iterator = iter(items)
    workers = min(16, (os.cpu_count() or 1) + 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while chunk := list(islice(iterator, 1024)):
            failures.extend(f for f in pool.map(_verify, chunk) if f is not None)
    if failures:
        raise DataError(
            f"{len(failures)} image(s) in {source} cannot be read: {_listing(failures)}. "
            "Replace or delete these files."
        )
