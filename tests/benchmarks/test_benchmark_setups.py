"""The benchmarks' setups, run small: a renamed or removed part of rsft that a benchmark
uses fails here, not the next time someone runs the benchmark."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module", autouse=True)
def on_path():
    sys.path.insert(0, str(BENCHMARKS))
    yield
    sys.path.remove(str(BENCHMARKS))


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCHMARKS.glob("*.py")))
def test_every_benchmark_imports(name):
    module = importlib.import_module(name)
    assert module.__doc__, f"benchmarks/{name}.py says what it measures"


def _args(**over) -> argparse.Namespace:
    return argparse.Namespace(width=8, batch_size=16, **over)


def test_epoch_cost_times_the_loop_the_checkpoint_and_the_finish(tmp_path):
    import epoch_cost

    table = epoch_cost.build_table(tmp_path / "t.parquet", rows=64)
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    for name in (epoch_cost.PLAIN, str(epoch_cost.RATES[0])):
        tuner = epoch_cost.make_tuner(name, table, tmp_path / "runs", _args(), acc)
        timing = epoch_cost.run_epoch(tuner, sampler_seed=3)
        assert timing["loop"] > 0 and timing["cpu"] > 0
        assert timing["checkpoint"] > 0  # the epoch-end save, through the "save" phase
        assert timing["epoch_total"] >= timing["loop"]
        assert 0 < timing["accepted"] <= 64


def test_selective_cost_splits_a_model_aware_epoch_into_its_phases(tmp_path):
    import selective_cost
    from accelerate import Accelerator

    table = selective_cost.build_table(tmp_path / "t.parquet", rows=64)
    acc = Accelerator(cpu=True)
    tuner = selective_cost.make_tuner("selective_backprop", table, tmp_path / "r", _args(), acc)
    timing = selective_cost.run_epoch(tuner, seed=5)
    for key in ("step", "score_forward", "score_collate", "train_collate", "checkpoint"):
        assert timing[key] > 0, key
    assert timing["score_rule"] >= 0 and timing["train_queue"] >= 0
    parts = ("score_collate", "score_forward", "score_rule", "train_collate", "step")
    assert sum(timing[k] for k in parts) <= timing["loop"] * 1.05


def test_selective_cost_curves_carry_time_and_samples_per_epoch(tmp_path):
    import selective_cost
    from accelerate import Accelerator

    from rsft.config import from_dict
    from rsft.training import FineTuner, TrainConfig

    table = selective_cost.build_table(tmp_path / "t.parquet", rows=64)
    raw = selective_cost.run_config("plain", table, tmp_path / "r", 8, 16, None)
    raw.update(epochs=2, data={**raw["data"], "eval": str(table)})
    curve = selective_cost.LearningCurve()
    result = FineTuner(from_dict(TrainConfig, raw), Accelerator(cpu=True), [curve]).train()
    first, second = result["history"]
    assert 0 < first["train_time"] < second["train_time"]
    assert 0 < first["train_cpu"] < second["train_cpu"]
    assert second["backpropagated"] == 2 * first["backpropagated"] == 128
