"""rejection_sample: exactness (KS, chi-square, acceptance rate 1/M), violations, inputs."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Beta, Categorical, Normal, Uniform

from rsft.generation import (
    RejectionBudgetError,
    class_conditional_sample,
    rejection_sample,
)
from rsft.rule import Envelope, EnvelopeError


def normal_log_m(mu: float, sigma: float, s: float) -> float:
    """log max N(x; mu, sigma²) / N(x; 0, s²) for sigma < s (closed form)."""
    return math.log(s / sigma) + mu * mu / (2 * (s * s - sigma * sigma))


TARGET = Normal(1.0, 0.5)
PROPOSAL = Normal(0.0, 2.0)
LOG_M = normal_log_m(1.0, 0.5, 2.0)  # M = 4.57


def test_accepted_draws_follow_a_continuous_target():
    r = rejection_sample(TARGET, PROPOSAL, math.exp(LOG_M), 20_000, seed=0)
    assert r.samples.shape == (20_000,)
    assert stats.kstest(r.samples.numpy(), stats.norm(1.0, 0.5).cdf).pvalue > 0.01
    assert r.stats.violations == 0 and r.stats.max_ratio <= 1.0 + 1e-6
    assert not r.M_estimated and r.pilot_draws == 0


def test_acceptance_rate_is_one_over_m_within_a_binomial_interval():
    r = rejection_sample(TARGET, PROPOSAL, math.exp(LOG_M), 20_000, seed=1, batch_size=4096)
    s, p = r.stats, math.exp(-LOG_M)
    assert abs(s.accepted - s.n * p) <= 4 * math.sqrt(s.n * p * (1 - p))
    summary = r.summary()
    assert summary["expected_rate"] == pytest.approx(p)
    assert summary["draws"] == s.n and summary["accepted"] == s.accepted >= 20_000
    assert summary["draws"] % 4096 == 0  # fixed batches


def test_accepted_draws_follow_a_discrete_target():
    p = torch.tensor([0.05, 0.10, 0.15, 0.30, 0.40])
    m = float(p.max() / 0.2)  # uniform proposal over 5 values
    r = rejection_sample(
        Categorical(probs=p), Categorical(logits=torch.zeros(5)), m, 20_000, seed=2
    )
    observed = torch.bincount(r.samples, minlength=5).numpy()
    expected = p.double().numpy() / p.double().numpy().sum() * observed.sum()
    assert stats.chisquare(observed, expected).pvalue > 0.01
    assert r.samples.dtype == torch.int64


def test_independent_coordinates_are_summed_into_one_ratio_per_draw():
    """Normal with a batch shape (2,): each draw is a 2-vector, w is the product over it."""
    target = Normal(torch.tensor([1.0, -1.0]), 0.5)
    proposal = Normal(torch.zeros(2), 2.0)
    log_m = 2 * LOG_M
    r = rejection_sample(target, proposal, log_M=log_m, n=10_000, seed=3)
    assert r.samples.shape == (10_000, 2)
    for j, mu in enumerate((1.0, -1.0)):
        assert stats.kstest(r.samples[:, j].numpy(), stats.norm(mu, 0.5).cdf).pvalue > 0.01
    assert abs(r.acceptance_rate - math.exp(-log_m)) < 0.005


def test_target_support_smaller_than_proposal_draws_is_rejected_not_an_error():
    r = rejection_sample(Beta(2.0, 5.0), Normal(0.3, 1.0), n=10_000, seed=4)
    x = r.samples.numpy()
    assert ((x > 0) & (x < 1)).all()
    assert stats.kstest(x, stats.beta(2, 5).cdf).pvalue > 0.01


def test_estimated_m_is_a_pilot_max_and_says_so():
    r = rejection_sample(TARGET, PROPOSAL, n=10_000, seed=5, pilot=20_000)
    assert r.M_estimated and r.pilot_draws == 20_000
    assert LOG_M - 0.05 < r.log_M <= LOG_M + 1e-6  # a lower bound, close to the true max
    assert stats.kstest(r.samples.numpy(), stats.norm(1.0, 0.5).cdf).pvalue > 0.01
    with pytest.warns(UserWarning, match="estimated from 10000 pilot draws"):
        q = rejection_sample(TARGET, PROPOSAL, Envelope("quantile", quantile=0.5), 100, seed=5)
    assert q.M_estimated and q.log_M < LOG_M - 0.5


def test_too_small_m_warns_with_the_observed_maximum_and_counts():
    m = 2.0  # true max p/q is 4.57
    with pytest.warns(UserWarning, match=r"largest w/M = 2\.28") as record:
        r = rejection_sample(TARGET, PROPOSAL, m, 5000, seed=6)
    assert len(record) == 1  # one warning for the run, not one per batch
    assert r.stats.violations > 0
    assert r.stats.max_ratio == pytest.approx(math.exp(LOG_M) / m, rel=0.01)
    assert r.summary()["violations"] == r.stats.violations
    assert "M >= 4.5" in str(record[0].message)


def test_estimated_m_violation_message_points_at_the_pilot():
    with pytest.warns(UserWarning, match="pilot draws, a lower bound"):
        r = rejection_sample(TARGET, PROPOSAL, n=20_000, seed=7, pilot=20)
    assert r.stats.violations > 0


def test_strict_raises_at_the_first_violating_batch():
    with pytest.raises(EnvelopeError, match=r"largest w/M = 2\.2") as err:
        rejection_sample(TARGET, PROPOSAL, 2.0, 5000, seed=6, strict=True, batch_size=10_000)
    assert "after 0 earlier draws" in str(err.value)
    # a fixed Envelope refuses violations by default, as at the data level
    with pytest.raises(EnvelopeError):
        rejection_sample(TARGET, PROPOSAL, Envelope("fixed", value=2.0), 5000, seed=6)
    counted = Envelope("fixed", value=2.0, on_violation="count")
    with pytest.warns(UserWarning):
        rejection_sample(TARGET, PROPOSAL, counted, 100, seed=6)


def test_correct_m_raises_no_warning_and_strict_passes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rejection_sample(TARGET, PROPOSAL, math.exp(LOG_M), 5000, seed=8, strict=True)


def test_too_small_m_gives_a_detectably_biased_distribution():
    """Samples then follow min(p, M q): flattened at the mode, detectably not p."""
    right = rejection_sample(TARGET, PROPOSAL, math.exp(LOG_M), 20_000, seed=9)
    with pytest.warns(UserWarning):
        wrong = rejection_sample(TARGET, PROPOSAL, 1.0, 20_000, seed=9)
    cdf = stats.norm(1.0, 0.5).cdf
    assert stats.kstest(right.samples.numpy(), cdf).pvalue > 0.01
    assert stats.kstest(wrong.samples.numpy(), cdf).pvalue < 1e-6
    assert wrong.samples.std() > right.samples.std() * 1.1


class Mixture:
    """A custom target: two Gaussian bumps, log_prob written by hand (no torch.distributions)."""

    def __init__(self, shift: float = 0.0) -> None:
        self.shift = shift  # added to log_prob: an unnormalised density

    def sample(self, shape):
        raise AssertionError("the target is never sampled")

    def log_prob(self, x):
        parts = torch.stack([Normal(-2.0, 0.7).log_prob(x), Normal(2.0, 0.7).log_prob(x)])
        return torch.logsumexp(parts, 0).double() - math.log(2) + self.shift


class WideProposal:
    def sample(self, shape):
        return torch.randn(shape) * 3.0

    def log_prob(self, x):
        return -0.5 * (x / 3.0) ** 2 - math.log(3.0 * math.sqrt(2 * math.pi))


def _mixture_cdf(x):
    return 0.5 * stats.norm(-2, 0.7).cdf(x) + 0.5 * stats.norm(2, 0.7).cdf(x)


def _mixture_log_m() -> float:
    grid = torch.linspace(-12, 12, 200_001)
    return float((Mixture().log_prob(grid) - WideProposal().log_prob(grid)).max()) + 1e-4


def test_custom_objects_with_sample_and_log_prob():
    log_m = _mixture_log_m()
    kw = {"n": 10_000, "seed": 10, "batch_size": 8192}
    r = rejection_sample(Mixture(), WideProposal(), log_M=log_m, **kw)
    assert stats.kstest(r.samples.numpy(), _mixture_cdf).pvalue > 0.01
    assert r.stats.violations == 0
    # an unnormalised target: M scales with it, and the same seed keeps the same draws
    big = rejection_sample(Mixture(shift=1000.0), WideProposal(), log_M=log_m + 1000, **kw)
    assert torch.equal(big.samples, r.samples)
    assert big.M == math.inf and big.summary()["log_M"] == pytest.approx(log_m + 1000)


def test_custom_log_prob_must_give_one_value_per_draw():
    class PerCoordinate(WideProposal):
        def sample(self, shape):
            return torch.randn(*shape, 3)

        def log_prob(self, x):
            return -0.5 * x**2  # (B, 3): not summed

    with pytest.raises(ValueError, match=r"one log density per draw, shape \(1024,\)"):
        rejection_sample(PerCoordinate(), PerCoordinate(), 1.0, 10, batch_size=1024)


def test_nan_log_prob_is_reported_with_the_draw():
    class NanTarget(WideProposal):
        def log_prob(self, x):
            return torch.full_like(x, math.nan)

    with pytest.raises(ValueError, match="is nan at draw 0"):
        rejection_sample(NanTarget(), WideProposal(), 1.0, 10, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 0}, ValueError, r"n \(the number of samples to return\) must be an integer >= 1"),
        ({"n": 2.5}, ValueError, "must be an integer"),
        ({"M": 0.0}, ValueError, "M must be a positive finite number"),
        ({"M": -1.0}, ValueError, "upper bound of p"),
        ({"M": math.inf}, ValueError, "pass log_M"),
        ({"M": math.nan}, ValueError, "positive finite"),
        ({"M": True}, ValueError, "positive finite"),
        ({"M": 5.0, "log_M": 1.0}, ValueError, "M or log_M, not both"),
        ({"M": None, "log_M": math.inf}, ValueError, "log_M must be a finite number"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"max_draws": 0}, ValueError, "max_draws"),
        ({"target": object()}, TypeError, "target .*no sample or log_prob"),
        ({"proposal": Normal(0, 1).log_prob}, TypeError, "proposal .*torch.distributions"),
    ],
)
def test_bad_inputs_fail_up_front_with_a_fix(kwargs, error, match):
    args = {"target": TARGET, "proposal": PROPOSAL, "M": 5.0, "n": 10, **kwargs}
    with pytest.raises(error, match=match):
        rejection_sample(**args)


def test_a_draw_budget_too_small_explains_the_acceptance_rate():
    far = Normal(6.0, 0.1)  # almost no proposal mass there: M is about 10^3
    m = math.exp(normal_log_m(6.0, 0.1, 2.0))
    with pytest.raises(RejectionBudgetError, match="acceptance rate .*proposal closer"):
        rejection_sample(far, PROPOSAL, m, 1000, seed=11, max_draws=50_000)


def test_target_with_no_mass_under_the_proposal_cannot_estimate_m():
    with pytest.raises(ValueError, match="zero density at all 100 pilot draws"):
        rejection_sample(Uniform(50.0, 51.0), Normal(0.0, 1.0), n=10, pilot=100, seed=0)


def test_same_seed_same_samples_and_the_callers_rng_is_untouched():
    state = torch.get_rng_state()
    a = rejection_sample(TARGET, PROPOSAL, 5.0, 500, seed=12)
    assert torch.equal(torch.get_rng_state(), state)
    b = rejection_sample(TARGET, PROPOSAL, 5.0, 500, seed=12)
    c = rejection_sample(TARGET, PROPOSAL, 5.0, 500, seed=13)
    assert torch.equal(a.samples, b.samples) and a.stats.n == b.stats.n
    assert not torch.equal(a.samples, c.samples)


def test_class_conditional_samples_are_labelled_per_target():
    targets = {"a": Normal(-1.0, 0.5), "b": Normal(1.0, 0.5)}
    m = math.exp(LOG_M)
    x, y, results = class_conditional_sample(targets, PROPOSAL, m, 2000, seed=0)
    assert x.shape == (4000,) and y == ["a"] * 2000 + ["b"] * 2000
    assert x[:2000].mean() == pytest.approx(-1.0, abs=0.05)
    assert x[2000:].mean() == pytest.approx(1.0, abs=0.05)
    assert set(results) == {"a", "b"} and all(r.stats.violations == 0 for r in results.values())
    per_class = class_conditional_sample(targets, PROPOSAL, {"a": m, "b": m}, 10, seed=0)
    assert torch.equal(per_class[0], class_conditional_sample(targets, PROPOSAL, m, 10, seed=0)[0])
    with pytest.raises(ValueError, match="one M per class"):
        class_conditional_sample(targets, PROPOSAL, {"a": m}, 10)
    with pytest.raises(ValueError, match="targets is empty"):
        class_conditional_sample({}, PROPOSAL, m, 10)


def test_samples_are_the_first_accepted_draws_in_draw_order():
    """The returned samples are the first n accepted draws: same seed, larger n extends."""
    small = rejection_sample(TARGET, PROPOSAL, 5.0, 100, seed=14, batch_size=1000)
    large = rejection_sample(TARGET, PROPOSAL, 5.0, 150, seed=14, batch_size=1000)
    assert torch.equal(large.samples[:100], small.samples)
    assert np.isfinite(small.samples.numpy()).all()
