"""A loaded split: a torch Dataset of model-ready items plus the raw table behind it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import datasets
import torch
from torch.utils.data import Dataset

from rsft.data.validate import DataError

TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


class Collate:
    """Batch items from a :class:`Split`: pads token sequences with the tokenizer, stacks
    tensors, and turns ints (``index``) into a LongTensor.

    A class rather than a closure so DataLoader workers can pickle it.
    """

    def __init__(self, tokenizer: Any = None) -> None:
        self.tokenizer = tokenizer

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not items:
            return {}
        batch: dict[str, Any] = {}
        keys = list(items[0])
        if self.tokenizer is not None:
            text_keys = [k for k in keys if k in TEXT_KEYS]
            to_pad = [
                {k: item[k].tolist() if torch.is_tensor(item[k]) else item[k] for k in text_keys}
                for item in items
            ]
            batch.update(self.tokenizer.pad(to_pad, padding=True, return_tensors="pt"))
            keys = [k for k in keys if k not in TEXT_KEYS]
        for key in keys:
            values = [item[key] for item in items]
            if torch.is_tensor(values[0]):
                batch[key] = torch.stack(values)
            elif isinstance(values[0], (bool, int, float)):
                batch[key] = torch.tensor(values)
            else:
                batch[key] = values
        return batch


class ItemDataset(Dataset):
    """Items ``{<input>: tensor, "labels": LongTensor, "index": i}``.

    ``make_input(i)`` builds the model input(s) of row i; it is where image transforms and
    tokenization run, lazily, so memory holds paths and text rather than tensors.
    """

    def __init__(
        self, n: int, make_input: Callable[[int], dict[str, Any]], labels: torch.Tensor | None
    ) -> None:
        self.n = n
        self.make_input = make_input
        self.labels = labels

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for a split of {self.n} samples")
        i = int(i) % self.n
        item = self.make_input(i)
        if self.labels is not None:
            item["labels"] = self.labels[i]
        item["index"] = i
        return item


class Split:
    """One loaded split, ready for a torch DataLoader.

    ``dataset[i]`` is a dict of model input(s) (``pixel_values``, ``features`` or
    ``input_ids``/``attention_mask``), ``labels`` when labelled, and ``index`` (= i, so
    per-sample weights and acceptance decisions can be traced back to rows). Use
    ``collate`` as the DataLoader's ``collate_fn``.
    """

    def __init__(
        self,
        *,
        dataset: Dataset,
        classes: list[str],
        labels: torch.Tensor | None,
        input_kind: str,
        collate: Callable,
        table: datasets.Dataset,
        source: str,
        format: str,
        extra_columns: dict[str, list] | None = None,
        feature_columns: list[str] | None = None,
    ) -> None:
        self.dataset = dataset
        self.classes = classes
        self.labels = labels
        self.input_kind = input_kind
        self.collate = collate
        self.source = source
        self.format = format
        self._table = table
        self._extra = extra_columns or {}
        self.feature_columns = feature_columns  # the columns read as features, if any

    def __len__(self) -> int:
        return len(self.dataset)

    def __repr__(self) -> str:
        return (
            f"Split({self.source!r}, format={self.format!r}, n={len(self)}, "
            f"input_kind={self.input_kind!r}, classes={self.classes})"
        )

    @property
    def column_names(self) -> list[str]:
        """Columns that :meth:`column` can return."""
        return list(self._table.column_names) + [
            k for k in self._extra if k not in self._table.column_names
        ]

    def column(self, name: str) -> list:
        """Raw values of a column of the source, in sample order (for group or weight
        columns that are not model inputs)."""
        if name in self._extra:
            return list(self._extra[name])
        if name in self._table.column_names:
            return list(self._table[name])
        raise DataError(
            f"column {name!r} not found in {self.source}. Available columns: "
            f"{self.column_names}. Check the column name in the config."
        )

    def examples(self) -> list[dict]:
        """Raw rows as dicts, in sample order (for user weight functions)."""
        rows = self._table.to_list()
        for key, values in self._extra.items():
            for row, value in zip(rows, values):
                row.setdefault(key, value)
        return rows
