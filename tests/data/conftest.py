"""Fixtures for the data tests: tiny image folders and tables written to tmp_path."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test may reach the network (datasets reads its flag at import, so patch both)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)


# Helpers are handed out as fixtures: with --import-mode=importlib test modules cannot
# import conftest.


def _write_image(path: Path, rng: np.random.Generator) -> Path:
    """A random RGB PNG/JPEG of random size, so resizing and cropping are exercised."""
    height, width = int(rng.integers(20, 60)), int(rng.integers(20, 60))
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _make_image_folder(root: Path, classes=("cat", "dog", "eel"), per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        for i in range(per_class):
            _write_image(root / name / f"{i}.png", rng)
    return root


@pytest.fixture
def write_image():
    return _write_image


@pytest.fixture
def make_image_folder():
    return _make_image_folder


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """3 classes x 4 images; created in unsorted order to check that classes come out sorted."""
    return _make_image_folder(tmp_path / "train", classes=("eel", "cat", "dog"))
