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


def accept(
    log_w: torch.Tensor,
    log_m: float | torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Flip one coin per draw: keep it when ``u < a`` with ``u ~ U(0, 1)``.

    Compared in log space (``log u < log a``), so a weight that is exp(-800) still gets its
    (tiny) chance instead of being rounded to zero.
    """
    u = torch.rand(log_w.shape, generator=generator, dtype=torch.float64, device=log_w.device)
    return torch.log(u) < acceptance_log_prob(log_w.to(torch.float64), log_m)


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
