"""MeZO's zeroth-order SGD: two forward passes per step along a regenerated direction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from rsft.param_level import ZerothOrderSGD
from rsft.param_level.perturb import noise
from rsft.seeding import stream_seed

torch.set_num_threads(1)

D = 6
MU = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0, -1.0], dtype=torch.float64)
S = torch.tensor([0.5, 1.0, 2.0, 1.0, 0.7, 1.5], dtype=torch.float64)


def quadratic(theta: torch.Tensor) -> torch.Tensor:
    return 0.5 * (((theta - MU) / S) ** 2).sum()


def grad(theta: torch.Tensor) -> torch.Tensor:
    return (theta - MU) / S**2


def test_minimises_a_quadratic():
    theta = nn.Parameter(torch.zeros(D, dtype=torch.float64))
    opt = ZerothOrderSGD([theta], lr=0.05, eps=1e-3, seed=0)
    start = float(quadratic(theta.detach()))
    losses = [opt.step(lambda: quadratic(theta)) for _ in range(600)]
    end = float(quadratic(theta.detach()))
    assert end < start / 10, (start, end)
    assert np.mean(losses[-50:]) < np.mean(losses[:50]) / 10
    assert opt.t == 600


def test_one_step_is_two_point_estimate_along_regenerated_direction():
    theta = nn.Parameter(torch.linspace(-1.0, 2.0, D, dtype=torch.float64))
    th0 = theta.detach().clone()
    seen = []

    def closure():
        seen.append(theta.detach().clone())
        return quadratic(theta)

    lr, eps = 0.01, 1e-3
    opt = ZerothOrderSGD([theta], lr=lr, eps=eps, seed=4)
    mean_loss = opt.step(closure)
    assert len(seen) == 2  # two forward passes, no more
    z = noise(th0, stream_seed(4, "param_step", 0), 0)
    assert torch.allclose(seen[0], th0 + eps * z, atol=1e-14)
    assert torch.allclose(seen[1], th0 - eps * z, atol=1e-14)
    plus, minus = float(quadratic(seen[0])), float(quadratic(seen[1]))
    g = (plus - minus) / (2 * eps)
    assert g == pytest.approx(float(z @ grad(th0)), rel=1e-6)  # exact for a quadratic
    assert torch.allclose(theta.detach(), th0 - lr * g * z, atol=1e-13)
    assert mean_loss == pytest.approx((plus + minus) / 2, rel=1e-12)


def test_two_closure_calls_per_step():
    theta = nn.Parameter(torch.zeros(3))
    calls = []
    opt = ZerothOrderSGD([theta], lr=1e-3, eps=1e-3)
    for _ in range(7):
        opt.step(lambda: calls.append(1) or (theta**2).sum())
    assert len(calls) == 14


def test_estimate_is_unbiased():
    """E[g z] = ∇L for z ~ N(0, I): the mean step over many seeds points along -∇L."""
    theta = nn.Parameter(torch.linspace(-1.0, 2.0, D, dtype=torch.float64))
    th0 = theta.detach().clone()
    lr, n = 1e-3, 3000
    opt = ZerothOrderSGD([theta], lr=lr, eps=1e-4, seed=0)
    estimates = np.empty((n, D))
    for k in range(n):
        with torch.no_grad():
            theta.copy_(th0)  # every step from the same θ: n independent estimates
        opt.step(lambda: quadratic(theta))
        estimates[k] = ((th0 - theta.detach()) / lr).numpy()
    true = grad(th0).numpy()
    # Hotelling's T² of the n estimates against the true gradient
    diff = estimates.mean(0) - true
    cov = np.cov(estimates, rowvar=False)
    t2 = n * diff @ np.linalg.solve(cov, diff)
    f = (n - D) / (D * (n - 1)) * t2
    assert stats.f.sf(f, D, n - D) > 0.01
    # the same test has power: a gradient 30% too long is rejected
    wrong = estimates.mean(0) - 1.3 * true
    f_wrong = (n - D) / (D * (n - 1)) * n * wrong @ np.linalg.solve(cov, wrong)
    assert stats.f.sf(f_wrong, D, n - D) < 1e-4


def _sgd_run(seed: int, steps: int = 20):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(1))
    opt = ZerothOrderSGD(model, lr=1e-2, eps=1e-3, seed=seed)
    losses = [opt.step(lambda: model(x).pow(2).mean()) for _ in range(steps)]
    return model, opt, losses, x


def test_same_seed_same_run_different_seed_different_run():
    a, _, la, _ = _sgd_run(seed=1)
    b, _, lb, _ = _sgd_run(seed=1)
    c, _, lc, _ = _sgd_run(seed=2)
    assert la == lb
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa.view(torch.int32), pb.view(torch.int32))
    assert la != lc
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_state_dict_resumes_the_identical_run():
    model, opt, _, x = _sgd_run(seed=3, steps=10)
    saved_params = {k: v.clone() for k, v in model.state_dict().items()}
    saved_state = dict(opt.state_dict())
    rest = [opt.step(lambda: model(x).pow(2).mean()) for _ in range(10)]

    fresh, opt2, _, _ = _sgd_run(seed=3, steps=0)
    fresh.load_state_dict(saved_params)
    opt2.load_state_dict(saved_state)
    rest2 = [opt2.step(lambda: fresh(x).pow(2).mean()) for _ in range(10)]
    assert rest2 == rest
    for pa, pb in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(pa, pb)

    # without the step count the continuation uses other directions
    other, opt3, _, _ = _sgd_run(seed=3, steps=0)
    other.load_state_dict(saved_params)
    assert [opt3.step(lambda: other(x).pow(2).mean()) for _ in range(10)] != rest


def test_parameters_not_selected_are_never_touched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("0.")}
    tuned = model[2].weight.detach().clone()
    x = torch.randn(16, 5)
    opt = ZerothOrderSGD(model, patterns="2.*", lr=1e-2, eps=1e-3)
    assert opt.names == ["2.weight", "2.bias"]
    for _ in range(10):
        opt.step(lambda: model(x).pow(2).mean())
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p.view(torch.int32), frozen[n].view(torch.int32)), n
    assert not torch.equal(model[2].weight, tuned)


@pytest.mark.parametrize("lr", [0.0, -1e-3, math.nan])
def test_lr_must_be_positive(lr):
    with pytest.raises(ValueError, match="lr must be > 0"):
        ZerothOrderSGD([nn.Parameter(torch.zeros(2))], lr=lr)


@pytest.mark.parametrize("eps", [0.0, -1e-3, math.nan, math.inf])
def test_eps_must_be_positive(eps):
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        ZerothOrderSGD([nn.Parameter(torch.zeros(2))], eps=eps)


def test_pattern_that_selects_nothing():
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"select no parameter.*weight, bias"):
        ZerothOrderSGD(model, patterns="lora_*")
