"""The embedded default task: scikit-learn's handwritten digits under a domain shift.

Everything here is built from data that ships with scikit-learn
(:func:`sklearn.datasets.load_digits`: 1797 greyscale 8x8 images, values 0..16), so
the task works offline.

Two domains:

* **source**: the digits as shipped, scaled to [0, 1];
* **target**: the same kind of digits with a visible style change (strokes thickened
  by a 2x2 grey dilation, the image shifted one pixel down and right, plus Gaussian
  noise) and a class-prior shift (classes 0-4 are three times as likely as 5-9).

:func:`build_digits_task` splits the underlying images into disjoint sets (split
first, then apply styles) and writes them as parquet files:

``pretrain``            source style, uniform classes (builds the "pretrained" model)
``pool``                labelled fine-tuning pool: ~75% source / ~25% target style,
                        classes skewed the other way (5-9 over-represented)
``target_val``          small labelled target set, per-epoch evaluation
``target_unlabelled``   target images with no ``label`` column (density-ratio fitting)
``target_test``         held-out labelled target set, the final metric

Columns: ``pixels`` (64 float32, scaled to [0, 1] then normalised with
:data:`PIXEL_MEAN` / :data:`PIXEL_STD`), ``label`` (int 0..9; absent in
``target_unlabelled``), ``style`` (``"source"`` / ``"target"``) and ``digit_id`` (the
row index in ``load_digits``).

:class:`DigitsNet` is a tiny CNN for these inputs whose layout (``blocks`` +
``classifier``) matches what rsft's freezing and head-replacement code expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rsft.plots.figure import new_figure, save_figure

NUM_CLASSES = 10
IMAGE_SIDE = 8
NUM_PIXELS = IMAGE_SIDE * IMAGE_SIDE

# Mean and standard deviation of all source-style load_digits pixels after scaling to
# [0, 1] (images / 16). Fixed constants so every split shares one normalisation.
PIXEL_MEAN = 0.30526
PIXEL_STD = 0.37605

# Target style.
TARGET_DILATION = 2  # grey_dilation footprint (TARGET_DILATION x TARGET_DILATION)
TARGET_SHIFT = 1  # pixels, down and right, zero-filled
TARGET_NOISE_STD = 0.1  # additive Gaussian noise, in [0, 1] pixel units

# Class priors. Target: classes 0-4 three times as likely as 5-9.
TARGET_PRIORS = np.array([3.0] * 5 + [1.0] * 5) / 20.0

# Split sizes. The target splits are drawn per class from TARGET_PRIORS; the pool
# takes every image left over, which makes it skewed towards 5-9.
PRETRAIN_PER_CLASS = 60
TARGET_VAL_SIZE = 100
TARGET_UNLABELLED_SIZE = 200
TARGET_TEST_SIZE = 200
POOL_TARGET_FRACTION = 0.25

SPLITS = ("pretrain", "pool", "target_val", "target_unlabelled", "target_test")
SOURCE = "source"
TARGET = "target"


# --------------------------------------------------------------------------- model


class DigitsNet(nn.Module):
    """A small CNN for 8x8 digits.

    ``blocks`` holds three stages (conv; conv + 2x2 max-pool; flatten + linear + ReLU +
    dropout to a hidden vector of size ``2 * width``) and ``classifier`` is the linear
    head. Inputs are normalised pixels of shape ``(B, 64)`` or ``(B, 1, 8, 8)``.
    """

    def __init__(self, num_labels: int = NUM_CLASSES, width: int = 32, dropout: float = 0.1):
        super().__init__()
        self.num_labels = num_labels
        self.width = width
        self.hidden_size = 2 * width
        pooled = IMAGE_SIDE // 2
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(1, width, kernel_size=3, padding=1), nn.ReLU()),
                nn.Sequential(
                    nn.Conv2d(width, width, kernel_size=3, padding=1),
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                ),
                nn.Sequential(
                    nn.Flatten(),
                    nn.Linear(width * pooled * pooled, self.hidden_size),
                    nn.ReLU(),
                    nn.Dropout(dropout),
                ),
            ]
        )
        self.classifier = nn.Linear(self.hidden_size, num_labels)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """The hidden vector before the head, shape ``(B, hidden_size)``."""
        x = features.float()
        if x.dim() == 2:
            x = x.view(x.shape[0], 1, IMAGE_SIDE, IMAGE_SIDE)
        elif x.dim() == 3:
            x = x.unsqueeze(1)
        if tuple(x.shape[1:]) != (1, IMAGE_SIDE, IMAGE_SIDE):
            raise ValueError(
                f"DigitsNet expects (B, 64) or (B, 1, 8, 8) inputs, got {tuple(features.shape)}"
            )
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(features))


# --------------------------------------------------------------------------- styles


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """All load_digits images scaled to [0, 1] as ``(1797, 8, 8)`` float64, and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images / 16.0, digits.target.astype(np.int64)


