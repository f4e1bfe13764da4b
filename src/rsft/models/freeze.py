"""Freeze policies: which parameters fine-tuning may change."""

from __future__ import annotations

from fnmatch import fnmatch

from torch import nn

from rsft.models.heads import find_blocks


def _under(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def apply_freeze(
    model: nn.Module,
    policy: str,
    head: str,
    *,
    train_last_n: int = 1,
    blocks: str | None = None,
    freeze_patterns: list[str] | None = None,
    trainable_patterns: list[str] | None = None,
) -> dict[str, int]:
    """Set ``requires_grad`` per the policy; return trainable and total parameter counts.

    - ``none``: everything trains.
    - ``all_but_head``: only the head trains.
    - ``last_n``: the head and the last ``train_last_n`` blocks train.
    - ``patterns``: everything trains except names matching ``freeze_patterns``.
    ``trainable_patterns`` always train, whatever the policy.
    """
    if policy == "none":
        trainable = lambda n: True  # noqa: E731
    elif policy == "all_but_head":
        trainable = lambda n: _under(n, [head])  # noqa: E731
    elif policy == "last_n":
        names = find_blocks(model, blocks)
        if train_last_n > len(names):
            raise ValueError(
                f"train_last_n={train_last_n} but the model has only {len(names)} blocks."
            )
        chosen = [head, *names[-train_last_n:]]
        trainable = lambda n: _under(n, chosen)  # noqa: E731
    elif policy == "patterns":
        pats = freeze_patterns or []
        trainable = lambda n: not any(fnmatch(n, p) for p in pats)  # noqa: E731
    else:
        raise ValueError(f"unknown freeze policy {policy!r}: none, all_but_head, last_n, patterns.")
    extra = trainable_patterns or []
    n_train = n_total = 0
    for name, param in model.named_parameters():
        param.requires_grad_(trainable(name) or any(fnmatch(name, p) for p in extra))
        n_total += param.numel()
        n_train += param.numel() if param.requires_grad else 0
    if n_train == 0:
        raise ValueError(
            f"freeze policy {policy!r} leaves no parameter to train: check model.head, "
            "model.freeze_patterns and model.trainable_patterns."
        )
    return {"trainable": n_train, "total": n_total}
