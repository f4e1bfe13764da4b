import numpy as np
import pytest
from datasets import Dataset


def write_table(path, n=64, classes=3, seed=0, weights=None):
    """A tiny separable table: 64 features per row, a label, an optional weight column."""
    centers = np.random.default_rng(1234).normal(0, 1, (classes, 64))  # shared by all tables
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    pixels = centers[labels] + rng.normal(0, 0.8, (n, 64))
    cols = {"pixels": pixels.astype("float32").tolist(), "label": labels.tolist()}
    if weights is not None:
        cols["w"] = list(weights)
    Dataset.from_dict(cols).to_parquet(str(path))
    return str(path)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def make_table():
    return write_table


@pytest.fixture
def tiny_config(tmp_path):
    """A complete train config dict on tiny data; tests override what they exercise."""
    w = [0.0, 1.0] * 32
    return {
        "model": {"path": "rsft.tasks.digits:DigitsNet", "kwargs": {"width": 8}, "freeze": "none"},
        "data": {
            "train": write_table(tmp_path / "train.parquet", weights=w),
            "eval": write_table(tmp_path / "eval.parquet", n=30, seed=1),
            "test": write_table(tmp_path / "test.parquet", n=30, seed=2),
            "feature_columns": ["pixels"],
        },
        "optim": {"name": "sgd", "lr": 0.05},
        "epochs": 2,
        "batch_size": 8,
        "output_dir": str(tmp_path / "run"),
        "progress": False,
    }


def run_two_processes(script, config: dict, tmp_path, port: int) -> list[dict]:
    """Run ``script CONFIG OUT`` on 2 CPU processes (accelerate launch, gloo); return each
    rank's ``OUT.<rank>.json``. The script's folder is on PYTHONPATH."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(config))
    here = str(Path(script).parent)
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]),
    }
    launcher = Path(sys.executable).parent / "accelerate"
    flags = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    flags += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port)]
    proc = subprocess.run(
        [
            str(launcher),
            "launch",
            *flags,
            str(script),
            str(tmp_path / "ddp.yaml"),
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((tmp_path / f"out.{r}.json").read_text()) for r in (0, 1)]


@pytest.fixture
def two_processes():
    return run_two_processes


def launch_train(config: dict, path):
    """Start `rsft train --config path` (config written there) as a separate process; the
    test models in this folder are importable by it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    Path(path).write_text(yaml.safe_dump(config))
    here = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "rsft.cli.main", "train", "--config", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def checkpoint_step(run) -> int:
    """The global step of the run's latest checkpoint (0 when there is none)."""
    from pathlib import Path

    pointer = Path(run) / "checkpoints" / "latest"
    return int(pointer.read_text().split("-")[1]) if pointer.is_file() else 0


def finish_both(config: dict, killed, tmp_path, at: int) -> tuple[dict, dict]:
    """Resume the run killed at checkpoint ``at`` and make an uninterrupted one of the same
    config (in ``tmp_path/full``); check they trained alike and return both results."""
    import json
    from pathlib import Path

    killed = Path(killed)
    resumed = launch_train(dict(config, output_dir=str(killed)), tmp_path / "killed.yaml")
    full = launch_train(dict(config, output_dir=str(tmp_path / "full")), tmp_path / "full.yaml")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert full.wait(timeout=300) == 0, full.stderr.read()
    a = json.loads((killed / "results.json").read_text())
    b = json.loads((tmp_path / "full" / "results.json").read_text())
    assert a["resumed_from_step"] == at and b["resumed_from_step"] is None
    assert len(a["step_losses"]) == len(b["step_losses"]) > at
    assert a["step_losses"] == b["step_losses"]
    # Every epoch's record too: the interrupted epoch's train_loss covers all its steps.
    assert json.dumps(a["history"]) == json.dumps(b["history"])  # NaN-safe
    assert a["test_accuracy"] == b["test_accuracy"]
    return a, b


@pytest.fixture
def train_process():
    """(launch, checkpoint_step, finish_both) for tests that kill a real training process."""
    return launch_train, checkpoint_step, finish_both
