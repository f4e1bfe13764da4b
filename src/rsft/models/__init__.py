"""Models: load a pretrained classifier, resize its head, choose what trains."""

from rsft.models.finetune import load_for_finetuning
from rsft.models.freeze import apply_freeze
from rsft.models.heads import find_blocks, find_head, replace_head
from rsft.models.loading import (
    Classifier,
    extract_features,
    load_classifier,
    load_processor,
    save_classifier,
)

__all__ = [
    "Classifier",
    "apply_freeze",
    "extract_features",
    "find_blocks",
    "find_head",
    "load_classifier",
    "load_for_finetuning",
    "load_processor",
    "replace_head",
    "save_classifier",
]
