"""Weight functions referred to by import path ("weight_fns:name") in test_weights.py."""

from __future__ import annotations

from typing import Any

import numpy as np


def length(example: dict[str, Any]) -> float:
    return float(len(example["text"]))


def length_numpy(example: dict[str, Any]) -> np.float32:
    return np.float32(len(example["text"]))


def batched_length(examples: list[dict[str, Any]]) -> np.ndarray:
    return np.array([len(e["text"]) for e in examples], dtype=float)


def needs_label(example: dict[str, Any]) -> float:
    return float(example["label"])  # KeyError on samples without a label


def batched_too_short(examples: list[dict[str, Any]]) -> list[float]:
    return [1.0] * (len(examples) - 1)


def batched_scalar(examples: list[dict[str, Any]]) -> float:
    return 1.0


def returns_text(example: dict[str, Any]) -> str:
    return example["text"]


def signed(example: dict[str, Any]) -> float:
    return float(example["value"])


NOT_CALLABLE = 3.0
