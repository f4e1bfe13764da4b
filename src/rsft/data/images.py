"""Images: the default transform, lazy per-sample loading, and the image-folder layout."""

from __future__ import annotations

import glob
import io
import os
import statistics
import warnings
from pathlib import Path
from typing import Any

import datasets
import torch
from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder
from PIL import Image
from transformers import BitImageProcessorPil
from transformers.image_utils import PILImageResampling

from rsft.data.config import DataConfig
from rsft.data.datasets_io import load_builder
from rsft.data.split import Collate, ItemDataset, Split
from rsft.data.validate import (
    DataError,
    encode_labels,
    require_rows,
    require_two_classes,
    verify_images,
)
from rsft.data.walk import walk_files

# The extensions datasets' imagefolder reads; files with others are ignored by both.
IMAGE_EXTENSIONS = frozenset(ext.lower() for ext in ImageFolder.EXTENSIONS)

# Images are "far smaller" than the transform when it upscales them this many times or more.
FAR_SMALLER = 4
# How many images (evenly spaced) the size check reads the header of.
SIZE_SAMPLE = 32


class SmallImagesWarning(UserWarning):
    """data.resize / data.crop would upscale the images many times."""


def default_image_processor(cfg: DataConfig) -> BitImageProcessorPil:
    """Resize the shortest edge, center-crop, rescale to [0, 1], normalize with mean/std:
    the usual ImageNet evaluation transform. The PIL backend needs no torchvision."""
    return BitImageProcessorPil(
        size={"shortest_edge": cfg.resize},
        crop_size={"height": cfg.crop, "width": cfg.crop},
        resample=PILImageResampling.BILINEAR,
        do_resize=True,
        do_center_crop=True,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(cfg.mean),
        image_std=list(cfg.std),
        do_convert_rgb=True,
    )


def check_image_size(sample: list[tuple[str, str | bytes]], cfg: DataConfig, source: str) -> None:
    """Warn when ``cfg.resize``/``cfg.crop`` (made for ImageNet-size photos) are far larger
    than the images: each would be upscaled several times, which costs compute, blurs them,
    and is not the input a model made for small images expects."""
    edges = []
    for _, src in sample:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as image:
            edges.append(min(image.size))  # the header only: nothing is decoded
    if not edges:
        return
    edge = int(statistics.median(edges))
    factor = max(cfg.resize, cfg.crop) / max(edge, 1)
    if factor < FAR_SMALLER:
        return
    warnings.warn(
        f"the images of {source} are far smaller than the image transform: their shortest "
        f"edge is {edge} px (median of {len(edges)}), but data.resize is {cfg.resize} and "
        f"data.crop is {cfg.crop}, so every image is upscaled {factor:.0f}x. Set data.resize "
        f"and data.crop to the size your model takes (e.g. data.resize={edge} "
        f"data.crop={edge}); keep the defaults only for a model that expects 224 x 224 "
        "input (ImageNet-pretrained ones).",
        SmallImagesWarning,
        stacklevel=2,
    )


def image_processor(
    processor: Any, cfg: DataConfig, sample: list[tuple[str, str | bytes]], source: str
) -> Any:
    """The model's own image processor, else the default transform (checked against the
    images' size, :func:`check_image_size`)."""
    if processor is not None:
        return processor
    check_image_size(sample, cfg, source)
    return default_image_processor(cfg)


