"""Which parameters a parameter-level method moves: a subset chosen by name pattern.

Rejection in parameter space gets harder with every tuned parameter (the acceptance rate of a
random walk falls as σ must shrink like 1/sqrt(d)), so the subset is the main dial: the head,
the biases (``*.bias``), the norms (``*norm*``), LoRA adapters (``*lora_*``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatch

import torch
from torch import nn


def select_parameters(
    model: nn.Module | Iterable[torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
    patterns: Sequence[str] | str | None = None,
) -> tuple[list[str], list[torch.Tensor]]:
    """Names and tensors to tune: glob ``patterns`` on a module's parameter names, or (without
    patterns) the parameters that require grad; a plain list of tensors is taken as given."""
    if isinstance(patterns, str):
        patterns = [patterns]
    if isinstance(model, nn.Module):
        named = list(model.named_parameters())
    else:
        items = list(model)
        if items and isinstance(items[0], tuple):
            named = list(items)
        else:
            named = [(f"param.{i}", t) for i, t in enumerate(items)]
        if patterns is None:
            patterns = ["*"]
    if patterns is None:
        chosen = [(n, p) for n, p in named if p.requires_grad]
        what = "no parameter requires grad"
    else:
        chosen = [(n, p) for n, p in named if any(fnmatch(n, pat) for pat in patterns)]
        what = f"the pattern(s) {list(patterns)} select no parameter"
    if not chosen:
        sample = ", ".join(n for n, _ in named[:8]) or "(the model has no parameters)"
        raise ValueError(
            f"{what}. Parameter names look like: {sample}{' ...' if len(named) > 8 else ''}. "
            "Use glob patterns such as 'classifier.*', '*.bias', '*norm*' or '*lora_*'."
        )
    bad = [n for n, p in chosen if not p.is_floating_point()]
    if bad:
        raise ValueError(f"parameters must be floating point; not: {bad[:5]}.")
    return [n for n, _ in chosen], [p for _, p in chosen]
