"""Tables (CSV, JSON lines, Parquet, saved datasets) whose rows hold features, text or
image paths, plus a label column."""

from __future__ import annotations

import codecs
import glob
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch

from rsft.data.config import ALL_FEATURES, DataConfig
from rsft.data.datasets_io import load_builder, load_saved
from rsft.data.images import (
    ImageInputs,
    image_processor,
    image_source,
    sample_indices,
    table_image_sources,
)
from rsft.data.split import TEXT_KEYS, Collate, ItemDataset, Split
from rsft.data.validate import (
    DataError,
    check_label_spellings,
    encode_labels,
    feature_matrix,
    is_numeric_column,
    require_column,
    require_rows,
    require_two_classes,
    sorted_classes,
    verify_images,
    warn_feature_scales,
)


class FeatureInputs:
    """``features`` of row i from the matrix built (and checked) at load."""

    def __init__(self, features: torch.Tensor) -> None:
        self.features = features

    def __call__(self, i: int) -> dict[str, torch.Tensor]:
        return {"features": self.features[i]}


class TextInputs:
    """Token ids of row i, tokenized on access (unpadded; :class:`Collate` pads a batch)."""

    def __init__(self, texts: list[str], tokenizer: Any, max_length: int) -> None:
        self.texts = texts
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, i: int) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(self.texts[i], truncation=True, max_length=self.max_length)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in encoded.items() if k in TEXT_KEYS}


def _recording(items: Iterator[tuple[str, Any]], names: list[str]) -> Iterator[tuple[str, Any]]:
    """Pass items through, keeping their names (image paths for ``column("path")``)."""
    for item in items:
        names.append(item[0])
        yield item


TEXT_FORMATS = ("csv", "json")  # read as UTF-8 text


def read_table(path: Path, fmt: str) -> datasets.Dataset:
    if fmt == "hf":
        return load_saved(path)
    if fmt in TEXT_FORMATS:
        check_utf8(path)
    # Escaped: datasets reads data_files as glob patterns.
    return load_builder(fmt, source=str(path), data_files=glob.escape(str(path)))


