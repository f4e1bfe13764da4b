"""The coin of the rule: accept_given (log u drawn beforehand), accept, and the bound test."""

import math

import pytest
import torch

from rsft.rule import (
    Envelope,
    EnvelopeError,
    RejectionStats,
    accept,
    accept_given,
    acceptance_log_prob,
    log_uniform,
)
from rsft.rule.envelope import violations

INF = math.inf


def f64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_accept_is_accept_given_with_fresh_log_uniforms():
    log_w = torch.linspace(-30, 3, 5000, dtype=torch.float64)
    mask = accept(log_w, 0.5, torch.Generator().manual_seed(4))
    log_u = log_uniform(len(log_w), torch.Generator().manual_seed(4))
    assert torch.equal(mask, accept_given(log_w, 0.5, log_u))


def test_zero_weight_is_never_accepted():
    log_w = f64(-INF, -INF, -INF)
    for log_m in (0.0, -700.0, 700.0):
        assert not accept_given(log_w, log_m, f64(-1e300, -50.0, -1e-300)).any()
    assert acceptance_log_prob(log_w, 0.0).eq(-INF).all()


def test_weight_at_or_above_m_is_always_accepted():
    log_m = math.log(2.0)
    log_w = f64(log_m, log_m + 1.0, 800.0)  # w = M, w = e·M, w far beyond any float
    assert accept_given(log_w, log_m, f64(-1e-300, -1e-300, -1e-300)).all()
    assert acceptance_log_prob(log_w, log_m).eq(0.0).all()  # a = min(1, w/M) = 1


def test_the_coin_is_strict():
    """Keep when log u < log a: P(u < a) = a for u ~ U(0, 1)."""
    log_w = f64(-1.0, -1.0)
    assert accept_given(log_w, 0.0, f64(-1.0 - 1e-12, -1.0)).tolist() == [True, False]


def test_accept_given_decides_in_float64():
    """float32 log weights are compared as float64, as accept() compares them."""
    log_w = torch.tensor([-3.0000002, -2.9999998], dtype=torch.float32)
    log_u = f64(-3.0, -3.0)
    want = log_u < log_w.double()
    assert torch.equal(accept_given(log_w, 0.0, log_u), want)


def test_per_draw_envelopes_broadcast():
    log_w = f64(0.0, 0.0, 0.0)
    log_m = f64(-1.0, 1.0, 3.0)  # a = 1, e^-1, e^-3
    log_u = f64(-0.5, -0.5, -0.5)
    assert accept_given(log_w, log_m, log_u).tolist() == [True, False, False]


def test_accept_given_rate_is_the_acceptance_probability():
    n, log_a = 200_000, math.log(0.3)
    log_u = log_uniform(n, torch.Generator().manual_seed(9))
    keep = accept_given(torch.full((n,), log_a, dtype=torch.float64), 0.0, log_u)
    rate = float(keep.double().mean())
    assert rate == pytest.approx(0.3, abs=4 * math.sqrt(0.3 * 0.7 / n))


# -- a fixed M ---------------------------------------------------------------------------
def test_violations_ignore_rounding():
    log_m = math.log(3.0)
    log_w = f64(log_m - 1.0, log_m, log_m + 1e-13, log_m + 1e-9, -INF)
    assert violations(log_w, log_m) == 1


def test_fixed_m_below_a_weight_raises_or_counts():
    log_w = torch.log(f64(0.0, 1.0, 2.0, 5.0))
    with pytest.raises(EnvelopeError, match="below 1 weight"):
        Envelope("fixed", value=4.0).log_m(log_w)
    log_m = Envelope("fixed", value=4.0, on_violation="count").log_m(log_w)
    assert log_m == math.log(4.0)
    keep = accept_given(log_w, log_m, f64(-1e-9, -1e-9, -1e-9, -1e-9))
    assert keep.tolist() == [False, False, False, True]  # w = 5 > M: kept with probability 1
    stats = RejectionStats().update(log_w, log_m, keep)
    assert stats.violations == 1
    assert stats.expected_acceptance == pytest.approx((0 + 0.25 + 0.5 + 1) / 4)


def test_fixed_m_above_the_weights_is_exact():
    log_w = torch.log(f64(1.0, 2.0))
    log_m = Envelope("fixed", value=4.0).log_m(log_w)
    assert acceptance_log_prob(log_w, log_m).exp().tolist() == pytest.approx([0.25, 0.5])
    assert violations(log_w, log_m) == 0
