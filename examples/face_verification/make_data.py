"""Generate the face-verification example's data: synthetic identities, long-tailed, seeded.

    python examples/face_verification/make_data.py data/faces

A "face" is a greyscale S x S image: an oval every face shares, plus features that make an
identity (a few Gaussian blobs of identity-specific places, sizes and contrasts). Each image
of an identity moves and jitters the features a little (pose), changes the lighting (gain,
offset, a gradient across the face) and adds noise.

The training pool is long-tailed, as face data sets are: identity k (k = 1..``--ids``) has
about ``--head`` * k^-``--alpha`` images, at least ``--min-count`` (the defaults give 120
down to 5). Validation and test sets hold pairs of new images of the same identities, with
every identity in equally many pairs, half of the pairs "same", half "different".

Each split is one ``.safetensors`` file (rsft's ``data.format: tensors``): ``pixel_values``
(float32, N x 1 x S x S) and ``identity`` (int64, N; the label, and a 1-D column that
``rejection.weights: balance`` and weight functions read). In val and test, items 2k and
2k+1 form pair k.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

BLOBS = 6


def identities(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Each identity's features: rows of (y, x, sigma, amplitude), in units of the side."""
    out = []
    for _ in range(n):
        y = rng.uniform(0.3, 0.75, BLOBS)
        x = rng.uniform(0.3, 0.7, BLOBS)
        sigma = rng.uniform(0.04, 0.09, BLOBS)
        amp = rng.choice([-1, 1], BLOBS) * rng.uniform(0.4, 0.9, BLOBS)
        out.append(np.stack([y, x, sigma, amp], 1))
    return out


def render(rng: np.random.Generator, features: np.ndarray, size: int) -> np.ndarray:
    """One image of an identity: pose jitter, lighting and noise (1 x S x S)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    dy, dx = rng.normal(0, 0.04, 2)  # the whole face moves
    face = 0.6 * np.exp(-((((yy - 0.5 - dy) / 0.38) ** 2 + ((xx - 0.5 - dx) / 0.3) ** 2) ** 2))
    for y, x, sigma, amp in features:
        y, x = y + dy + rng.normal(0, 0.015), x + dx + rng.normal(0, 0.015)
        a = amp * rng.uniform(0.8, 1.2)
        face += a * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
    angle = rng.uniform(0, 2 * np.pi)
    light = rng.uniform(-0.3, 0.3) * (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5))
    image = rng.uniform(0.7, 1.3) * face + rng.uniform(-0.2, 0.2) + light
    return (image + rng.normal(0, 0.12, image.shape))[None].astype(np.float32)


def pool_counts(ids: int, head: int, alpha: float, min_count: int) -> list[int]:
    return [max(min_count, round(head * k**-alpha)) for k in range(1, ids + 1)]


def make_pairs(rng: np.random.Generator, feats: list, n_pairs: int, size: int) -> dict:
    """``n_pairs`` pairs, half same, half different, every identity equally often first."""
    images, ids = [], []
    n = len(feats)
    for k in range(n_pairs):
        a = k % n
        b = a if k % 2 == 0 else int((a + rng.integers(1, n)) % n)
        for identity in (a, b):
            images.append(render(rng, feats[identity], size))
            ids.append(identity)
    return {"pixel_values": torch.tensor(np.stack(images)), "identity": torch.tensor(ids)}


def make(
    out: str | Path,
    *,
    size: int = 24,
    ids: int = 24,
    head: int = 120,
    alpha: float = 1.0,
    min_count: int = 4,
    val_pairs: int = 240,
    test_pairs: int = 600,
    seed: int = 0,
) -> dict[str, int]:
    """Write train/val/test ``.safetensors`` into ``out``; their sizes."""
    if size % 4:
        raise ValueError(
            f"--size must be a multiple of 4 (the encoder halves it twice), got {size}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    feats = identities(rng, ids)
    counts = pool_counts(ids, head, alpha, min_count)
    labels = [k for k, c in enumerate(counts) for _ in range(c)]
    images = [render(rng, feats[k], size) for k in labels]
    train = {"pixel_values": torch.tensor(np.stack(images)), "identity": torch.tensor(labels)}
    save_file(train, str(out / "train.safetensors"))
    save_file(make_pairs(rng, feats, val_pairs, size), str(out / "val.safetensors"))
    save_file(make_pairs(rng, feats, test_pairs, size), str(out / "test.safetensors"))
    return {
        "train": len(labels),
        "largest_identity": counts[0],
        "smallest_identity": counts[-1],
        "val_pairs": val_pairs,
        "test_pairs": test_pairs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output folder, e.g. data/faces")
    parser.add_argument("--size", type=int, default=24, help="image side in pixels")
    parser.add_argument("--ids", type=int, default=24, help="identities")
    parser.add_argument("--head", type=int, default=120, help="images of the largest identity")
    parser.add_argument("--alpha", type=float, default=1.0, help="tail exponent")
    parser.add_argument("--min-count", type=int, default=4, help="images of the rarest identity")
    parser.add_argument("--val-pairs", type=int, default=240)
    parser.add_argument("--test-pairs", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = make(**vars(args))  # the options are make()'s keywords
    print(json.dumps(sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
