"""Exact rejection sampling from explicit distributions.

Draw x from a proposal q and keep it with probability ``p(x) / (M q(x))``. When
``M >= max p/q`` the kept draws follow p exactly, and with normalised densities a fraction
1/M of the draws is kept. The coin flips, violation counts and statistics are the rule's
(:mod:`rsft.rule`), so this level accepts exactly as the data level does.

Any object with ``sample(sample_shape)`` and ``log_prob(x)`` works: ``torch.distributions``
objects, or your own (an unnormalised ``log_prob`` is fine; M is then relative to it).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.distributions import Distribution

from rsft.rule import Envelope, EnvelopeError, RejectionStats, accept

PILOT = 10_000  # proposal draws used to estimate M when none is given
MIN_BATCH = 1024
MAX_BATCH = 1 << 16  # bounds memory for high-dimensional draws


class RejectionBudgetError(RuntimeError):
    """``max_draws`` proposal draws were made before ``n`` of them were accepted."""


@dataclass
class RejectionResult:
    """The ``n`` accepted draws, in draw order, and the totals over every draw made."""

    samples: torch.Tensor
    stats: RejectionStats
    log_M: float
    M_estimated: bool = False
    pilot_draws: int = 0

    @property
    def M(self) -> float:
        return math.exp(self.log_M) if self.log_M < 709.0 else math.inf

    @property
    def acceptance_rate(self) -> float:
        return self.stats.acceptance_rate

    def summary(self) -> dict[str, Any]:
        """Plain numbers. ``expected_rate`` is 1/M: the acceptance rate when p and q are
        both normalised (a check that M is tight: a rate far below it means M is loose)."""
        s = self.stats
        return {
            "n": len(self.samples),
            "draws": s.n,
            "accepted": s.accepted,
            "acceptance_rate": s.acceptance_rate,
            "expected_rate": math.exp(-self.log_M),
            "violations": s.violations,
            "max_ratio": s.max_ratio,
            "M": self.M,
            "log_M": self.log_M,
            "M_estimated": self.M_estimated,
            "pilot_draws": self.pilot_draws,
        }


def rejection_sample(
    target: Any,
    proposal: Any,
    M: float | Envelope | None = None,
    n: int = 1000,
    *,
    log_M: float | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    strict: bool = False,
    max_draws: int | None = None,
    pilot: int = PILOT,
) -> RejectionResult:
    """Draw ``n`` samples of ``target`` by rejection from ``proposal``.

    ``M`` (or ``log_M``, for envelopes beyond float range) must bound ``p(x) / q(x)``. With
    ``M=None`` (or an ``Envelope`` with policy ``max``/``quantile``) it is estimated from
    ``pilot`` proposal draws, which are then discarded: such an M is a *lower* bound of the
    true maximum, so violations can happen and are reported.

    A draw with ``p/q > M`` is a violation: kept with probability 1 instead of w/M, which
    biases the samples towards ``min(p, M q)``. Violations are counted and warned about
    once at the end; ``strict=True`` raises :class:`EnvelopeError` at the first violating
    batch instead. ``batch_size=None`` sizes each batch from the acceptance rate seen so far.

    Ratios above M by no more than the rounding of float32 log densities are not counted.
    After ``max_draws`` draws (default ``max(10**7, 1000 n)``) :class:`RejectionBudgetError`
    says the acceptance rate and how to raise it.

    ``seed`` makes the result reproducible: torch.distributions draw from torch's global
    generator, so it is forked (the caller's random state is left as it was).
    """
    _check_distribution(target, "target")
    _check_distribution(proposal, "proposal")
    _check_count(n, "n", "the number of samples to return")
    if batch_size is not None:
        _check_count(batch_size, "batch_size", "proposal draws per batch")
    _check_count(pilot, "pilot", "proposal draws used to estimate M")
    envelope, strict = _envelope(M, log_M, strict)
    if max_draws is None:
        max_draws = max(10_000_000, 1000 * n)
    _check_count(max_draws, "max_draws", "the most proposal draws to make")

    with _seeded(seed):
        if isinstance(envelope, float):
            lm, pilot_draws = envelope, 0
        else:
            lm, pilot_draws = _pilot_log_m(target, proposal, envelope, pilot), pilot
        stats = RejectionStats()
        kept: list[torch.Tensor] = []
        have = 0
        while have < n:
            if stats.n >= max_draws:
                raise RejectionBudgetError(_budget_message(have, n, stats, lm, max_draws))
            size = _batch_size(batch_size, n - have, stats, lm, max_draws - stats.n)
            x = proposal.sample((size,))
            lw, tol = _log_ratio(target, proposal, x)
            lw = lw.masked_fill((lw > lm) & (lw <= lm + tol), lm)  # rounding, not a violation
            accepted = accept(lw, lm)
            if strict and bool((lw > lm).any()):
                raise EnvelopeError(_strict_message(lw, lm, stats.n))
            stats.update(lw, lm, accepted)
            kept.append(x[accepted])
            have += int(accepted.sum())
    result = RejectionResult(
        torch.cat(kept)[:n], stats, lm, M_estimated=pilot_draws > 0, pilot_draws=pilot_draws
    )
    if stats.violations:
        warnings.warn(_violation_message(result), stacklevel=2)
    return result


def log_ratio(target: Any, proposal: Any, x: torch.Tensor) -> torch.Tensor:
    """``log w = log p(x) - log q(x)``, one float64 per draw; -inf where p(x) = 0."""
    return _log_ratio(target, proposal, x)[0]


def _log_ratio(target: Any, proposal: Any, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(log w, its rounding error): float32 log densities are only good to ~1e-7 relative,
    so a ratio computed from them can exceed a tight M by that much without any bias."""
    lp, eps_p = _log_prob(target, x, "target")
    lq, eps_q = _log_prob(proposal, x, "proposal")
    lw = lp - lq
    bad = torch.isnan(lw) | (lw == math.inf)
    if bad.any():
        i = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"log p(x) - log q(x) is {float(lw[i])} at draw {i} (x = {x[i].tolist()}): "
            "target.log_prob must be finite or -inf, and proposal.log_prob finite at the "
            "proposal's own draws (a proposal must cover the target's support)."
        )
    scale = 1.0 + _finite_abs_max(lp) + _finite_abs_max(lq)
    return lw, 16 * max(eps_p, eps_q) * scale


def _finite_abs_max(t: torch.Tensor) -> float:
    finite = t[torch.isfinite(t)]
    return float(finite.abs().max()) if finite.numel() else 0.0


def class_conditional_sample(
    targets: Mapping[Hashable, Any],
    proposal: Any,
    M: float | Mapping[Hashable, float] | None,
    n_per_class: int,
    *,
    seed: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, list[Hashable], dict[Hashable, RejectionResult]]:
    """Labelled samples, ``n_per_class`` per class, from one proposal: class ``c``'s draws
    are accepted under ``targets[c]``. ``M`` is one envelope or one per class (each class
    has its own max p/q). Returns (features, labels, each class's result)."""
    if not targets:
        raise ValueError("targets is empty: give one distribution per class, {label: target}.")
    if isinstance(M, Mapping) and set(M) != set(targets):
        raise ValueError(
            f"M names classes {sorted(map(str, M))} but targets has {sorted(map(str, targets))}:"
            " give one M per class, or a single M for all."
        )
    results: dict[Hashable, RejectionResult] = {}
    for i, (label, target) in enumerate(targets.items()):
        m = M[label] if isinstance(M, Mapping) else M
        s = None if seed is None else seed + i
        results[label] = rejection_sample(target, proposal, m, n_per_class, seed=s, **kwargs)
    features = torch.cat([r.samples for r in results.values()])
    labels = [label for label in results for _ in range(n_per_class)]
    return features, labels, results


def write_table(
    path: str | Path, features: torch.Tensor, labels: list[Hashable], column: str = "features"
) -> Path:
    """A parquet table (``column``: one list of floats per row, ``label``) that
    ``data.train`` with ``feature_columns: [<column>]`` reads."""
    from datasets import Dataset

    rows = features.reshape(len(features), -1).to(torch.float32).tolist()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict({column: rows, "label": list(labels)}).to_parquet(str(path))
    return path


# --------------------------------------------------------------------------- internals


def _check_distribution(obj: Any, role: str) -> None:
    missing = [m for m in ("sample", "log_prob") if not callable(getattr(obj, m, None))]
    if missing:
        raise TypeError(
            f"the {role} ({type(obj).__name__}) has no {' or '.join(missing)} method. Use a "
            "torch.distributions object, or any object with sample(sample_shape) -> tensor "
            "of draws and log_prob(x) -> one log density per draw."
        )


def _check_count(value: Any, name: str, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} ({what}) must be an integer >= 1, got {value!r}.")


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _envelope(M: Any, log_M: float | None, strict: bool) -> tuple[float | Envelope, bool]:
    """log M when it is given; otherwise the Envelope that estimates it from a pilot."""
    if M is not None and log_M is not None:
        raise ValueError("give M or log_M, not both.")
    if log_M is not None:
        if not _is_finite_number(log_M):
            raise ValueError(f"log_M must be a finite number, got {log_M!r}.")
        return float(log_M), strict
    if M is None:
        return Envelope("max"), strict
    if isinstance(M, Envelope):
        if M.policy != "fixed":
            return M, strict
        return math.log(M.value), strict or M.on_violation == "error"  # type: ignore[arg-type]
    if not _is_finite_number(M) or M <= 0:
        raise ValueError(
            f"M must be a positive finite number (an upper bound of p(x)/q(x)), got {M!r}. "
            "For an envelope beyond float range pass log_M; leave M=None to estimate it."
        )
    return math.log(M), strict


