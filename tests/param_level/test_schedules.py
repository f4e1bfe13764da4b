"""Temperature schedules, the σ adapter and the convergence test of the parameter level."""

from __future__ import annotations

import math

import pytest

from rsft.param_level import Convergence, SigmaAdapter, TemperatureSchedule

KINDS = ["linear", "geometric", "cosine"]


# ----------------------------------------------------------------------------------------
# TemperatureSchedule
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("start", "end"), [(2.0, 0.05), (0.1, 3.0)])
def test_annealing_hits_both_ends_and_is_monotone(kind, start, end):
    total = 50
    sched = TemperatureSchedule(start=start, end=end, kind=kind, total=total)
    assert sched(0) == pytest.approx(start, rel=1e-12)
    assert sched(total) == pytest.approx(end, rel=1e-12)
    # past the end of the run the temperature stays at the end
    assert sched(total + 1) == pytest.approx(end, rel=1e-12)
    assert sched(10 * total) == pytest.approx(end, rel=1e-12)
    values = [sched(t) for t in range(total + 1)]
    diffs = [b - a for a, b in zip(values, values[1:])]
    if end < start:
        assert all(d < 0 for d in diffs), f"{kind} is not strictly decreasing: {values}"
    else:
        assert all(d > 0 for d in diffs), f"{kind} is not strictly increasing: {values}"
    assert all(min(start, end) <= v <= max(start, end) for v in values)


def test_annealing_midpoints_distinguish_the_kinds():
    start, end, total = 4.0, 1.0, 10
    linear = TemperatureSchedule(start, end, "linear", total)
    geometric = TemperatureSchedule(start, end, "geometric", total)
    cosine = TemperatureSchedule(start, end, "cosine", total)
    assert linear(5) == pytest.approx(2.5)
    assert geometric(5) == pytest.approx(2.0)  # sqrt(start * end)
    assert cosine(5) == pytest.approx(2.5)
    # a cosine is flat at both ends: it moves less than the line in the first quarter
    assert start - cosine(2) < start - linear(2)
    assert cosine(8) - end < linear(8) - end


def test_constant_schedule_ignores_step_and_end():
    sched = TemperatureSchedule(start=0.7)
    assert [sched(t) for t in (0, 1, 10, 10**9)] == [0.7] * 4
    assert TemperatureSchedule(start=0.7, end=5.0, kind="constant", total=3)(3) == 0.7


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
@pytest.mark.parametrize("field", ["start", "end"])
def test_temperature_must_be_positive_and_finite(field, bad):
    kwargs = {"start": 1.0, "end": 0.5, "kind": "linear", "total": 10, field: bad}
    with pytest.raises(ValueError, match=f"temperature {field} must be a finite number > 0"):
        TemperatureSchedule(**kwargs)


def test_unknown_temperature_kind():
    with pytest.raises(ValueError, match="unknown temperature schedule 'exponential'"):
        TemperatureSchedule(start=1.0, end=0.5, kind="exponential", total=10)


