"""What the benchmarks share: the synthetic table, the run config and the machine's facts."""

from __future__ import annotations

import os
import platform
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from rsft.training import Callback

NUM_CLASSES = 10
NUM_FEATURES = 64  # DigitsNet takes (B, 64) inputs


class PhaseTimer(Callback):
    """Wall and CPU seconds of each phase of the loop (``timers["step"]``,
    ``timers["step_cpu"]``, ...), from the trainer's phase callbacks: no private method
    of the trainer is overridden, so a renamed internal cannot silently stop the timing."""

    def __init__(self) -> None:
        self.timers: dict[str, float] = defaultdict(float)
        self._open: dict[str, tuple[float, float]] = {}

    def reset(self) -> None:
        self.timers.clear()

    def on_phase_begin(self, trainer: Any, name: str) -> None:
        self._open[name] = (time.perf_counter(), time.process_time())

    def on_phase_end(self, trainer: Any, name: str) -> None:
        wall, cpu = self._open.pop(name)
        self.timers[name] += time.perf_counter() - wall
        self.timers[f"{name}_cpu"] += time.process_time() - cpu


def timer_of(tuner: Any) -> PhaseTimer:
    """The PhaseTimer among a FineTuner's callbacks."""
    return next(cb for cb in tuner.callbacks.callbacks if isinstance(cb, PhaseTimer))


def build_table(
    path: Path, rows: int, seed: int = 0, extra: dict[str, np.ndarray] | None = None
) -> Path:
    """Random 64-float ``pixels``, random labels, and any ``extra`` columns, as parquet."""
    rng = np.random.default_rng(seed)
    pixels = rng.standard_normal((rows, NUM_FEATURES), dtype=np.float32)
    columns: dict[str, pa.Array] = {
        "pixels": pa.array(list(pixels), type=pa.list_(pa.float32())),
        "label": pa.array(rng.integers(0, NUM_CLASSES, size=rows), type=pa.int64()),
    }
    for name, values in (extra or {}).items():
        columns[name] = pa.array(values)
    pq.write_table(pa.table(columns), path)
    return path


def run_config(
    name: str,
    table: Path,
    out_dir: Path,
    width: int,
    batch_size: int,
    rejection: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One epoch of DigitsNet(width) on ``table``, SGD, no checkpoint reuse."""
    raw: dict[str, Any] = {
        "model": {
            "path": "rsft.tasks.digits:DigitsNet",
            "kwargs": {"width": width},
            "freeze": "none",
        },
        "data": {"train": str(table), "feature_columns": ["pixels"], "label_column": "label"},
        "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
        "epochs": 1,
        "batch_size": batch_size,
        "seed": 0,
        "output_dir": str(out_dir / name),
        "resume": "never",
        "progress": "quiet",
    }
    if rejection is not None:
        raw["rejection"] = rejection
    return raw


from rsft.portable import machine_info as rsft_machine_info  # noqa: E402


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "device": "cpu",
        **rsft_machine_info(),  # the CPU model, its ISA and the numeric libraries' versions
    }


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that reproduces a benchmark run, as recorded in its results file."""
    import sys

    return " ".join(["python", f"benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)])


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write a benchmark's results atomically, as JSON."""
    import json

    from rsft.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")


def interleaved_rounds(
    names: list[str],
    measure: Callable[[str, int], dict[str, float]],
    repeats: int,
    warmup: int = 1,
    label: str = "",
) -> dict[str, list[dict[str, float]]]:
    """Run ``measure(name, round)`` for every name, round after round, rotating the order so
    no setting always runs first; the warm-up rounds are discarded. Side by side in one run,
    machine noise hits every setting alike."""
    import time

    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    t0 = time.perf_counter()
    for r in range(warmup + repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            timing = measure(name, r)
            if r >= warmup:
                runs[name].append(timing)
        done = "warm-up round" if r < warmup else f"round {r - warmup + 1}"
        print(f"  {label}{done} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    return runs
