"""Prompts with reference answers, read and validated before any model is loaded."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsft.config import ConfigError
from rsft.data.config import DataConfig
from rsft.data.loading import infer_format
from rsft.data.tables import read_table
from rsft.data.validate import DataError, label_key, require_column, require_rows
from rsft.hub import is_hub_name, load_dataset_split


@dataclass
class Prompts:
    """One split: ids, prompt texts and reference answers (None where there is none), and
    where a config names them, worked reference solutions and a group per prompt."""

    ids: list[str]
    texts: list[str]
    references: list[str | None]
    source: str
    solutions: list[str] | None = None
    groups: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)


def load_prompts(
    path: str | Path,
    prompt_column: str,
    answer_column: str | None,
    *,
    limit: int | None = None,
    split: str = "train",
    solution_column: str | None = None,
    group_column: str | None = None,
    hub_split: str | None = None,
    subset: str | None = None,
    revision: str | None = None,
    answer_pattern: str | None = None,
) -> Prompts:
    """Read a JSONL/CSV/parquet file, a saved dataset or a split of a Hub dataset named
    ``org/name`` (``hub_split``, default train or test; ``subset``, ``revision``: Hub
    datasets only); every prompt must be non-empty text. ``answer_pattern``'s group is the
    reference answer in each answer.

    Ids are ``{split}-{row}``: stable across runs, so saved generations map back to prompts.
    """
    if is_hub_name(path):
        hub_split = hub_split or ("train" if split == "train" else "test")
        table = load_dataset_split(str(path), hub_split, subset, revision, what=f"data.{split}")
        source = f"{path} ({f'subset {subset}, ' if subset else ''}split {hub_split}, Hub)"
    else:
        table, source = _local_table(path, split)
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
    texts = _texts(
        table[prompt_column],
        "prompt",
        source,
        f"Remove those rows or fix column {prompt_column!r}.",
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
    if answer_pattern is not None and answer_column is not None:
        refs = _answers_in(table[answer_column], answer_pattern, answer_column, source)
    ids = [f"{split}-{i}" for i in range(len(texts))]
    out = Prompts(ids=ids, texts=texts, references=refs, source=source)
    if solution_column is not None:
        out.solutions = _text_column(table, solution_column, "solution", source, split)
    if group_column is not None:
        require_column(
            group_column, "group", columns, source, "Set data.group_column to a column here."
        )
        out.groups = [str(label_key(v)) for v in table[group_column]]
    return out


def prompts_of(data: Any, split: str, solutions: bool = False) -> Prompts:
    """The ``train`` or ``eval`` prompts a run's ``data`` section (a PromptDataConfig) names:
    the training split with its worked solutions when ``solutions``, the held-out one with
    its groups (``data.group_column``)."""
    train = split == "train"
    return load_prompts(
        data.train if train else data.eval,
        data.prompt_column,
        data.answer_column,
        limit=data.max_train_prompts if train else data.max_eval_prompts,
        split=split,
        solution_column=data.solution_column if solutions else None,
        group_column=None if train else data.group_column,
        hub_split=data.train_split if train else data.eval_split,
        subset=data.subset,
        revision=data.revision,
        answer_pattern=data.answer_pattern,
    )


def _text_column(table, column: str, what: str, source: str, split: str) -> list[str]:
    """A column of non-empty texts (the worked solutions), refused with the first bad row."""
    require_column(column, what, table.column_names, source, f"Set data.{what}_column.")
    fix = f"data.{what}_column of the {split} prompts needs a text for every prompt: fill them in."
    return _texts(table[column], what, source, fix)


def _texts(values: Any, what: str, source: str, fix: str) -> list[str]:
    """``values`` if every one is non-empty text; else the count and the first bad row."""
    bad = [i for i, t in enumerate(values) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise DataError(
            f"{len(bad)} {what}(s) in {source} are empty or not text (first at row {bad[0]}: "
            f"{values[bad[0]]!r}). {fix}"
        )
    return list(values)


def _local_table(path: str | Path, split: str) -> tuple[Any, str]:
    """The table of a local prompt file or saved dataset, and its path as the source."""
    path = Path(os.path.abspath(Path(path).expanduser()))
    fmt = infer_format(path, DataConfig())
    if fmt == "imagefolder":
        raise DataError(
            f"{path} is a folder of files, not prompts: point data.{split} at a JSONL, CSV or "
            "parquet file, or a folder written by Dataset.save_to_disk."
        )
    return read_table(path, fmt), str(path)


def check_answer_pattern(pattern: str | None, answer_column: str | None) -> None:
    """Refuse a data.answer_pattern that is no regex with exactly one group, or that has no
    answer column to apply to, when the config is read."""
    if pattern is None:
        return
    if answer_column is None:
        raise ConfigError(
            "data.answer_pattern finds the reference answer in data.answer_column, which is "
            "null: set data.answer_column, or drop data.answer_pattern."
        )
    try:
        groups = re.compile(pattern).groups
    except re.error as err:
        raise ConfigError(f"data.answer_pattern {pattern!r} is not a regex: {err}.") from None
    if groups != 1:
        raise ConfigError(
            f"data.answer_pattern {pattern!r} has {groups} groups; it needs exactly one, the "
            "answer (make others non-capturing: (?:...)), e.g. '#### *(.+)$'."
        )


def _answers_in(values: Any, pattern: str, column: str, source: str) -> list[str]:
    """The pattern's group in each answer (stripped); the first row without one refused."""
    regex = re.compile(pattern)
    found = [regex.search(v) if isinstance(v, str) else None for v in values]
    misses = [i for i, m in enumerate(found) if m is None or not m.group(1).strip()]
    if misses:
        row = misses[0]
        raise DataError(
            f"data.answer_pattern {pattern!r} finds no answer in {len(misses)} row(s) of "
            f"column {column!r} in {source} (first at row {row}: {values[row]!r}). Fix those "
            "answers or drop the rows, or change the pattern."
        )
    return [m.group(1).strip() for m in found]


def chat_messages(prompt: str, system_prompt: str | None) -> list[dict[str, str]]:
    """The conversation a prompt becomes: an optional system message, then the user's turn."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": prompt}]
