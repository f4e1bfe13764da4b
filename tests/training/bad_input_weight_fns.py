"""Weight functions named by import path ("bad_input_weight_fns:name") in test_bad_input.py.

test_bad_input.py puts this folder on sys.path with monkeypatch.syspath_prepend.
"""

from __future__ import annotations

from typing import Any


def constant(example: dict[str, Any]) -> float:
    return 1.0


def fails_on_class_2(example: dict[str, Any]) -> float:
    if example["label"] == 2:
        raise RuntimeError("no weight for class 2")
    return 1.0
