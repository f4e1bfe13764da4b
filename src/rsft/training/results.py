"""The results of one fine-tuning run: :class:`RunResult`, the schema of ``results.json``.

One typed record, built by the trainer, written and read here only, consumed by
``rsft compare``, its report and the CLI. It reads like a mapping too (``result["x"]``,
``"x" in result``), so code that loads a results.json and code that holds a RunResult look
alike. Fields that do not apply to a run (``step_acceptance`` for a gradient method,
``test_accuracy`` without a test split) are left out of the file, not written as null.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rsft.atomic import atomic_write_text

SCHEMA_VERSION = 1
"""Raised when a field changes meaning or is removed (adding one does not)."""


@dataclass(eq=False)  # Mapping's equality: equal to any mapping of the same fields
class RunResult(Mapping):
    """What a run did and measured. Times in seconds, memory in bytes, sample counts over
    all processes; ``*_accuracy`` is the task's metric (accuracy for classification)."""

    config: dict[str, Any]
    rsft_version: str
    data: dict[str, Any]  # the data digest: what a finished run may be reused for
    kernels: dict[str, Any]  # what the bits depend on besides config and version
    machine: dict[str, Any]
    classes: list[str]
    parameters: dict[str, int]  # total / trainable parameter counts
    weights: dict[str, Any]  # the weight source and what it measured (e.g. domain_auc)
    acceptance_rate: float
    ess_fraction: float
    violations: float
    envelope: float | None
    forwarded: int
    backpropagated: int
    setup_time: float
    train_time: float
    wall_time: float
    global_step: int
    epochs_run: int
    resumed_from_step: int | None
    step_losses: list[float]
    history: list[dict[str, Any]]
    diverged: bool = False
    divergence: list[dict[str, Any]] = field(default_factory=list)
    # Optional sections: present when they apply.
    parameter_bytes: int | None = None
    peak_memory: int | None = None
    inference_memory: int | None = None
    memory_vs_inference: float | None = None
    step_acceptance: float | None = None  # Metropolis / MALA
    proposals: int | None = None
    sigma: float | None = None
    trace: list[dict[str, float]] | None = None  # model-aware rejection, per round
    test_accuracy: float | None = None
    test_loss: float | None = None
    test_correct: list[float] | None = None  # per test item, in test-set order
    test_size: int | None = None
    initial_test_accuracy: float | None = None  # the pretrained model's
    schema: int = SCHEMA_VERSION

    # --- a read-only mapping over the fields that apply --------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS or (key in _OPTIONAL and getattr(self, key) is None):
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return (k for k in _FIELDS if k not in _OPTIONAL or getattr(self, k) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self}

    def write(self, path: str | Path) -> None:
        """``results.json``, atomically: a reader sees the old file or the whole new one."""
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        schema = data.get("schema", SCHEMA_VERSION)
        if schema > SCHEMA_VERSION:
            raise ValueError(
                f"results schema {schema} is newer than this rsft reads ({SCHEMA_VERSION}): "
                "upgrade rsft to read it."
            )
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})

    @classmethod
    def read(cls, path: str | Path) -> RunResult:
        return cls.from_dict(json.loads(Path(path).read_text()))


_FIELDS = tuple(f.name for f in fields(RunResult))
_OPTIONAL = frozenset(_FIELDS[_FIELDS.index("parameter_bytes") : _FIELDS.index("schema")])


def result_fields(*names: str) -> tuple[str, ...]:
    """``names``, checked to be RunResult fields: lists of fields kept elsewhere (the
    compare record) fail at import if a field is renamed."""
    unknown = [n for n in names if n not in _FIELDS]
    if unknown:
        raise AttributeError(f"RunResult has no field(s) {unknown}")
    return names
