"""Find and replace a classifier's head; find its blocks (for ``freeze: last_n``)."""

from __future__ import annotations

import torch
from torch import nn

HEAD_NAMES = ("classifier", "fc", "head", "score")


def get_submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as err:
        raise ValueError(
            f"the model has no submodule {name!r}. Top-level modules: "
            f"{', '.join(n for n, _ in model.named_children())}."
        ) from err


def find_head(model: nn.Module, name: str | None = None) -> str:
    """The head's attribute name: ``name`` if given, a usual name, else the last Linear."""
    if name:
        get_submodule(model, name)
        return name
    children = dict(model.named_children())
    for candidate in HEAD_NAMES:
        if candidate in children:
            return candidate
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            "cannot find the classification head: the model has no nn.Linear. Name it with "
            "model.head (e.g. head: classifier)."
        )
    return linears[-1]


def _last_linear(module: nn.Module) -> tuple[str, nn.Linear] | None:
    if isinstance(module, nn.Linear):
        return "", module
    found = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    return found[-1] if found else None


def replace_head(model: nn.Module, head: str, num_labels: int, seed: int = 0) -> bool:
    """Give the head ``num_labels`` outputs (a freshly initialised Linear) if it differs.

    Returns True when the head was replaced. Works for a Linear head and for a head that is
    a small module ending in a Linear (e.g. transformers' ResNet ``Sequential(Flatten,
    Linear)``).
    """
    module = get_submodule(model, head)
    found = _last_linear(module)
    if found is None:
        raise ValueError(f"the head {head!r} contains no nn.Linear to resize.")
    sub, linear = found
    if linear.out_features == num_labels:
        return False
    gen = torch.Generator().manual_seed(seed)
    new = nn.Linear(linear.in_features, num_labels, bias=linear.bias is not None)
    with torch.no_grad():
        bound = 1.0 / linear.in_features**0.5
        new.weight.uniform_(-bound, bound, generator=gen)
        if new.bias is not None:
            new.bias.zero_()
    new.to(linear.weight.device, linear.weight.dtype)
    full = f"{head}.{sub}" if sub else head
    parent_name, _, attr = full.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
    return True


def find_blocks(model: nn.Module, name: str | None = None) -> list[str]:
    """Names of the model's blocks in order: the ModuleList ``name``, or the longest one."""
    if name:
        blocks = get_submodule(model, name)
        if not isinstance(blocks, (nn.ModuleList, nn.Sequential)):
            raise ValueError(f"model.blocks {name!r} is a {type(blocks).__name__}, not a list.")
        return [f"{name}.{i}" for i in range(len(blocks))]
    best: tuple[str, int] | None = None
    for n, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and (best is None or len(m) > best[1]):
            best = (n, len(m))
    if best is None:
        raise ValueError(
            "freeze: last_n needs the model's blocks, but it has no nn.ModuleList. Name them "
            "with model.blocks, or use freeze: patterns."
        )
    return [f"{best[0]}.{i}" for i in range(best[1])]
