"""Named tensors in one ``.safetensors`` file: data that is neither a table nor an image folder.

Segmentation masks, pairs of images, audio frames, embeddings: anything that is already a
tensor per sample. The file holds named tensors with one first dimension (the samples):

- the model's inputs: ``data.input_tensors``, by default every tensor of 2 or more dimensions
  except the label (one input is passed positionally, several by name);
- the label: ``data.label_column``, integers of any shape (one class per sample, or a mask of
  one class per pixel); the classes are its sorted distinct values;
- every other 1-D tensor: a column (``split.column(name)``, e.g. a group for
  ``rejection.weights: balance``, or a field of the rows a weight function receives).

safetensors stores raw numbers and a JSON header, nothing that runs code when read (never
pickle). Every check runs here, before training, and says what to change.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from rsft.data.config import DataConfig
from rsft.data.split import Collate, ItemDataset, Split
from rsft.data.validate import DataError, require_rows

INTEGER_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class TensorInputs:
    """The input tensors of sample i: slices of the tensors read (and checked) at load."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors

    def __call__(self, i: int) -> dict[str, torch.Tensor]:
        return {name: t[i] for name, t in self.tensors.items()}


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, with one first dimension: the samples."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise DataError(
            f"cannot read {path} as safetensors ({type(err).__name__}: {err}). Write it with "
            "safetensors.torch.save_file({name: tensor, ...}, path), or set data.format to "
            "its real format."
        ) from err
    if not tensors:
        raise DataError(f"{path} holds no tensors; save the inputs and the labels in it.")
    scalars = [name for name, t in tensors.items() if t.ndim == 0]
    if scalars:
        raise DataError(
            f"tensor(s) {scalars} of {path} are scalars; every tensor needs a first dimension "
            "of one entry per sample."
        )
    sizes = {name: t.shape[0] for name, t in tensors.items()}
    if len(set(sizes.values())) > 1:
        raise DataError(
            f"the tensors of {path} disagree on the number of samples (their first "
            f"dimension): {sizes}. Every tensor needs one entry per sample."
        )
    require_rows(next(iter(sizes.values())), str(path))
    return tensors


def input_names(tensors: dict[str, torch.Tensor], cfg: DataConfig, source: str) -> list[str]:
    """The model's input tensors: ``data.input_tensors``, or every tensor of ndim >= 2 but
    the label."""
    if cfg.input_tensors is not None:
        missing = [n for n in cfg.input_tensors if n not in tensors]
        if missing:
            raise DataError(
                f"input tensor(s) {missing} not found in {source}. Its tensors: "
                f"{_shapes(tensors)}. Fix data.input_tensors."
            )
        if cfg.label_column in cfg.input_tensors:
            raise DataError(
                f"data.input_tensors names the label tensor {cfg.label_column!r}: the model "
                "would see the answer. Remove it from data.input_tensors."
            )
        return list(cfg.input_tensors)
    names = [n for n, t in tensors.items() if t.ndim >= 2 and n != cfg.label_column]
    if not names:
        raise DataError(
            f"{source} has no model input: no tensor of 2 or more dimensions besides the "
            f"label (its tensors: {_shapes(tensors)}). Name the inputs with data.input_tensors."
        )
    return names


def check_inputs(tensors: dict[str, torch.Tensor], source: str) -> None:
    """Refuse NaN or infinite inputs now: one would make the whole training loss NaN."""
    for name, t in tensors.items():
        if t.is_floating_point():
            bad = ~torch.isfinite(t.reshape(len(t), -1)).all(dim=1)
            if bad.any():
                raise DataError(
                    f"input tensor {name!r} of {source} has {int(bad.sum())} sample(s) with "
                    f"NaN or infinite values (first at sample {int(bad.nonzero()[0])}). Fix "
                    "or drop those samples."
                )


def encode_tensor_labels(
    values: torch.Tensor, classes: list[str] | None, where: str
) -> tuple[torch.Tensor, list[str]]:
    """Integer label values of any shape -> class ids, and the class names (str of values).

    ``classes=None`` (the training split) takes the sorted distinct values; other splits map
    onto the training classes, refusing values that are not among them.
    """
    if values.dtype not in INTEGER_DTYPES:
        raise DataError(
            f"the labels {where} are {values.dtype}; labels must be integers (a class per "
            "sample or per pixel). Store them as an integer tensor."
        )
    values = values.to(torch.int64)
    if classes is None:
        known = torch.unique(values)
        if len(known) < 2:
            raise DataError(
                f"the labels {where} hold {len(known)} class(es) {known.tolist()}; training "
                "needs samples of at least 2 classes. Check the label tensor."
            )
        classes = [str(v) for v in known.tolist()]
    else:
        try:
            known = torch.tensor([int(c) for c in classes], dtype=torch.int64)
        except ValueError as err:
            raise DataError(
                f"the training classes {classes[:10]} are not integers, so the integer labels "
                f"{where} cannot be mapped onto them. Use one kind of labels in every split."
            ) from err
    # The classes' order is the ids' (a table's classes need not be in numeric order).
    ordered, order = known.sort()
    pos = torch.searchsorted(ordered, values).clamp(max=len(known) - 1)
    ids, unknown = order[pos], ordered[pos] != values
    if unknown.any():
        bad = torch.unique(values[unknown])[:10].tolist()
        raise DataError(
            f"label value(s) {bad} {where} are not among the training classes {classes[:20]}. "
            "Fix the labels, or add samples of those classes to the training split."
        )
    return ids, classes


def load_tensors(
    path: Path,
    cfg: DataConfig,
    *,
    classes: list[str] | None,
    labelled: bool,
) -> Split:
    """Load and check one split stored as a safetensors file (see the module docstring)."""
    source = str(path)
    if cfg.feature_columns is not None or cfg.text_column is not None:
        raise DataError(
            f"{source} is a tensors file, but data.feature_columns/text_column are set; "
            "unset them (name the inputs with data.input_tensors), or point at a table."
        )
    tensors = read_tensors(path)
    names = input_names(tensors, cfg, source)
    inputs = {n: tensors[n] for n in names}
    check_inputs(inputs, source)
    labels = None
    if labelled:
        if cfg.label_column not in tensors:
            raise DataError(
                f"label tensor {cfg.label_column!r} not found in {source}. Its tensors: "
                f"{_shapes(tensors)}. Set data.label_column to the label tensor, or load the "
                "split as unlabelled."
            )
        where = f"in tensor {cfg.label_column!r} of {source}"
        labels, classes = encode_tensor_labels(tensors[cfg.label_column], classes, where)
    # 1-D tensors that are not inputs are columns, the label too (group by identity, ...).
    columns = {n: t.tolist() for n, t in tensors.items() if t.ndim == 1 and n not in names}
    n = len(next(iter(inputs.values())))
    table = datasets.Dataset.from_dict(columns or {"index": list(range(n))})
    return Split(
        dataset=ItemDataset(n, TensorInputs(inputs), labels),
        classes=list(classes or []),
        labels=labels,
        input_kind="tensors",
        collate=Collate(),
        table=table,
        source=source,
        format="tensors",
    )


def _shapes(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    return {n: f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}" for n, t in tensors.items()}
