"""Statistics every rejection step reports: acceptance, effective sample size, violations."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from rsft.rule.envelope import violations


def exp_or_inf(x: float) -> float:
    """exp(x), or inf where it overflows a float: log weights are kept in log space for that
    reason, and a diverged model's can reach 1e6."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


@dataclass
class RejectionStats:
    """Running totals over any number of draws; ``update`` adds a batch.

    ``ess`` is Kish's effective sample size of the weights, (Σw)² / Σw²: how many equally
    weighted samples the weighted pool is worth. A violation is a draw whose ratio w exceeds
    M, so it was accepted with probability 1 instead of w/M. ``sum_a`` adds up each draw's
    acceptance probability min(1, w/M) at the M it was decided with, so it needs no rescaling
    when an online envelope moves. ``sum_w`` and ``sum_w2`` are relative to the largest weight
    so far (``max_log_w``): finite whatever the weights' scale.
    """

    n: int = 0
    accepted: int = 0
    sum_w: float = 0.0
    sum_w2: float = 0.0
    sum_a: float = 0.0
    violations: int = 0
    max_log_w: float = -math.inf
    log_m: float = math.nan

    def update(
        self, log_w: torch.Tensor, log_m: float, accepted: torch.Tensor | None = None
    ) -> RejectionStats:
        log_w = log_w.detach().to(torch.float64).flatten()
        # Weights are summed relative to the largest one so far, so no sum overflows however
        # far the weights are above M (the ESS does not depend on the scale); when a larger
        # weight comes, the sums so far are rescaled to it.
        top = max(self.max_log_w, float(log_w.max())) if log_w.numel() else self.max_log_w
        self._rescale(top)
        if math.isfinite(top):
            rel = torch.exp(log_w - top)
        else:  # no positive weight yet (-inf), or infinite weights that outweigh the rest
            rel = (log_w == math.inf).to(torch.float64)
        self.n += log_w.numel()
        self.accepted += int(accepted.sum()) if accepted is not None else 0
        self.sum_w += float(rel.sum())
        self.sum_w2 += float((rel * rel).sum())
        self.sum_a += float(torch.exp(log_w - log_m).clamp(max=1.0).sum())
        self.violations += violations(log_w, log_m)
        self.max_log_w = top
        self.log_m = log_m
        return self

    def _rescale(self, top: float) -> None:
        """Make the sums relative to the larger weight ``top`` (the shift is at most 1)."""
        if self.sum_w and top != self.max_log_w:
            shift = math.exp(self.max_log_w - top)
            self.sum_w, self.sum_w2 = self.sum_w * shift, self.sum_w2 * shift * shift

    def merge(self, other: RejectionStats) -> RejectionStats:
        """Add another set of totals (e.g. an epoch's) to these; M becomes the other's."""
        if not other.n:
            return self
        other = RejectionStats(**asdict(other))  # rescaled below: leave the caller's alone
        top = max(self.max_log_w, other.max_log_w)
        self._rescale(top)
        other._rescale(top)
        self.n += other.n
        self.accepted += other.accepted
        self.violations += other.violations
        self.sum_w += other.sum_w
        self.sum_w2 += other.sum_w2
        self.sum_a += other.sum_a
        self.max_log_w = top
        self.log_m = other.log_m
        return self

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.n if self.n else math.nan

    @property
    def expected_acceptance(self) -> float:
        """mean(min(1, w/M)): the acceptance rate the rule aims at (each draw at its own M).

        Not mean(w/M): under a quantile envelope the weights above M would count for more
        than the certain acceptance they get.
        """
        return self.sum_a / self.n if self.n else math.nan

    @property
    def ess(self) -> float:
        return self.sum_w**2 / self.sum_w2 if self.sum_w2 > 0 else 0.0

    @property
    def ess_fraction(self) -> float:
        return self.ess / self.n if self.n else math.nan

    @property
    def max_ratio(self) -> float:
        """max w / M: above 1 means the envelope was violated."""
        return exp_or_inf(self.max_log_w - self.log_m) if self.n else math.nan

    @property
    def envelope(self) -> float:
        return exp_or_inf(self.log_m) if not math.isnan(self.log_m) else math.nan

    def as_dict(self) -> dict[str, float]:
        d = asdict(self)
        d.update(
            acceptance_rate=self.acceptance_rate,
            expected_acceptance=self.expected_acceptance,
            ess=self.ess,
            ess_fraction=self.ess_fraction,
            max_ratio=self.max_ratio,
            envelope=self.envelope,
        )
        return d
