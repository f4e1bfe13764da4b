"""Which device and dtype a model runs in: the one place rsft asks the machine for a GPU.

Every stage (generation, the vLLM engines, scoring with a reward model, fine-tuning and its
launch) resolves ``model.device`` here, so ``model.device: cpu`` means the CPU everywhere,
also on a machine with a GPU.
"""

from __future__ import annotations

import gc
from typing import Any


def gpu_available() -> bool:
    """Whether torch sees a CUDA GPU (False without torch)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return torch.cuda.is_available()


def gpu_count() -> int:
    """How many CUDA GPUs torch sees."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(device: str) -> str:
    """``model.device`` as the device to use: auto is cuda when a GPU is visible."""
    if device == "auto":
        return "cuda" if gpu_available() else "cpu"
    if device == "cuda" and not gpu_available():
        raise RuntimeError("model.device is cuda but no GPU is visible; use auto or cpu.")
    return device


def uses_gpu(device: str) -> bool:
    """Whether ``model.device`` (auto, cpu or cuda) puts the model on a GPU here."""
    return device == "cuda" or (device == "auto" and gpu_available())


def resolve_dtype(dtype: str, device: str) -> Any:
    """``model.dtype`` as a torch dtype: auto is bfloat16 on a GPU that has it, else float32."""
    import torch

    if dtype == "auto":
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


def free_memory() -> None:
    """Give back what a freed model held (the GPU's cache too) before the next one loads."""
    gc.collect()
    if gpu_available():
        import torch

        torch.cuda.empty_cache()
