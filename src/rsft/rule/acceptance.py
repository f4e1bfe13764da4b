"""The one rejection rule behind every rsft variant.

A draw x from a proposal q is kept with probability ``a(x) = min(1, p(x) / (M q(x)))``.
Everything here works on the log of the ratio ``w = p/q`` so that tiny or huge densities
(long sequences, high-dimensional images) neither underflow nor overflow.
"""

from __future__ import annotations

import math

import torch


def acceptance_log_prob(log_w: torch.Tensor, log_m: float | torch.Tensor) -> torch.Tensor:
    """``log a = min(0, log w - log M)``: the log acceptance probability of each draw."""
    return torch.clamp(log_w - log_m, max=0.0)


def acceptance_prob(log_w: torch.Tensor, log_m: float | torch.Tensor) -> torch.Tensor:
    """``a = min(1, w / M)``."""
    return acceptance_log_prob(log_w, log_m).exp()


_TAIL = 20.0
"""Where :func:`log_uniform` hands over to a fresh exponential draw (see there)."""


def log_uniform(
    shape: int | tuple[int, ...],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``log u`` for ``u ~ U(0, 1)``, exact however small: ``-E`` with ``E ~ Exponential(1)``.

    ``torch.log(torch.rand(...))`` never goes below ``log 2^-53 ≈ -36.7`` (a float64 uniform
    has 53 bits), so every probability below 2^-53 would be accepted with probability 2^-53.
    torch's ``exponential_`` is ``-log(1 - u)`` of the same uniform and has the same floor.
    The exponential's memorylessness removes it: a draw beyond ``_TAIL`` (where the uniform is
    still fine-grained) is replaced by ``_TAIL`` plus a fresh draw, as often as needed, so
    ``P(log u < t) = e^t`` for every t. Float64, on ``device``, from ``generator``.
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    out = torch.zeros(shape, dtype=torch.float64, device=device)
    todo = torch.arange(out.numel(), device=device)
    flat = out.view(-1)
    while len(todo):
        e = torch.empty(len(todo), dtype=torch.float64, device=device)
        e.exponential_(generator=generator)
        deep = e > _TAIL
        flat[todo[~deep]] -= e[~deep]
        flat[todo[deep]] -= _TAIL
        todo = todo[deep]
    return out


def accept(
    log_w: torch.Tensor,
    log_m: float | torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Flip one coin per draw: keep it when ``log u < log a`` with ``u ~ U(0, 1)``.

    Compared in log space with an exact log-uniform (:func:`log_uniform`), so a weight that
    is exp(-800) gets its own tiny chance: neither rounded to zero nor raised to a floor.
    """
    return accept_given(log_w, log_m, log_uniform(log_w.shape, generator, log_w.device))


def accept_given(
    log_w: torch.Tensor, log_m: float | torch.Tensor, log_u: torch.Tensor
) -> torch.Tensor:
    """The coin of :func:`accept` with the ``log u`` drawn beforehand: keep when ``log u < log a``.

    For callers whose coins must not depend on who flips them (model-aware training draws one
    ``log u`` per sample and epoch, then decides each round's samples as they are scored).
    A zero weight (``log w = -inf``) is never kept; a weight at or above M is kept for any
    ``log u < 0``.
    """
    return log_u < acceptance_log_prob(log_w.to(torch.float64), log_m)


def log_weights(weights: torch.Tensor) -> torch.Tensor:
    """Validated ``log w`` from non-negative, finite weights (zero weight: never accepted)."""
    weights = torch.as_tensor(weights, dtype=torch.float64)
    if weights.ndim != 1:
        raise ValueError(
            "weights must be one number per sample (a 1-D array), "
            f"got shape {tuple(weights.shape)}."
        )
    bad = ~torch.isfinite(weights)
    if bad.any():
        idx = torch.nonzero(bad).flatten()[:5].tolist()
        raise ValueError(
            f"{int(bad.sum())} weight(s) are NaN or infinite (first at index {idx}). "
            "Fix the weight source, or drop those samples before training."
        )
    neg = weights < 0
    if neg.any():
        idx = torch.nonzero(neg).flatten()[:5].tolist()
        raise ValueError(
            f"{int(neg.sum())} weight(s) are negative (first at index {idx}, value "
            f"{weights[idx[0]].item():g}). Weights are density ratios p/q and must be >= 0."
        )
    if not (weights > 0).any():
        raise ValueError("every weight is zero: no sample could ever be accepted.")
    return torch.log(weights)


def safe_log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf
