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