def apply_target_style(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Target style for ``(N, 8, 8)`` images in [0, 1]: thicker, shifted, noisy."""
    from scipy import ndimage

    images = np.asarray(images, dtype=np.float64)
    size = (1, TARGET_DILATION, TARGET_DILATION)  # no dilation across the batch axis
    out = ndimage.grey_dilation(images, size=size)
    s = TARGET_SHIFT
    shifted = np.zeros_like(out)
    shifted[:, s:, s:] = out[:, : IMAGE_SIDE - s, : IMAGE_SIDE - s]
    shifted += rng.normal(0.0, TARGET_NOISE_STD, size=shifted.shape)
    return np.clip(shifted, 0.0, 1.0)


def normalize(images: np.ndarray) -> np.ndarray:
    """``(N, 8, 8)`` images in [0, 1] -> ``(N, 64)`` float32 normalised pixels."""
    flat = np.asarray(images, dtype=np.float64).reshape(len(images), NUM_PIXELS)
    return ((flat - PIXEL_MEAN) / PIXEL_STD).astype(np.float32)


def denormalize(pixels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize`: ``(N, 64)`` -> ``(N, 8, 8)`` in [0, 1]."""
    flat = np.asarray(pixels, dtype=np.float64) * PIXEL_STD + PIXEL_MEAN
    return flat.reshape(len(flat), IMAGE_SIDE, IMAGE_SIDE)


# --------------------------------------------------------------------------- splits


def _counts(total: int, priors: np.ndarray) -> np.ndarray:
    """Integer per-class counts summing to ``total`` (largest-remainder rounding)."""
    raw = total * priors
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def split_indices(labels: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Disjoint load_digits indices per split, before any style is applied.

    Pretrain takes :data:`PRETRAIN_PER_CLASS` per class; the three target splits are
    stratified by :data:`TARGET_PRIORS`; the pool gets everything left.
    """
    rng = np.random.default_rng(seed)
    sizes = {
        "target_val": _counts(TARGET_VAL_SIZE, TARGET_PRIORS),
        "target_unlabelled": _counts(TARGET_UNLABELLED_SIZE, TARGET_PRIORS),
        "target_test": _counts(TARGET_TEST_SIZE, TARGET_PRIORS),
    }
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for c in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for name, n in [("pretrain", PRETRAIN_PER_CLASS)] + [(k, v[c]) for k, v in sizes.items()]:
            if start + n > len(idx):
                raise ValueError(f"class {c}: not enough images for split {name!r}")
            parts[name].append(idx[start : start + n])
            start += n
        parts["pool"].append(idx[start:])
    # Shuffle within each split so rows are not grouped by class.
    return {name: rng.permutation(np.concatenate(parts[name])) for name in SPLITS}


def build_digits_arrays(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """The task as in-memory columns: split -> {pixels, label, style, digit_id}.

    ``target_unlabelled`` has no ``label``. Deterministic for a given ``seed``.
    """
    images, labels = load_digit_images()
    indices = split_indices(labels, seed)
    rng = np.random.default_rng([seed, 1])  # separate stream for styles and noise
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in SPLITS:
        idx = indices[name]
        if name == "pretrain":
            is_target = np.zeros(len(idx), dtype=bool)
        elif name == "pool":
            is_target = np.zeros(len(idx), dtype=bool)
            n_target = int(round(POOL_TARGET_FRACTION * len(idx)))
            is_target[rng.choice(len(idx), size=n_target, replace=False)] = True
        else:
            is_target = np.ones(len(idx), dtype=bool)
        styled = images[idx].copy()
        if is_target.any():
            styled[is_target] = apply_target_style(styled[is_target], rng)
        columns = {
            "pixels": normalize(styled),
            "label": labels[idx],
            "style": np.where(is_target, TARGET, SOURCE),
            "digit_id": idx.astype(np.int64),
        }
        if name == "target_unlabelled":
            del columns["label"]
        out[name] = columns
    return out


def build_digits_task(out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write the five splits as parquet files into ``out_dir``; return split -> path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, cols in build_digits_arrays(seed).items():
        arrays = {"pixels": pa.array(list(cols["pixels"]), type=pa.list_(pa.float32()))}
        if "label" in cols:
            arrays["label"] = pa.array(cols["label"], type=pa.int64())
        arrays["style"] = pa.array(cols["style"].tolist(), type=pa.string())
        arrays["digit_id"] = pa.array(cols["digit_id"], type=pa.int64())
        path = out_dir / f"{name}.parquet"
        pq.write_table(pa.table(arrays), path)
        paths[name] = path
    return paths


# --------------------------------------------------------------------------- docs


def render_examples(
    path_png: str | Path, n: int = 10, seed: int = 0, digits: Sequence[int] | None = None
) -> Path:
    """Save a PNG grid: top row source style, bottom row the same images in target style."""
    images, labels = load_digit_images()
    wanted = list(digits) if digits is not None else list(range(n))
    idx = np.array([np.flatnonzero(labels == d % NUM_CLASSES)[0] for d in wanted])
    source = images[idx]
    target = apply_target_style(source, np.random.default_rng(seed))
    fig = new_figure(figsize=(1.0 * len(idx), 2.3))
    axes = fig.subplots(2, len(idx), squeeze=False)
    for j in range(len(idx)):
        for i, (row, name) in enumerate([(source, SOURCE), (target, TARGET)]):
            ax = axes[i, j]
            ax.imshow(row[j], cmap="gray_r", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name)
        axes[0, j].set_title(str(labels[idx[j]]))
    fig.tight_layout()
    return save_figure(fig, path_png, dpi=100)


__all__ = [
    "DigitsNet",
    "NUM_CLASSES",
    "PIXEL_MEAN",
    "PIXEL_STD",
    "SPLITS",
    "TARGET_PRIORS",
    "apply_target_style",
    "build_digits_arrays",
    "build_digits_task",
    "denormalize",
    "load_digit_images",
    "normalize",
    "render_examples",
    "split_indices",
]