@pytest.mark.parametrize("kind", KINDS)
def test_annealing_needs_an_end(kind):
    with pytest.raises(ValueError, match=f"a {kind} temperature schedule needs an end"):
        TemperatureSchedule(start=1.0, kind=kind, total=10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("total", [None, 0, -5])
def test_annealing_needs_a_number_of_steps(kind, total):
    with pytest.raises(ValueError, match="needs the run's number of steps"):
        TemperatureSchedule(start=1.0, end=0.5, kind=kind, total=total)


# ----------------------------------------------------------------------------------------
# SigmaAdapter
# ----------------------------------------------------------------------------------------
def _window(adapter: SigmaAdapter, sigma: float, accepts: list[bool], start: int = 0) -> list:
    out = []
    for i, ok in enumerate(accepts):
        sigma = adapter.update(sigma, ok, start + i)
        out.append(sigma)
    return out


def test_sigma_rises_when_acceptance_is_above_target():
    adapter = SigmaAdapter(target=0.25, every=4)
    sigmas = _window(adapter, 1.0, [True, True, True, False])  # rate 0.75
    assert sigmas[:3] == [1.0, 1.0, 1.0]  # changed only at the end of a window
    assert sigmas[3] == pytest.approx(math.exp(0.75 - 0.25))
    assert sigmas[3] > 1.0


def test_sigma_falls_when_acceptance_is_below_target():
    adapter = SigmaAdapter(target=0.5, every=5, gain=2.0)
    sigmas = _window(adapter, 0.3, [False, True, False, False, False])  # rate 0.2
    assert sigmas[:4] == [0.3] * 4
    assert sigmas[4] == pytest.approx(0.3 * math.exp(2.0 * (0.2 - 0.5)))
    assert sigmas[4] < 0.3


def test_sigma_is_unchanged_at_the_target_rate():
    adapter = SigmaAdapter(target=0.5, every=2)
    assert _window(adapter, 0.3, [True, False] * 3) == [0.3] * 6


def test_sigma_gain_shrinks_like_one_over_sqrt_k():
    adapter = SigmaAdapter(target=0.5, every=1)
    sigma, logs = 1.0, []
    for step in range(4):
        new = adapter.update(sigma, True, step)
        logs.append(math.log(new / sigma))
        sigma = new
    assert logs == pytest.approx([0.5 / math.sqrt(k) for k in (1, 2, 3, 4)])
    assert adapter.k == 4


def test_sigma_stops_adapting_at_until():
    adapter = SigmaAdapter(target=0.234, every=2, until=4)
    sigmas = _window(adapter, 1.0, [True] * 10)
    assert sigmas[1] > 1.0 and sigmas[3] > sigmas[1]  # two windows before `until`
    assert sigmas[4:] == [sigmas[3]] * 6  # frozen from step 4 on
    assert adapter.k == 2
    assert adapter.window_steps == 0  # steps past `until` are not even counted


def test_no_target_means_no_adaptation():
    adapter = SigmaAdapter(target=None, every=1)
    assert _window(adapter, 0.01, [True] * 5 + [False] * 5) == [0.01] * 10


def test_sigma_adapter_state_round_trip():
    a = SigmaAdapter(target=0.3, every=5)
    _window(a, 1.0, [True, False] * 6 + [True])  # k = 2, mid-window 3 steps
    b = SigmaAdapter(target=0.3, every=5)
    b.load_state_dict(a.state_dict())
    assert (b.k, b.window_accepted, b.window_steps) == (2, 2, 3)
    assert _window(a, 0.5, [True, True, False], 13) == _window(b, 0.5, [True, True, False], 13)


@pytest.mark.parametrize("target", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_sigma_target_outside_unit_interval(target):
    with pytest.raises(ValueError, match=r"target acceptance must be in \(0, 1\)"):
        SigmaAdapter(target=target)


def test_sigma_adapter_rejects_bad_window_and_gain():
    with pytest.raises(ValueError, match="adapt_every must be >= 1, got 0"):
        SigmaAdapter(every=0)
    for gain in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="adapt_gain must be > 0"):
            SigmaAdapter(gain=gain)


# ----------------------------------------------------------------------------------------
# Convergence
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("patience", [1, 3, 10])
def test_convergence_stops_after_patience_steps_without_improvement(patience):
    conv = Convergence(tol=0.0, patience=patience)
    assert conv.update(5.0) is False  # the first loss is an improvement over +inf
    for _ in range(patience - 1):
        assert conv.update(5.0) is False
    assert conv.update(5.0) is True


def test_convergence_improvement_resets_the_count():
    conv = Convergence(tol=0.0, patience=3, smoothing=0.0)  # no smoothing: ema = loss
    flags = [conv.update(x) for x in [5.0, 5.0, 5.0, 4.0, 4.0, 4.0, 4.0]]
    assert flags == [False, False, False, False, False, False, True]


def test_convergence_keeps_going_while_loss_improves():
    conv = Convergence(tol=0.0, patience=2)
    assert not any(conv.update(100.0 * 0.9**i) for i in range(200))


def test_convergence_tol_is_relative():
    # every loss is 1% below the last: an improvement for tol=0, not for tol=5%
    losses = [100.0 * 0.99**i for i in range(30)]
    strict = Convergence(tol=0.05, patience=4, smoothing=0.0)
    flags = [strict.update(x) for x in losses]
    assert flags.index(True) == 4
    lax = Convergence(tol=0.0, patience=4, smoothing=0.0)
    assert not any(lax.update(x) for x in losses)


def test_convergence_smoothing_averages_the_losses():
    conv = Convergence(tol=0.0, patience=100, smoothing=0.5)
    conv.update(4.0)
    conv.update(2.0)
    assert conv.ema == pytest.approx(3.0)
    assert conv.best == pytest.approx(3.0)


def test_convergence_is_off_without_patience_and_ignores_non_finite_losses():
    off = Convergence(tol=0.0, patience=0)
    assert not any(off.update(1.0) for _ in range(50))
    conv = Convergence(tol=0.0, patience=2, smoothing=0.0)
    conv.update(1.0)
    assert conv.update(math.nan) is False and conv.update(math.inf) is False
    assert conv.since == 0 and conv.ema == 1.0


def test_convergence_state_round_trip():
    a = Convergence(tol=0.01, patience=5)
    for x in [3.0, 2.0, 2.0, 2.0]:
        a.update(x)
    b = Convergence(tol=0.01, patience=5)
    b.load_state_dict(a.state_dict())
    seq = [2.0, 2.0, 2.0, 2.0]
    assert [a.update(x) for x in seq] == [b.update(x) for x in seq]
    assert (a.ema, a.best, a.since) == (b.ema, b.best, b.since)
