import sys

import numpy as np
import pytest
from datasets import Dataset


def write_table(path, n=48, seed=0, weights=None):
    """A tiny table of 8 features and 3 separable classes (shared centres)."""
    centers = np.random.default_rng(1234).normal(0, 1, (3, 8))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    x = centers[labels] + rng.normal(0, 0.8, (n, 8))
    cols = {"x": x.astype("float32").tolist(), "label": labels.tolist()}
    if weights is not None:
        cols["w"] = list(weights)
    Dataset.from_dict(cols).to_parquet(str(path))
    return str(path)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    for name in ("WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tiny_run(tmp_path):
    """A complete rsft train config of a small MLP on a table: rejection by a 0/1 column
    (half the rows), an eval and a test split, two epochs of three steps."""
    return {
        "model": {
            "path": "rsft.tasks.mlp:MLP",
            "kwargs": {"in_features": 8, "hidden": 16},
            "freeze": "none",
        },
        "data": {
            "train": write_table(tmp_path / "train.parquet", weights=[0.0, 1.0] * 24),
            "eval": write_table(tmp_path / "eval.parquet", n=20, seed=1),
            "test": write_table(tmp_path / "test.parquet", n=20, seed=2),
            "feature_columns": ["x"],
        },
        "rejection": {"weights": "column", "column": "w"},
        "optim": {"name": "sgd", "lr": 0.05},
        "epochs": 2,
        "batch_size": 8,
        "output_dir": str(tmp_path / "run"),
        "progress": False,
    }


@pytest.fixture
def trackio_dir(tmp_path, monkeypatch):
    """trackio's store in tmp_path. trackio reads TRACKIO_DIR once, when first imported
    (TRL imports it when it loads), so its modules' copies are pointed there too."""
    pytest.importorskip("trackio")
    folder = tmp_path / "trackio"
    monkeypatch.setenv("TRACKIO_DIR", str(folder))
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "trackio" and hasattr(module, "TRACKIO_DIR"):
            monkeypatch.setattr(module, "TRACKIO_DIR", folder)
    return folder
