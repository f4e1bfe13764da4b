"""Load a pretrained classifier from a transformers folder, an rsft checkpoint or an import path.

Whatever the source, the result is a :class:`Classifier`: the torch module, the name of its
head, and how to call it on a batch. The head is resized for the new task's classes (S0.1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from rsft.imports import import_object
from rsft.models.heads import find_head, replace_head

MODULE_CONFIG = "rsft_model.json"
MODULE_WEIGHTS = "model.safetensors"
RESERVED_KEYS = ("labels", "index", "weight")


@dataclass
class Classifier:
    """A classifier ready to fine-tune: the module, its head, and where it came from."""

    model: nn.Module
    head: str
    is_transformers: bool
    source: dict[str, Any] = field(default_factory=dict)
    processor: Any = None

    def logits(
        self, batch: dict[str, torch.Tensor], module: nn.Module | None = None
    ) -> torch.Tensor:
        """Call the model on a batch's inputs. ``module`` may be the DDP-wrapped model."""
        return forward_logits(module or self.model, batch, self.is_transformers)


def forward_logits(model: nn.Module, batch: dict[str, Any], is_transformers: bool) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k not in RESERVED_KEYS}
    if is_transformers:
        out = model(**inputs)
    elif len(inputs) == 1:
        out = model(next(iter(inputs.values())))
    else:
        out = model(**inputs)
    return out.logits if hasattr(out, "logits") else out


def _is_import_path(path: str) -> bool:
    return ":" in path and not Path(path).exists()


def _transformers_class(folder: Path):
    import transformers
    from transformers.models.auto import modeling_auto

    config = transformers.AutoConfig.from_pretrained(folder)
    if config.model_type in modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        return transformers.AutoModelForImageClassification
    if config.model_type in modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        return transformers.AutoModelForSequenceClassification
    raise ValueError(
        f"{folder}: model type {config.model_type!r} is neither an image nor a sequence "
        "classifier in transformers. Use a classification model, or a torch module by import path."
    )


def load_processor(path: str) -> Any:
    """The image processor or tokenizer saved beside a transformers model, if any."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    import transformers

    if (folder / "preprocessor_config.json").is_file():
        return transformers.AutoImageProcessor.from_pretrained(folder)
    if any(
        (folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
    ):
        return transformers.AutoTokenizer.from_pretrained(folder)
    return None


def load_classifier(
    path: str,
    num_labels: int,
    *,
    classes: list[str] | None = None,
    kwargs: dict[str, Any] | None = None,
    head: str | None = None,
    seed: int = 0,
) -> Classifier:
    """Load the model at ``path`` and give it a head with ``num_labels`` outputs."""
    folder = Path(path)
    if _is_import_path(path):
        cls = import_object(path, "model class")
        model = cls(**(kwargs or {}))
        if not isinstance(model, nn.Module):
            raise ValueError(f"{path} built a {type(model).__name__}, not a torch.nn.Module.")
        source = {"kind": "module", "class": path, "kwargs": kwargs or {}}
        is_tf = False
    elif not folder.exists():
        raise FileNotFoundError(
            f"model {path!r} does not exist. Give a transformers model folder, an rsft checkpoint "
            "folder, or an import path like 'my_pkg.models:MyNet'."
        )
    elif (folder / MODULE_CONFIG).is_file():
        meta = json.loads((folder / MODULE_CONFIG).read_text())
        cls = import_object(meta["class"], "model class")
        model = cls(**meta.get("kwargs", {}))
        head = head or meta.get("head")
        replace_head(model, find_head(model, head), meta["num_labels"], seed)
        load_model(model, str(folder / MODULE_WEIGHTS))  # safetensors: no unpickling
        source = {"kind": "module", **meta, "folder": str(folder)}
        is_tf = False
    elif (folder / "config.json").is_file():
        auto = _transformers_class(folder)
        extra: dict[str, Any] = {"num_labels": num_labels, "ignore_mismatched_sizes": True}
        if classes:
            extra["id2label"] = dict(enumerate(classes))
            extra["label2id"] = {c: i for i, c in enumerate(classes)}
        model = auto.from_pretrained(folder, **extra)
        source = {"kind": "transformers", "folder": str(folder), "class": auto.__name__}
        is_tf = True
    else:
        raise ValueError(
            f"{folder} is neither a transformers model folder (no config.json) nor an rsft "
            f"checkpoint (no {MODULE_CONFIG})."
        )
    head_name = find_head(model, head)
    replace_head(model, head_name, num_labels, seed)
    return Classifier(model, head_name, is_tf, source, load_processor(path) if is_tf else None)


def save_classifier(clf: Classifier, folder: str | Path, classes: list[str]) -> Path:
    """Save weights as safetensors (+ config), loadable again by :func:`load_classifier`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if clf.is_transformers:
        clf.model.save_pretrained(folder)  # safetensors by default
        if clf.processor is not None:
            clf.processor.save_pretrained(folder)
        return folder
    num_labels = get_num_labels(clf)
    meta = {
        "class": clf.source["class"],
        "kwargs": clf.source.get("kwargs", {}),
        "head": clf.head,
        "num_labels": num_labels,
        "classes": classes,
    }
    save_model(clf.model, str(folder / MODULE_WEIGHTS))
    (folder / MODULE_CONFIG).write_text(json.dumps(meta, indent=2))
    return folder


def get_num_labels(clf: Classifier) -> int:
    head = clf.model.get_submodule(clf.head)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features


def extract_features(clf: Classifier, loader, device: torch.device | str = "cpu") -> torch.Tensor:
    """The head's input for every sample: the frozen backbone's features (for density ratios)."""
    captured: list[torch.Tensor] = []
    head = clf.model.get_submodule(clf.head)
    hook = head.register_forward_pre_hook(
        lambda _m, args: captured.append(args[0].detach().flatten(1).float().cpu())
    )
    was_training = clf.model.training
    clf.model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                clf.logits(batch)
    finally:
        hook.remove()
        clf.model.train(was_training)
    return torch.cat(captured)
