import math

import numpy as np
import pytest
import torch
from scipy import stats

from rsft.rule import Envelope, EnvelopeError, RejectionStats, accept, acceptance_prob, log_weights


def test_accepted_draws_follow_target_discrete():
    """Draw from q, accept with p/(Mq): the accepted draws follow p (chi-square, fixed seed)."""
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([0.05, 0.10, 0.15, 0.30, 0.40])
    q = torch.tensor([0.30, 0.25, 0.20, 0.15, 0.10])
    log_m = math.log(float((p / q).max()))
    x = torch.multinomial(q, 200_000, replacement=True, generator=gen)
    log_w = torch.log(p[x]) - torch.log(q[x])
    kept = x[accept(log_w, log_m, gen)]
    observed = torch.bincount(kept, minlength=5).numpy()
    expected = p.double().numpy() / p.double().numpy().sum() * observed.sum()
    _, pvalue = stats.chisquare(observed, expected)
    assert pvalue > 0.01
    # The acceptance rate of exact rejection sampling is 1/M.
    assert abs(len(kept) / len(x) - math.exp(-log_m)) < 0.01


def test_accepted_draws_follow_target_continuous():
    """Gaussian target N(1, 0.5²) from a wider proposal N(0, 2²): KS test on the accepted."""
    gen = torch.Generator().manual_seed(1)
    target = torch.distributions.Normal(1.0, 0.5)
    proposal = torch.distributions.Normal(0.0, 2.0)
    x = torch.randn(100_000, generator=gen, dtype=torch.float64) * 2.0
    log_w = target.log_prob(x) - proposal.log_prob(x)
    grid = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    log_m = float((target.log_prob(grid) - proposal.log_prob(grid)).max())
    kept = x[accept(log_w, log_m, gen)].numpy()
    assert stats.kstest(kept, stats.norm(1.0, 0.5).cdf).pvalue > 0.01


def test_too_small_envelope_biases_and_is_counted():
    """With M below max p/q the accepted draws are biased, and the stats say so."""
    gen = torch.Generator().manual_seed(2)
    p = torch.tensor([0.1, 0.9])
    q = torch.tensor([0.5, 0.5])
    x = torch.multinomial(q, 50_000, replacement=True, generator=gen)
    log_w = torch.log(p[x] / q[x])
    log_m = math.log(1.0)  # true max ratio is 1.8
    mask = accept(log_w, log_m, gen)
    share = (x[mask] == 1).float().mean().item()
    assert share < 0.85  # p(1) = 0.9 is not reached: the bias is real
    s = RejectionStats().update(log_w, log_m, mask)
    assert s.violations == int((x == 1).sum())
    assert s.max_ratio == pytest.approx(1.8)


def test_log_space_keeps_tiny_weights_alive():
    log_w = torch.full((200_000,), -5.0, dtype=torch.float64)
    mask = accept(log_w, 0.0, torch.Generator().manual_seed(3))
    assert mask.float().mean().item() == pytest.approx(math.exp(-5), rel=0.1)
    assert acceptance_prob(torch.tensor([10.0]), 0.0).item() == 1.0


def test_stats_effective_sample_size():
    w = torch.tensor([1.0, 1.0, 1.0, 1.0])
    s = RejectionStats().update(torch.log(w), 0.0)
    assert s.ess == pytest.approx(4.0)
    w = torch.tensor([4.0, 0.0001, 0.0001, 0.0001], dtype=torch.float64)
    s = RejectionStats().update(torch.log(w), math.log(4.0))
    assert s.ess == pytest.approx(1.0, abs=0.01)
    assert s.violations == 0


def test_envelope_policies():
    log_w = torch.log(torch.arange(1, 101, dtype=torch.float64))
    assert math.exp(Envelope("max").log_m(log_w)) == pytest.approx(100)
    assert math.exp(Envelope("quantile", quantile=0.9).log_m(log_w)) == pytest.approx(
        90.1, rel=1e-3
    )
    assert math.exp(Envelope("fixed", value=200).log_m(log_w)) == pytest.approx(200)
    with pytest.raises(EnvelopeError, match="below 10 weight"):
        Envelope("fixed", value=90).log_m(log_w)
    assert Envelope("fixed", value=90, on_violation="count").log_m(log_w) == pytest.approx(
        math.log(90)
    )
    with pytest.raises(ValueError, match="positive finite"):
        Envelope("fixed", value=-1)
    with pytest.raises(ValueError, match="unknown envelope policy"):
        Envelope("biggest")


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0, float("nan")], "NaN or infinite"),
        ([1.0, float("inf")], "NaN or infinite"),
        ([1.0, -0.5], "negative"),
        ([0.0, 0.0], "every weight is zero"),
        (np.ones((2, 2)), "1-D"),
    ],
)
def test_bad_weights_are_refused(weights, message):
    with pytest.raises(ValueError, match=message):
        log_weights(torch.as_tensor(weights))
