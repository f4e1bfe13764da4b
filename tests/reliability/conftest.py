"""Fixtures the reliability tables share (request them; none is autouse)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import datasets
import numpy as np
import pytest

HERE = Path(__file__).resolve().parent


def _load_by_path(path: Path, name: str) -> ModuleType:
    """A helper module of another test folder (the suite imports tests by path, so it has no
    importable name)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# tests/generation/conftest.py: the tiny causal LM and reward model (no download).
GENERATION = _load_by_path(HERE.parent / "generation" / "conftest.py", "_reliability_gen_models")


@pytest.fixture(scope="session")
def generation_models() -> ModuleType:
    """tests/generation/conftest.py as a module: ``save_tiny_causal_lm``, ``CHAT_TEMPLATE`` ..."""
    return GENERATION


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> str:
    """A 2-layer Llama folder with a byte-level tokenizer, shared by the whole suite: copy it
    before changing it."""
    return GENERATION.save_tiny_causal_lm(tmp_path_factory.mktemp("tiny_lm"))


@pytest.fixture(scope="session")
def tiny_reward_model(tmp_path_factory) -> str:
    """A 1-layer BERT sequence classifier (one logit) with its tokenizer, shared: copy it
    before changing it."""
    return GENERATION.save_tiny_reward_model(tmp_path_factory.mktemp("tiny_rm"))


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No network; relative paths land in tmp_path; this folder's helper modules (named by
    import path in configs, e.g. ``guard_fns:CentroidNet``) are importable."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(HERE))


def _three_class_table(path: Path, labels, seed: int, nan_row: int | None = None, **extra) -> str:
    """A parquet table of 64 features per row, each class around its own centre (the same
    centres in every table, and in ``guard_fns.CentroidNet``), plus ``extra`` columns;
    ``nan_row``: a NaN in that row's features."""
    labels = np.asarray(labels)
    centres = np.random.default_rng(1234).normal(0.0, 1.0, (int(labels.max()) + 1, 64))
    pixels = centres[labels] + np.random.default_rng(seed).normal(0.0, 0.5, (len(labels), 64))
    if nan_row is not None:
        pixels[nan_row, 10] = np.nan
    columns = {"pixels": pixels.astype("float32").tolist(), "label": labels.tolist(), **extra}
    datasets.Dataset.from_dict(columns).to_parquet(str(path))
    return str(path)


@pytest.fixture(scope="session")
def three_class_table():
    """``three_class_table(path, labels, seed, nan_row=None, **extra_columns) -> path``."""
    return _three_class_table