def sample_indices(n: int) -> list[int]:
    """Up to :data:`SIZE_SAMPLE` evenly spaced indices of ``range(n)``."""
    return sorted({i * n // SIZE_SAMPLE for i in range(SIZE_SAMPLE)} & set(range(n)))


def image_source(value: Any, base_dir: Path, where: str) -> tuple[str, str | bytes]:
    """(name for messages, path or bytes) of one image cell: a path (relative ones resolve
    against ``base_dir``), or a datasets Image cell ``{"bytes", "path"}``."""
    if isinstance(value, dict):
        if value.get("bytes"):
            stored = value.get("path")
            return (f"{where} (stored as {stored})" if stored else where), value["bytes"]
        value = value.get("path")
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise DataError(
            f"{where} has no image (value {value!r}); image cells must be a file path or "
            "image bytes. Fill or drop that row."
        )
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    return str(path), str(path)


class ImageInputs:
    """``pixel_values`` of row i, decoded and transformed only when asked for."""

    def __init__(
        self, table: datasets.Dataset, column: str, base_dir: Path, processor: Any, source: str
    ) -> None:
        self.table = table
        self.column = column
        self.base_dir = base_dir
        self.processor = processor
        self.source = source

    def __call__(self, i: int) -> dict[str, torch.Tensor]:
        cell = self.table[i][self.column]
        name, src = image_source(cell, self.base_dir, f"row {i} of {self.source}")
        try:
            with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as image:
                image = image.convert("RGB")
        except Exception as err:  # the file changed since loading, or only fails on decode
            raise DataError(
                f"image {name} cannot be read ({type(err).__name__}: {err}); replace or delete it."
            ) from err
        pixels = self.processor(images=image, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels[0]}


def table_image_sources(table: datasets.Dataset, column: str, base_dir: Path, source: str):
    """Yield (name, path or bytes) of every image cell, reading the table in chunks so
    embedded image bytes are never all in memory at once."""
    for start in range(0, len(table), 1024):
        for offset, value in enumerate(table[start : start + 1024][column]):
            yield image_source(value, base_dir, f"row {start + offset} of {source}")


def _visible(name: str) -> bool:
    # Mirrors what datasets skips when it lists a folder (dot files, __MACOSX-like folders).
    return not name.startswith((".", "__"))


def _image_file(name: str) -> bool:
    return _visible(name) and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def scan_image_folder(root: Path, follow_links: bool = False) -> tuple[list[Path], list[Path]]:
    """(image files, top-level subfolders) under ``root``, sorted. A link is read where it
    sits (its images take the class of the folder the link is in); loops, and links out of
    ``root`` unless ``follow_links``, are refused (:func:`rsft.data.walk.walk_files`)."""
    files = walk_files(root, follow_links=follow_links, keep_dir=_visible, keep_file=_image_file)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p.name))
    return files, folders


def load_image_folder(
    root: Path,
    cfg: DataConfig,
    *,
    classes: list[str] | None,
    labelled: bool,
    processor: Any,
) -> Split:
    """``root/<class>/<image>`` (images may sit deeper inside the class folder). Unlabelled
    folders may hold images anywhere, class folders or not."""
    if cfg.feature_columns is not None or cfg.text_column is not None:
        raise DataError(
            f"{root} is an image folder, but data.feature_columns/text_column are set; "
            "unset them for image data, or point the split at a table."
        )
    files, folders = scan_image_folder(root, cfg.follow_links)
    require_rows(len(files), f"image folder {root} (no image files found anywhere below it)")
    rel = [f.relative_to(root) for f in files]
    folder_of = {str(f): (r.parts[0] if len(r.parts) > 1 else None) for f, r in zip(files, rel)}
    if labelled:
        loose = [str(f) for f, r in zip(files, rel) if len(r.parts) == 1]
        if loose:
            raise DataError(
                f"{len(loose)} image(s) lie directly in {root} (e.g. {loose[0]}); a labelled "
                f"image folder needs one subfolder per class: {root}/<class>/<image>. Move "
                "them into class folders, or load the split as unlabelled."
            )
        used = set(folder_of.values())
        empty = [str(p) for p in folders if p.name not in used]
        if empty:
            raise DataError(
                f"class folder(s) {empty} hold no images (readable extensions: .png, .jpg, "
                ".jpeg, .bmp, .webp, .tif, ...). Add images, or delete the folder if it is not "
                "a class."
            )

    # datasets reads the file list we found (escaped: names like "a[1].png" are literal),
    # not ``data_dir``: with data_dir it treats folders named train/test/val as splits and
    # silently drops the other class folders. It lists no folder itself and keeps each
    # path as given (a link's own path, not its target's), so the walk above decides alone.
    table = load_builder(
        "imagefolder",
        source=str(root),
        data_files={"train": [glob.escape(str(f)) for f in files]},
        drop_labels=True,
        drop_metadata=True,
    ).cast_column("image", datasets.Image(decode=False))
    paths = [os.path.normpath(cell["path"]) for cell in table["image"]]
    unread = sorted(set(folder_of) - set(paths))
    if unread:
        raise DataError(f"datasets did not read {len(unread)} image(s) of {root}: {unread[:5]}.")
    names = [folder_of.get(p) for p in paths]
    raw = datasets.Dataset.from_dict({"path": paths, "label": names})
    verify_images(((p, p) for p in paths), f"image folder {root}")

    labels = None
    if labelled:
        training = classes is None
        if training:
            classes = sorted(set(names))
        labels = encode_labels(names, classes, f"the class folders of {root}", unit="image")
        if training:
            require_two_classes(labels, classes, f"image folder {root}")
    processor = image_processor(
        processor, cfg, [(paths[i], paths[i]) for i in sample_indices(len(paths))], str(root)
    )
    inputs = ImageInputs(raw, "path", root, processor, str(root))
    return Split(
        dataset=ItemDataset(len(raw), inputs, labels),
        classes=list(classes or []),
        labels=labels,
        input_kind="pixel_values",
        collate=Collate(),
        table=raw,
        source=str(root),
        format="imagefolder",
    )
