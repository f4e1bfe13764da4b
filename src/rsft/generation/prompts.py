"""Prompts with reference answers, read and validated before any model is loaded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rsft.data.config import DataConfig
from rsft.data.loading import infer_format
from rsft.data.tables import read_table
from rsft.data.validate import DataError, label_key, require_column, require_rows


@dataclass
class Prompts:
    """One split: ids, prompt texts and reference answers (None where there is none)."""

    ids: list[str]
    texts: list[str]
    references: list[str | None]
    source: str

    def __len__(self) -> int:
        return len(self.texts)


def load_prompts(
    path: str | Path,
    prompt_column: str,
    answer_column: str | None,
    *,
    limit: int | None = None,
    split: str = "train",
) -> Prompts:
    """Read a JSONL/CSV/parquet file or a saved dataset; every prompt must be non-empty text.

    Ids are ``{split}-{row}``: stable across runs, so saved generations map back to prompts.
    """
    path = Path(os.path.abspath(Path(path).expanduser()))
    fmt = infer_format(path, DataConfig())
    if fmt == "imagefolder":
        raise DataError(
            f"{path} is a folder of files, not prompts: point data.{split} at a JSONL, CSV or "
            "parquet file, or a folder written by Dataset.save_to_disk."
        )
    table = read_table(path, fmt)
    source = str(path)
    require_rows(len(table), source)
    columns = table.column_names
    require_column(
        prompt_column, "prompt", columns, source, "Set data.prompt_column to the prompt column."
    )
    if answer_column is not None:
        require_column(
            answer_column,
            "answer",
            columns,
            source,
            "Set data.answer_column to the reference-answer column (null if the verifier "
            "needs no reference).",
        )
    if limit is not None:
        table = table.select(range(min(limit, len(table))))
    texts = table[prompt_column]
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise DataError(
            f"{len(bad)} prompt(s) in {source} are empty or not text (first at row {bad[0]}: "
            f"{texts[bad[0]]!r}). Remove those rows or fix column {prompt_column!r}."
        )
    # label_key: a CSV column of answers reads as floats (42.0 -> "42"), a gap as NaN (None).
    refs = (
        [label_key(v) for v in table[answer_column]]
        if answer_column is not None
        else [None] * len(texts)
    )
    if answer_column is not None and any(r is None for r in refs):
        row = refs.index(None)
        raise DataError(
            f"reference answer missing in {source} at row {row} (column {answer_column!r}). "
            "Fill it in, or drop the row."
        )
    ids = [f"{split}-{i}" for i in range(len(texts))]
    return Prompts(ids=ids, texts=list(texts), references=refs, source=source)


def chat_messages(prompt: str, system_prompt: str | None) -> list[dict[str, str]]:
    """The conversation a prompt becomes: an optional system message, then the user's turn."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": prompt}]
