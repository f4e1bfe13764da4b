"""How a data split is read and turned into model inputs."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from rsft.config import ConfigError, opt, section

FORMATS = ("imagefolder", "csv", "json", "parquet", "hf", "tensors")

# ``feature_columns: all``: every numeric column that has no other role.
ALL_FEATURES = "all"

# File suffix -> format, for ``format: None``. Directories are told apart by their content.
SUFFIX_FORMATS = {
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".safetensors": "tensors",
}


@section("data")
@dataclass
class DataConfig:
    """Where the inputs and labels of a split live, and how images and text are prepared.

    One config serves every split of a run (train, eval, unlabelled target), so columns
    are named once and all splits are prepared the same way.
    """

    format: str | None = opt(
        None,
        help="imagefolder | csv | json | parquet | hf (a save_to_disk folder) | tensors (a "
        ".safetensors file of named tensors); inferred from the path when unset.",
    )
    label_column: str = opt("label", help="Column holding the class (name or integer).")
    feature_columns: list[str] | str | None = opt(
        None,
        help="Numeric input columns (scalars or fixed-length lists), concatenated in order; `all`: "
        "every numeric column of the training table except the label, group, text and image "
        "columns, the weight columns that rejection names (rejection.column, "
        "rejection.balance_column) and data.exclude_columns.",
    )
    exclude_columns: list[str] = opt(
        factory=list,
        help="With feature_columns: all, columns that are not features either (row ids, "
        "other targets, anything that would leak the label).",
    )
    text_column: str | None = opt(
        None, help="Column of text to tokenize (with the model's tokenizer)."
    )
    image_column: str = opt("image", help="Column of image paths (relative to the table's folder).")
    resize: int = opt(
        256,
        ge=1,
        what="a positive integer",
        help="Images: resize the shortest edge to this many pixels (256/224 suit ImageNet-size "
        "models; for small images and a model made for them, use the size it takes).",
    )
    crop: int = opt(
        224, ge=1, what="a positive integer", help="Images: then center-crop to crop x crop."
    )
    follow_links: bool = opt(
        False,
        help="Image folders: also follow links (to files or folders) that lead out of the "
        "folder; without it such a link is refused, naming it. Set it when a class folder is "
        "itself a link to a dataset elsewhere. Links inside the folder are always followed "
        "(a linked image takes the class of the folder the link is in); a link to a folder "
        "above it, or to a folder read anyway, is refused either way.",
    )
    mean: list[float] = opt(factory=lambda: [0.485, 0.456, 0.406], help="Images: RGB mean.")
    std: list[float] = opt(factory=lambda: [0.229, 0.224, 0.225], help="Images: RGB std.")
    max_length: int = opt(
        128, ge=1, what="a positive integer", help="Text: truncate to this many tokens."
    )
    group_column: str | None = opt(None, help="Column of group ids (for balance weighting).")
    input_tensors: list[str] | None = opt(
        None,
        help="format: tensors, the tensors passed to the model (one: positionally; several: "
        "by name); default: every tensor of 2 or more dimensions but the label.",
    )

    def role_columns(self) -> set[str]:
        """Columns with a role other than input features: ``feature_columns: all`` skips them."""
        named = (self.label_column, self.group_column, self.text_column, self.image_column)
        return {c for c in named if c} | set(self.exclude_columns)

    def __post_init__(self) -> None:
        # Checked here so a typo in a YAML config fails when it is read, not mid-run.
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(
                f"data.format {self.format!r} is not supported; use one of {list(FORMATS)} "
                "or leave it unset to infer it from the path."
            )
        for name in ("resize", "crop", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"data.{name} must be a positive integer, got {value!r}.")
        for name in ("mean", "std"):
            raw = getattr(self, name)
            try:
                value = list(raw)
            except TypeError:  # one number, not a list of three
                value = [raw]
            numbers = all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
            if len(value) != 3 or not numbers:
                raise ConfigError(
                    f"data.{name} must be three finite numbers (one per RGB channel), got {raw!r}."
                )
            setattr(self, name, [float(v) for v in value])
        if any(v <= 0 for v in self.std):
            raise ConfigError(f"data.std must be positive, got {self.std!r}.")
        if isinstance(self.feature_columns, str) and self.feature_columns != ALL_FEATURES:
            self.feature_columns = [self.feature_columns]
        if self.exclude_columns and self.feature_columns != ALL_FEATURES:
            raise ConfigError(
                "data.exclude_columns applies to feature_columns: all only; with named "
                "feature_columns leave the other columns out of that list instead."
            )
        if self.feature_columns is not None and not self.feature_columns:
            raise ConfigError(
                "data.feature_columns is an empty list; name the numeric columns, or leave "
                "it unset for image or text data."
            )
        self.exclude_columns = list(self.exclude_columns)
        if self.input_tensors is not None and not self.input_tensors:
            raise ConfigError(
                "data.input_tensors is an empty list; name the model's input tensors, or "
                "leave it unset to use every tensor of 2 or more dimensions but the label."
            )
        if self.feature_columns is not None and self.text_column is not None:
            raise ConfigError(
                "data.feature_columns and data.text_column are both set; a model takes one "
                "kind of input, so set only one of them."
            )


def with_feature_columns(cfg: DataConfig, columns: list[str] | None) -> DataConfig:
    """``cfg`` reading exactly ``columns``: the other splits of a ``feature_columns: all``
    run read the training table's resolved columns, so every split has the same features."""
    if cfg.feature_columns != ALL_FEATURES or columns is None:
        return cfg
    return dataclasses.replace(cfg, feature_columns=list(columns), exclude_columns=[])