def check_utf8(path: Path) -> None:
    """Refuse a text table that is not UTF-8, naming its first bad byte and the fix (the
    readers would say only "can't decode byte 0xe9 in position 3", of some block)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines, line_start = 0, 0, 0  # bytes read, newlines in them, where the line began
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            pending = len(decoder.getstate()[0])  # a character begun in the previous block
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                at = offset - pending + err.start
                head = chunk[: max(at - offset, 0)]
                newline = head.rfind(b"\n")
                start = offset + newline + 1 if newline >= 0 else line_start
                bad = (err.object[err.start : err.start + 1] or b"\0")[0]
                raise _not_utf8(path, bad, lines + head.count(b"\n") + 1, at - start + 1) from err
            lines += chunk.count(b"\n")
            newline = chunk.rfind(b"\n")
            line_start = offset + newline + 1 if newline >= 0 else line_start
            offset += len(chunk)
    if decoder.getstate()[0]:
        raise _not_utf8(path, decoder.getstate()[0][0], lines + 1, offset - line_start)


def _not_utf8(path: Path, byte: int, line: int, column: int) -> DataError:
    fixed = path.with_name(f"{path.stem}.utf8{path.suffix}")
    return DataError(
        f"{path} is not UTF-8 text: byte {byte:#04x} at line {line}, column {column} is not "
        "valid UTF-8. rsft reads CSV and JSON files as UTF-8: convert it first, e.g. "
        f"`iconv -f latin1 -t utf-8 {path} > {fixed}` if it is Latin-1, and use {fixed.name}."
    )


def _arrow_type(table: datasets.Dataset, column: str) -> pa.DataType:
    return table.data.schema.field(column).type


def _label_values(table: datasets.Dataset, column: str, source: str) -> tuple[list, list | None]:
    """(raw label values, the ClassLabel names if the column is one)."""
    feature = table.features[column]
    if isinstance(feature, datasets.ClassLabel):
        names = feature.names
        ids = table[column]
        return [names[v] if v is not None and v >= 0 else None for v in ids], list(names)
    dtype = _arrow_type(table, column)
    if pa.types.is_nested(dtype):
        raise DataError(
            f"label column {column!r} of {source} holds {dtype} values; it must hold one "
            "class (a name or an integer) per row."
        )
    return list(table[column]), None


def feature_columns(table: datasets.Dataset, cfg: DataConfig, source: str) -> list[str]:
    """The named feature columns (checked to exist), or for ``all`` every numeric column
    (numbers, lists of numbers) that has no other role (:meth:`DataConfig.role_columns`)."""
    available = table.column_names
    if cfg.feature_columns != ALL_FEATURES:
        assert isinstance(cfg.feature_columns, list)
        for column in cfg.feature_columns:
            require_column(
                column, "feature", available, source, "Fix the names in data.feature_columns."
            )
        return cfg.feature_columns
    others = cfg.role_columns()
    columns = [c for c in available if c not in others and is_numeric_column(_arrow_type(table, c))]
    if not columns:
        raise DataError(
            f"data.feature_columns is 'all', but {source} has no numeric column besides "
            f"{sorted(others & set(available))} (its columns: {available}). Name the feature "
            "columns, or encode the inputs as numbers."
        )
    return columns


def _features(
    table: datasets.Dataset, columns: list[str], source: str, check_scales: bool
) -> torch.Tensor:
    arrow = table.with_format("arrow")
    parts = [feature_matrix(c, arrow[c], source) for c in columns]
    if check_scales:
        warn_feature_scales(dict(zip(columns, parts)), source)
    return torch.from_numpy(np.concatenate(parts, axis=1))


def _texts(table: datasets.Dataset, column: str, source: str) -> list[str]:
    dtype = _arrow_type(table, column)
    if not (pa.types.is_string(dtype) or pa.types.is_large_string(dtype)):
        raise DataError(
            f"text column {column!r} of {source} holds {dtype} values, not text. Point "
            "data.text_column at the column that holds the text."
        )
    texts = list(table[column])
    missing = [i for i, t in enumerate(texts) if t is None]
    if missing:
        raise DataError(
            f"{len(missing)} row(s) of {source} have no text in column {column!r} (first at "
            f"row {missing[0]}). Fill or drop those rows."
        )
    return texts


def _check_tokenizer(tokenizer: Any, source: str) -> None:
    # ``pad_token`` tells a tokenizer from an image processor, which also has ``pad``.
    if not (callable(tokenizer) and hasattr(tokenizer, "pad") and hasattr(tokenizer, "pad_token")):
        got = "none" if tokenizer is None else type(tokenizer).__name__
        raise DataError(
            f"{source} has text inputs (data.text_column), which need a tokenizer (got "
            f"{got}): pass processor=AutoTokenizer.from_pretrained(<model folder>) to "
            "load_split, or use a model folder that holds its tokenizer."
        )
    if getattr(tokenizer, "pad_token", None) is None:
        raise DataError(
            "the tokenizer has no padding token, so text batches cannot be padded; set one "
            "first, e.g. tokenizer.pad_token = tokenizer.eos_token."
        )


def load_table(
    path: Path,
    fmt: str,
    cfg: DataConfig,
    *,
    classes: list[str] | None,
    labelled: bool,
    processor: Any,
) -> Split:
    """A split from a table; the input kind is the text column, else the feature columns,
    else an image column of paths (relative ones resolve against the file's folder)."""
    source = str(path)
    table = read_table(path, fmt)
    require_rows(len(table), source)
    available = table.column_names
    base_dir = path if path.is_dir() else path.parent
    extra: dict[str, list] = {}
    features: list[str] | None = None

    if cfg.text_column is not None:
        require_column(
            cfg.text_column, "text", available, source, "Set data.text_column to the text column."
        )
        _check_tokenizer(processor, source)
        texts = _texts(table, cfg.text_column, source)
        inputs: Any = TextInputs(texts, processor, cfg.max_length)
        kind, collate = "text", Collate(processor)
    elif cfg.feature_columns is not None:
        features = feature_columns(table, cfg, source)
        # The scales are checked once, on the training split (other splits share its columns).
        training = labelled and classes is None
        inputs = FeatureInputs(_features(table, features, source, check_scales=training))
        kind, collate = "features", Collate()
    elif cfg.image_column in available:
        feature = table.features[cfg.image_column]
        holds_paths = isinstance(feature, datasets.Value) and "string" in feature.dtype
        if isinstance(feature, datasets.Image):
            table = table.cast_column(cfg.image_column, datasets.Image(decode=False))
        elif not holds_paths:
            raise DataError(
                f"image column {cfg.image_column!r} of {source} holds {feature}; it must hold "
                "image file paths or images."
            )
        names: list[str] = []
        verify_images(
            _recording(table_image_sources(table, cfg.image_column, base_dir, source), names),
            source,
        )
        if holds_paths and "path" not in available:
            extra["path"] = names  # resolved against the table's folder
        cells = [table[i][cfg.image_column] for i in sample_indices(len(table))]
        sample = [image_source(c, base_dir, source) for c in cells]
        processor = image_processor(processor, cfg, sample, source)
        inputs = ImageInputs(table, cfg.image_column, base_dir, processor, source)
        kind, collate = "pixel_values", Collate()
    else:
        raise DataError(
            f"{source} has no model input: its columns are {available}. Set "
            "data.feature_columns (numeric columns), data.text_column, or data.image_column "
            "(a column of image paths)."
        )

    labels = None
    if labelled:
        column = cfg.label_column
        require_column(
            column,
            "label",
            available,
            source,
            "Set data.label_column to the column holding the class, or load the split as "
            "unlabelled.",
        )
        values, names = _label_values(table, column, source)
        training = classes is None
        if training and names is None:
            check_label_spellings(values, f"column {column!r} of {source}")
        if training:
            classes = names if names is not None else sorted_classes(values)
        labels = encode_labels(values, classes, f"column {column!r} of {source}")
        if training:
            require_two_classes(labels, classes, source)

    return Split(
        dataset=ItemDataset(len(table), inputs, labels),
        classes=list(classes or []),
        labels=labels,
        input_kind=kind,
        collate=collate,
        table=table,
        source=source,
        format=fmt,
        extra_columns=extra,
        feature_columns=features,
    )
