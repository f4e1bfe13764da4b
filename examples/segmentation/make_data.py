"""Generate the segmentation example's data: shapes on images of two styles, offline, seeded.

    python examples/segmentation/make_data.py data/segmentation

Every image holds 1 to 3 shapes, each a circle (class 1) or a square (class 2), on a
background (class 0); the mask gives each pixel's class. Two styles draw the same scenes:

- *studio* (the source): saturated, bright shapes on a dark, plain background;
- *fog* (the target): shapes a little lighter or darker than a striped, noisy, bluish
  background: low contrast, and a texture the studio style never has.

The labelled training pool is mostly studio (``--target-share`` of fog, 10% by default); the
validation and test sets and an unlabelled target set are fog. Each split is one
``.safetensors`` file (rsft's ``data.format: tensors``): ``pixel_values`` (float32, N x 3 x
S x S, centred on 0), ``mask`` (uint8, N x S x S) and, in the pool, ``style`` (0 studio,
1 fog: a 1-D column, for reading the results; the model never sees it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file


def draw_scene(rng: np.random.Generator, size: int) -> tuple[list, np.ndarray]:
    """1-3 shapes: each one's boolean mask, and the class mask they make (later shapes on top)."""
    yy, xx = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), dtype=np.uint8)
    shapes = []
    for _ in range(rng.integers(1, 4)):
        kind = int(rng.integers(1, 3))
        r = rng.uniform(size / 10, size / 4.5)
        cy, cx = rng.uniform(r, size - r, 2)
        if kind == 1:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        mask[inside] = kind
        shapes.append(inside)
    return shapes, mask


def render(rng: np.random.Generator, shapes: list, size: int, style: str) -> np.ndarray:
    """The RGB image (3 x S x S, in [0, 1]) of a scene in one style."""
    if style == "studio":
        image = np.ones((3, size, size)) * rng.uniform(0.02, 0.25, (3, 1, 1))
        for inside in shapes:
            color = rng.uniform(0.2, 1.0, 3)
            color[rng.integers(3)] = 1.0  # saturated, bright
            image[:, inside] = color[:, None]
        noise = 0.03
    else:
        yy, xx = np.mgrid[0:size, 0:size]
        angle, freq = rng.uniform(0, np.pi), rng.uniform(0.5, 1.2)
        stripes = 0.12 * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))
        base = rng.uniform(0.4, 0.6) + stripes
        image = np.stack([base * 0.85, base * 0.95, base * 1.1])
        for inside in shapes:
            shift = rng.choice([-1, 1]) * rng.uniform(0.12, 0.25)
            image[:, inside] += shift
        noise = 0.08
    image = image + rng.normal(0, noise, image.shape)
    return np.clip(image, 0, 1)


def make_split(rng: np.random.Generator, n: int, size: int, fog_share: float) -> dict:
    """``n`` scenes, each fog with probability ``fog_share``: the split's tensors."""
    images, masks, styles = [], [], []
    for _ in range(n):
        shapes, mask = draw_scene(rng, size)
        fog = bool(rng.random() < fog_share)
        images.append(render(rng, shapes, size, "fog" if fog else "studio"))
        masks.append(mask)
        styles.append(int(fog))
    return {
        "pixel_values": torch.tensor(np.stack(images) - 0.5, dtype=torch.float32),
        "mask": torch.tensor(np.stack(masks)),
        "style": torch.tensor(styles, dtype=torch.int64),
    }


def make(
    out: str | Path,
    *,
    size: int = 32,
    pool: int = 400,
    val: int = 100,
    test: int = 300,
    target: int = 300,
    target_share: float = 0.1,
    seed: int = 0,
) -> dict[str, int]:
    """Write train/val/test/target_unlabelled ``.safetensors`` into ``out``; their sizes."""
    if size % 4:
        raise ValueError(f"--size must be a multiple of 4 (the U-Net halves it twice), got {size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {
        "train": make_split(rng, pool, size, target_share),
        "val": make_split(rng, val, size, 1.0),
        "test": make_split(rng, test, size, 1.0),
        "target_unlabelled": make_split(rng, target, size, 1.0),
    }
    for name, tensors in splits.items():
        if name != "train":
            del tensors["style"]  # every sample is fog
        if name == "target_unlabelled":
            del tensors["mask"]  # unlabelled: what the target task offers before labelling
        save_file(tensors, str(out / f"{name}.safetensors"))
    sizes = {name: len(t["pixel_values"]) for name, t in splits.items()}
    sizes["fog_in_pool"] = int(splits["train"]["style"].sum())
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output folder, e.g. data/segmentation")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--pool", type=int, default=400, help="labelled training images")
    parser.add_argument("--val", type=int, default=100)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--target", type=int, default=300, help="unlabelled fog images")
    parser.add_argument("--target-share", type=float, default=0.1, help="fog share of the pool")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = make(**vars(args))  # the options are make()'s keywords
    print(json.dumps(sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
