"""Load a pretrained classifier from a transformers folder, an rsft checkpoint or an import path.

Whatever the source, the result is a :class:`Classifier`: the torch module, the name of its
head, and how to call it on a batch. The head is resized for the new task's classes.

A model folder is data, not code (docs/security.md): weights are read from safetensors, an
rsft checkpoint may name only an ``nn.Module`` subclass defined in rsft, and a transformers
folder's custom code is not run, unless the caller opts in with ``trust_remote_code``.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from rsft.atomic import atomic_write_text, share_files, writing
from rsft.config import ConfigError
from rsft.imports import import_object
from rsft.models.folders import (
    TRUST_OPTION,
    check_config_files,
    check_remote_code,
    remote_code_error,
)
from rsft.models.heads import find_head, replace_head
from rsft.models.inference import eval_mode, to_device

MODULE_CONFIG = "rsft_model.json"
MODULE_WEIGHTS = "model.safetensors"
RESERVED_KEYS = ("labels", "index", "weight")
TRUSTED_PACKAGE = "rsft"


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


def _module_name(path: str) -> str:
    return path.partition(":")[0] if ":" in path else path.rpartition(".")[0]


def _in_rsft(module_name: str) -> bool:
    return module_name == TRUSTED_PACKAGE or module_name.startswith(TRUSTED_PACKAGE + ".")


def module_class(path: str, *, trust_remote_code: bool = False, where: str = "") -> type[nn.Module]:
    """The ``nn.Module`` subclass that a model folder names, checked before anything calls it.

    A folder can be shared, so what it names is not trusted: a class outside rsft is refused
    before its module is imported (importing runs the module's code) unless the caller opts
    in, and whatever is named must be a class deriving from ``nn.Module``: a function such as
    ``subprocess:run`` is never called.
    """
    where = where or "the model folder"
    if not _in_rsft(_module_name(path)) and not trust_remote_code:
        raise ValueError(
            f"{where} names {path!r} as its model class, which is not part of rsft: loading "
            "it would import and run that code, so rsft refuses. If you trust this folder, set "
            f"{TRUST_OPTION} (trust_remote_code=True in load_classifier). A model saved by a "
            "run whose model.path was an import path outside rsft needs this option to be "
            "loaded again."
        )
    cls = import_object(path, "model class")
    defined_in = getattr(cls, "__module__", "") or ""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(
            f"{where} names {path!r}, a {type(cls).__name__}, not a torch.nn.Module subclass: "
            "a model folder can name only a model class."
        )
    if not trust_remote_code and not _in_rsft(defined_in):
        raise ValueError(
            f"{where} names {path!r}, defined in {defined_in!r}, outside rsft. If you trust "
            f"this folder, set {TRUST_OPTION}."
        )
    return cls


def _read_module_config(folder: Path) -> dict[str, Any]:
    """``rsft_model.json``, checked field by field: it is plain data from a shared folder."""
    file = folder / MODULE_CONFIG
    try:
        meta = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON: {err}.") from err
    problems = []
    if not isinstance(meta, dict):
        problems.append("it must be a JSON object")
        meta = {}
    if not isinstance(meta.get("class"), str):
        problems.append('"class" must be an import path string like "rsft.tasks.digits:DigitsNet"')
    if not isinstance(meta.get("kwargs", {}), dict):
        problems.append('"kwargs" must be an object of keyword arguments')
    if meta.get("head") is not None and not isinstance(meta["head"], str):
        problems.append('"head" must be a module name or null')
    n = meta.get("num_labels")
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        problems.append('"num_labels" must be an integer >= 1')
    if problems:
        raise ValueError(f"{file} is not an rsft model config: {'; '.join(problems)}.")
    return meta


def _remote_auto_class(config: Any, trust_remote_code: bool):
    """The auto class a trusted folder's own code registers (its ``auto_map``), if any."""
    import transformers

    auto_map = getattr(config, "auto_map", None) or {}
    if trust_remote_code:
        for name in ("AutoModelForImageClassification", "AutoModelForSequenceClassification"):
            if name in auto_map:
                return getattr(transformers, name)
    return None


def _transformers_class(folder: Path, trust_remote_code: bool = False):
    import transformers
    from transformers.models.auto import modeling_auto

    check_remote_code(folder, check_config_files(folder), trust_remote_code)
    try:
        config = transformers.AutoConfig.from_pretrained(
            folder, trust_remote_code=trust_remote_code
        )
    except ValueError as err:
        raise remote_code_error(folder, err) from err
    if config.model_type in modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        return transformers.AutoModelForImageClassification
    if config.model_type in modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        return transformers.AutoModelForSequenceClassification
    remote = _remote_auto_class(config, trust_remote_code)
    if remote is not None:
        return remote
    raise ValueError(
        f"{folder}: model type {config.model_type!r} is neither an image nor a sequence "
        "classifier in transformers. Use a classification model, or a torch module by import path."
    )


def load_processor(path: str, *, trust_remote_code: bool = False) -> Any:
    """The image processor or tokenizer saved beside a transformers model, if any."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    import transformers

    check_config_files(folder)
    try:
        if (folder / "preprocessor_config.json").is_file():
            return transformers.AutoImageProcessor.from_pretrained(
                folder, trust_remote_code=trust_remote_code
            )
        if any(
            (folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
        ):
            return transformers.AutoTokenizer.from_pretrained(
                folder, trust_remote_code=trust_remote_code
            )
    except ValueError as err:
        raise remote_code_error(folder, err) from err
    return None


def check_kwargs(cls: Any, kwargs: dict[str, Any], path: str) -> None:
    """Refuse ``model.kwargs`` that the class's constructor does not take, naming them, before
    it is called (its own TypeError would name no option). ``{width:8}`` in YAML is the key
    'width:8': a space after the colon makes it ``width: 8``."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # a builtin or C class: let the call say it
        return
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        hint = (
            " (in YAML, write a space after each colon: {width: 8})"
            if any(":" in str(k) for k in kwargs)
            else ""
        )
        raise ConfigError(
            f"model.kwargs {kwargs} do not fit {path}{signature}: {err}{hint}."
        ) from None


def load_classifier(
    path: str,
    num_labels: int,
    *,
    classes: list[str] | None = None,
    kwargs: dict[str, Any] | None = None,
    head: str | None = None,
    seed: int = 0,
    trust_remote_code: bool = False,
) -> Classifier:
    """Load the model at ``path`` and give it a head with ``num_labels`` outputs.

    An import path is the caller's own choice and is imported as named. A folder is checked
    first: see :func:`module_class`; ``trust_remote_code`` also lets a transformers folder
    run the code its ``auto_map`` names.
    """
    folder = Path(path)
    if _is_import_path(path):
        cls = import_object(path, "model class")
        check_kwargs(cls, kwargs or {}, path)
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
        meta = _read_module_config(folder)
        cls = module_class(
            meta["class"], trust_remote_code=trust_remote_code, where=str(folder / MODULE_CONFIG)
        )
        model = cls(**meta.get("kwargs", {}))
        head = head or meta.get("head")
        replace_head(model, find_head(model, head), meta["num_labels"], seed)
        load_model(model, str(folder / MODULE_WEIGHTS))  # safetensors: no unpickling
        source = {"kind": "module", **meta, "folder": str(folder)}
        is_tf = False
    elif (folder / "config.json").is_file():
        auto = _transformers_class(folder, trust_remote_code)
        extra: dict[str, Any] = {
            "num_labels": num_labels,
            "ignore_mismatched_sizes": True,
            "trust_remote_code": trust_remote_code,
        }
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
    processor = load_processor(path, trust_remote_code=trust_remote_code) if is_tf else None
    return Classifier(model, head_name, is_tf, source, processor)


def save_classifier(clf: Classifier, folder: str | Path, classes: list[str]) -> Path:
    """Save weights as safetensors (+ config), loadable again by :func:`load_classifier`.

    The files get the usual mode (the umask's): the saved model is meant to be shared.
    """
    folder = Path(folder)
    with writing(folder):
        _save(clf, folder, classes)
    share_files(folder)
    return folder


def _save(clf: Classifier, folder: Path, classes: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if clf.is_transformers:
        clf.model.save_pretrained(folder)  # safetensors by default
        if clf.processor is not None:
            clf.processor.save_pretrained(folder)
        return
    num_labels = get_num_labels(clf)
    meta = {
        "class": clf.source["class"],
        "kwargs": clf.source.get("kwargs", {}),
        "head": clf.head,
        "num_labels": num_labels,
        "classes": classes,
    }
    save_model(clf.model, str(folder / MODULE_WEIGHTS))
    atomic_write_text(folder / MODULE_CONFIG, json.dumps(meta, indent=2))


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
    try:
        with torch.no_grad(), eval_mode(clf.model):
            for batch in loader:
                clf.logits(to_device(batch, device))
    finally:
        hook.remove()
    return torch.cat(captured)