def _pilot_log_m(target: Any, proposal: Any, envelope: Envelope, pilot: int) -> float:
    lw = log_ratio(target, proposal, proposal.sample((pilot,)))
    if not torch.isfinite(lw).any():
        raise ValueError(
            f"the target has zero density at all {pilot} pilot draws of the proposal, so M "
            "cannot be estimated: use a proposal that covers the target's mass, or raise pilot."
        )
    return envelope.log_m(lw)


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if cuda else []):
        torch.manual_seed(seed)
        yield


def _log_prob(dist: Any, x: torch.Tensor, role: str) -> tuple[torch.Tensor, float]:
    """One float64 log density per draw, and the relative precision it was computed at."""
    b = x.shape[0]
    outside = None
    if isinstance(dist, Distribution) and role == "target":
        x, outside = _inside_support(dist, x)
    lp = torch.as_tensor(dist.log_prob(x))
    if isinstance(dist, Distribution) and lp.dim() > 1 and lp.shape[0] == b:
        lp = lp.reshape(b, -1).sum(1)  # independent coordinates of one draw
    if tuple(lp.shape) != (b,):
        raise ValueError(
            f"{role}.log_prob returned shape {tuple(lp.shape)} for {b} draws of shape "
            f"{tuple(x.shape[1:])}; it must return one log density per draw, shape ({b},). "
            "Sum the log densities of a draw's coordinates inside log_prob."
        )
    eps = torch.finfo(lp.dtype).eps if lp.is_floating_point() else 0.0
    lp = lp.to(torch.float64)
    if outside is not None:
        lp = lp.masked_fill(outside, -math.inf)
    return lp, eps


def _inside_support(dist: Distribution, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """p(x) = 0 outside the target's support: such draws get log p = -inf (rejected)
    instead of the error (or NaN) a torch distribution gives there."""
    try:
        inside = dist.support.check(x)
    except NotImplementedError:
        return x, None
    outside = ~inside.reshape(x.shape[0], -1).all(1)
    if not outside.any():
        return x, None
    safe = x.clone()
    fill = dist.sample((x.shape[0],)).to(x.dtype)  # any point of the support
    if fill.shape == x.shape:
        safe[outside] = fill[outside]
    return safe, outside


def _batch_size(fixed: int | None, need: int, stats: RejectionStats, lm: float, left: int) -> int:
    if fixed is not None:
        return min(fixed, left)
    rate = max(stats.accepted, 1) / stats.n if stats.n else min(1.0, math.exp(-min(lm, 700.0)))
    return max(1, min(left, MAX_BATCH, max(MIN_BATCH, math.ceil(1.2 * need / rate))))


def _budget_message(have: int, n: int, stats: RejectionStats, lm: float, max_draws: int) -> str:
    return (
        f"only {have} of {n} samples were accepted after {stats.n} proposal draws "
        f"(max_draws={max_draws}): acceptance rate {stats.acceptance_rate:.3g}, while 1/M = "
        f"{math.exp(-lm):.3g}. Each sample costs about M draws. Use a proposal closer to the "
        "target (M is max p/q: a proposal as wide as the target, with heavier tails, lowers "
        "it), a smaller M if it is above max p/q, or raise max_draws."
    )


def _strict_message(lw: torch.Tensor, lm: float, before: int) -> str:
    over = int((lw > lm).sum())
    top = float(lw.max())
    return (
        f"envelope M={math.exp(lm):.4g} is below p/q for {over} of {len(lw)} draws (largest "
        f"w/M = {math.exp(top - lm):.4g}, after {before} earlier draws): accepted samples "
        f"would not follow the target. Set M >= {math.exp(top):.4g} (log_M >= {top:.4g}), or "
        "strict=False to accept the bias and have it counted."
    )


def _violation_message(result: RejectionResult) -> str:
    s = result.stats
    msg = (
        f"{s.violations} of {s.n} proposal draws had p/q above M={result.M:.4g} (largest w/M = "
        f"{s.max_ratio:.4g}): each was accepted with probability 1 instead of w/M, so the "
        f"samples follow min(p, M q), not p. Set M >= {math.exp(s.max_log_w):.4g} "
        f"(log_M >= {s.max_log_w:.4g}), or strict=True to stop at the first violation."
    )
    if result.M_estimated:
        msg += (
            f" M was estimated from {result.pilot_draws} pilot draws, a lower bound of max "
            "p/q: give M from the densities, or raise pilot."
        )
    return msg
