"""The Metropolis trainer: it samples exp(-L/T), undoes rejections bit for bit, and resumes."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import rsft.param_level.metropolis as metropolis_module
from rsft.param_level import InPlaceStep, Metropolis, TemperatureSchedule, select_parameters
from rsft.param_level.metropolis import _log_ratio
from rsft.seeding import stream_seed

torch.set_num_threads(1)

INT = {torch.float64: torch.int64, torch.float32: torch.int32, torch.bfloat16: torch.int16}


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().view(INT[t.dtype]).clone()


# ----------------------------------------------------------------------------------------
# sampling a Gaussian: L(θ) = ½ Σ ((θ - μ)/s)², so exp(-L/T) is N(μ, T s²)
# ----------------------------------------------------------------------------------------
D = 12
MU = torch.linspace(-2.0, 2.0, D, dtype=torch.float64)
S = torch.linspace(0.6, 1.2, D, dtype=torch.float64)
BATCHES = 20  # batch means for the moment tests: each batch spans several autocorrelation times


def quadratic(theta: torch.Tensor) -> torch.Tensor:
    return 0.5 * (((theta - MU) / S) ** 2).sum()


def gaussian_chain(
    cls: type[Metropolis], temperature: float, n: int, burn: int, seed: int, **kw
) -> np.ndarray:
    """n draws after a burn-in (adaptation stops with it), standardised to N(0, 1) if right."""
    theta = nn.Parameter(MU.clone())
    mh = cls([theta], temperature=temperature, adapt_until=burn, seed=seed, **kw)
    closure = lambda: quadratic(theta)  # noqa: E731
    for _ in range(burn):
        mh.step(closure)
    sigma = mh.sigma
    draws = []
    for _ in range(n):
        mh.step(closure)
        draws.append(theta.detach().clone())
    assert mh.sigma == sigma  # adaptation did stop at adapt_until
    x = (torch.stack(draws) - MU) / (math.sqrt(temperature) * S)
    return x.numpy()


def gaussian_pvalues(x: np.ndarray, thin: int) -> dict[str, float]:
    """Is every coordinate N(0, 1)? Batch means (which allow for the chain's autocorrelation)
    of x and of x² - 1, each a t-test against 0; and a KS test of the thinned, pooled draws."""
    n = x.shape[0] - x.shape[0] % BATCHES
    blocks = x[:n].reshape(BATCHES, -1, x.shape[1])
    first = blocks.mean(axis=(1, 2))
    second = (blocks**2).mean(axis=(1, 2)) - 1.0
    return {
        "mean": float(stats.ttest_1samp(first, 0.0).pvalue),
        "variance": float(stats.ttest_1samp(second, 0.0).pvalue),
        "ks": float(stats.kstest(x[::thin].ravel(), "norm").pvalue),
    }


def lag_correlation(x: np.ndarray, lag: int) -> float:
    """The chain's autocorrelation at ``lag``, averaged over the coordinates."""
    return float(np.mean([np.corrcoef(x[:-lag, j], x[lag:, j])[0, 1] for j in range(x.shape[1])]))


def assert_gaussian(x: np.ndarray, thin: int) -> None:
    # the KS test needs near-independent draws: the thinning must outlast the correlation
    assert abs(lag_correlation(x, thin)) < 0.1, f"thin={thin} leaves correlated draws"
    p = gaussian_pvalues(x, thin)
    assert min(p.values()) > 0.01, f"draws are not N(μ, T s²): p-values {p}, var {np.var(x):.3f}"


RW = {"sigma": 0.1, "target_acceptance": 0.234}
MALA = {"sigma": 0.1, "proposal": "mala", "target_acceptance": 0.574}


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_random_walk_samples_the_gaussian(temperature):
    # A correct sampler fails one of the three tests at 0.01 now and then: at T = 1, seeds 1,
    # 26 and 36 of 0-39 do (the p-values of all 40 are uniform, KS p = 0.8). Seed 0 is off
    # that tail. (With the seed derivation before rsft.seeding: seed 0 only, of 0-39.)
    x = gaussian_chain(Metropolis, temperature, n=4000, burn=1000, seed=0, **RW)
    assert_gaussian(x, thin=100)


@pytest.mark.parametrize("temperature", [1.0, 0.25])
def test_mala_samples_the_gaussian(temperature):
    x = gaussian_chain(Metropolis, temperature, n=2000, burn=500, seed=0, **MALA)
    assert_gaussian(x, thin=25)


class _MalaWithoutHastings(Metropolis):
    """MALA whose acceptance forgets the asymmetry of the Langevin proposal."""

    def _mala(self, closure, temp):
        loss, proposed, _, move = super()._mala(closure, temp)
        return loss, proposed, _log_ratio(loss, proposed, temp), move


def test_gaussian_test_rejects_mala_without_hastings_correction():
    x = gaussian_chain(_MalaWithoutHastings, 1.0, n=2000, burn=500, seed=0, **MALA)
    p = gaussian_pvalues(x, thin=25)
    assert min(p.values()) < 1e-6, p
    with pytest.raises(AssertionError):
        assert_gaussian(x, thin=25)


def test_gaussian_test_rejects_a_coin_that_always_accepts(monkeypatch):
    monkeypatch.setattr(metropolis_module, "accept", lambda log_w, log_m, gen: torch.tensor([True]))
    x = gaussian_chain(Metropolis, 1.0, n=2000, burn=500, seed=0, **RW)
    p = gaussian_pvalues(x, thin=100)
    assert min(p.values()) < 1e-6, p
    with pytest.raises(AssertionError):
        assert_gaussian(x, thin=100)


def _theta_log_alpha(proposal: str, temperature: float, sigma: float, seed: int):
    """One step on the quadratic; the θ and θ' the closure saw, and the step's record."""
    theta = nn.Parameter(MU.clone() + torch.linspace(1.0, -1.5, D, dtype=torch.float64))
    seen = []

    def closure():
        seen.append(theta.detach().clone())
        return quadratic(theta)

    mh = Metropolis(
        [theta],
        sigma=sigma,
        temperature=temperature,
        proposal=proposal,
        target_acceptance=None,
        seed=seed,
    )
    rec = mh.step(closure)
    assert len(seen) == 2
    return seen[0], seen[1], rec


@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_random_walk_log_alpha_is_the_loss_difference(temperature):
    for seed in range(5):
        th0, th1, rec = _theta_log_alpha("random_walk", temperature, 0.4, seed)
        assert rec.loss == pytest.approx(float(quadratic(th0)), rel=1e-12)
        assert rec.proposed_loss == pytest.approx(float(quadratic(th1)), rel=1e-12)
        want = -(float(quadratic(th1)) - float(quadratic(th0))) / temperature
        assert rec.log_alpha == pytest.approx(want, rel=1e-9, abs=1e-12)
        assert rec.temperature == temperature and rec.sigma == 0.4


def _grad_u(theta: torch.Tensor, temperature: float) -> torch.Tensor:
    return (theta - MU) / S**2 / temperature


@pytest.mark.parametrize("chunk", [None, 5], ids=["whole", "chunked"])
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_mala_log_alpha_is_metropolis_hastings(temperature, chunk, monkeypatch):
    """log α = -ΔL/T + log q(θ|θ') - log q(θ'|θ), q(·|x) = N(x - (ε²/2)∇U(x), ε²I)."""
    if chunk:  # a 12-element tensor in pieces of 5, as a large tensor would be
        monkeypatch.setattr("rsft.param_level.perturb.CHUNK", chunk)
    eps = 0.4
    for seed in range(5):
        th0, th1, rec = _theta_log_alpha("mala", temperature, eps, seed)

        def log_q(to, frm):
            mean = frm - 0.5 * eps**2 * _grad_u(frm, temperature)
            return float(-((to - mean) ** 2).sum() / (2 * eps**2))

        want = (
            -(float(quadratic(th1)) - float(quadratic(th0))) / temperature
            + log_q(th0, th1)
            - log_q(th1, th0)
        )
        assert rec.log_alpha == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_mala_proposal_is_a_langevin_step():
    eps, temperature = 0.4, 0.3
    th0, th1, _ = _theta_log_alpha("mala", temperature, eps, seed=3)
    z = (th1 - th0 + 0.5 * eps**2 * _grad_u(th0, temperature)) / eps
    step_seed = stream_seed(3, "param_step", 0)
    assert torch.allclose(z, InPlaceStep([th0], step_seed, 1.0).z(0), atol=1e-12)


# ----------------------------------------------------------------------------------------
# σ adaptation on a 20-D quadratic
# ----------------------------------------------------------------------------------------
def test_adaptive_sigma_reaches_the_target_acceptance():
    theta = nn.Parameter(torch.zeros(20, dtype=torch.float64))
    good = 2.38 / math.sqrt(20)  # the optimal random-walk scale for N(0, I_20)
    mh = Metropolis([theta], sigma=100 * good, adapt_every=10, adapt_until=2500, seed=0)
    closure = lambda: 0.5 * (theta**2).sum()  # noqa: E731
    steps = [mh.step(closure) for _ in range(3500)]
    assert sum(s.accepted for s in steps[:50]) <= 1  # σ 100× too large: nothing is accepted
    last = sum(s.accepted for s in steps[-1000:]) / 1000  # after adaptation stopped
    assert abs(last - 0.234) < 0.08, last
    assert good / 2 < mh.sigma < 2 * good


# ----------------------------------------------------------------------------------------
# a small real model: exact restore, exact deltas, untouched parameters
# ----------------------------------------------------------------------------------------
def small_model(dtype: torch.dtype = torch.float32, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 3))
    with torch.no_grad():
        model[0].weight[0] *= 1e4  # large values
        model[0].weight[1] *= 1e-6  # values near zero
        model[0].bias[:2] = torch.tensor([0.0, -0.0])
        model[1].weight[:4] = 1e-30
        model[3].bias[0] = 1e-40 if dtype != torch.bfloat16 else 1e-38  # subnormal in fp32
    return model.to(dtype)


DATA = torch.randn(32, 6, generator=torch.Generator().manual_seed(0))
TARGET = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))


def model_loss(model: nn.Module) -> torch.Tensor:
    dtype = next(model.parameters()).dtype
    return ((model(DATA.to(dtype)) - TARGET.to(dtype)) ** 2).mean()


def forced(model: nn.Module, accept: bool):
    """A closure that really evaluates the model, offset so that the proposal is certainly
    accepted (current loss + 1e6) or rejected (proposed loss + 1e9)."""
    calls = []

    def closure():
        calls.append(None)
        first = len(calls) % 2 == 1
        offset = (1e6 if first else 0.0) if accept else (0.0 if first else 1e9)
        return model_loss(model) + offset

    return closure


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: bits(p) for n, p in model.named_parameters()}


@pytest.mark.parametrize("proposal", ["random_walk", "mala"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_rejected_step_restores_every_bit(dtype, proposal):
    model = small_model(dtype)
    before = snapshot(model)
    mh = Metropolis(model, sigma=1e-2, proposal=proposal, seed=0)
    for _ in range(5):
        rec = mh.step(forced(model, accept=False))
        assert not rec.accepted
        after = snapshot(model)
        for name in before:
            assert torch.equal(after[name], before[name]), name
    assert mh.accepted == 0 and mh.proposed == 5


@pytest.mark.parametrize("proposal", ["random_walk", "mala"])
def test_subtract_restore_is_not_bit_exact_on_the_same_setup(proposal):
    model = small_model(torch.float32)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    mh = Metropolis(model, sigma=1e-2, proposal=proposal, restore="subtract", seed=0)
    rec = mh.step(forced(model, accept=False))
    assert not rec.accepted
    params = dict(model.named_parameters())
    differ = [n for n in before if not torch.equal(bits(params[n]), bits(before[n]))]
    assert differ, "subtracting the step happened to restore every bit"
    for n in before:  # but only by rounding
        assert torch.allclose(params[n], before[n], rtol=1e-6, atol=1e-7), n


@pytest.mark.parametrize("proposal", ["random_walk", "mala"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_accepted_step_moves_by_exactly_the_regenerated_delta(dtype, proposal):
    model = small_model(dtype)
    mh = Metropolis(model, sigma=1e-2, proposal=proposal, temperature=0.5, seed=7)
    params = mh.params
    for _ in range(3):
        before = [p.detach().clone() for p in params]
        shift = None
        if proposal == "mala":  # the gradient at θ, as the step computes it
            grads = torch.autograd.grad(model_loss(model), params)
            shift = [g.mul(-0.5 * mh.sigma * mh.sigma / 0.5) for g in grads]
        move = InPlaceStep(before, stream_seed(7, "param_step", mh.t), mh.sigma, shift=shift)
        rec = mh.step(forced(model, accept=True))
        assert rec.accepted
        for i, (p, b) in enumerate(zip(params, before)):
            assert torch.equal(bits(p), bits(b + move.delta(i))), mh.names[i]
            assert not torch.equal(bits(p), bits(b))


@pytest.mark.parametrize("proposal", ["random_walk", "mala"])
def test_parameters_not_selected_are_never_touched(proposal):
    model = small_model(torch.float32)
    before = snapshot(model)
    mh = Metropolis(
        model, patterns=["*.bias", "1.*"], sigma=5e-2, temperature=1e-3, proposal=proposal
    )
    assert mh.names == ["0.bias", "1.weight", "1.bias", "3.bias"]
    steps = [mh.step(lambda: model_loss(model)) for _ in range(30)]
    assert 0 < sum(s.accepted for s in steps) < 30  # some of each
    after = snapshot(model)
    for name in ["0.weight", "3.weight"]:
        assert torch.equal(after[name], before[name]), name
    assert not torch.equal(after["0.bias"], before["0.bias"])


def test_non_finite_losses():
    theta = nn.Parameter(torch.zeros(3))
    mh = Metropolis([theta], sigma=0.1, seed=0)
    for bad in (math.nan, math.inf):  # a broken proposal is never kept
        values = iter([1.0, bad])
        rec = mh.step(lambda v=values: next(v))
        assert rec.log_alpha == -math.inf and not rec.accepted
    values = iter([math.nan, 5.0])  # a broken current state: any finite proposal is better
    rec = mh.step(lambda: next(values))
    assert rec.log_alpha == math.inf and rec.accepted


def test_temperature_schedule_is_followed():
    theta = nn.Parameter(torch.zeros(3))
    sched = TemperatureSchedule(start=2.0, end=0.5, kind="linear", total=6)
    mh = Metropolis([theta], sigma=0.1, temperature=sched, seed=0)
    temps = [mh.step(lambda: (theta**2).sum()).temperature for _ in range(8)]
    assert temps == pytest.approx([2.0, 1.75, 1.5, 1.25, 1.0, 0.75, 0.5, 0.5])


def test_acceptance_rate_counts_the_coins():
    theta = nn.Parameter(torch.zeros(4, dtype=torch.float64))
    mh = Metropolis([theta], sigma=0.5, target_acceptance=None, seed=0)
    assert math.isnan(mh.acceptance_rate)
    steps = [mh.step(lambda: 0.5 * (theta**2).sum()) for _ in range(40)]
    assert mh.accepted == sum(s.accepted for s in steps)
    assert mh.acceptance_rate == mh.accepted / 40
    assert 0 < mh.accepted < 40


def test_grad_reduce_is_applied_to_the_gradient():
    """A reduction that zeroes the gradient turns MALA's proposal into θ + εz."""
    theta = nn.Parameter(torch.linspace(-1.0, 1.0, 5, dtype=torch.float64))
    before = theta.detach().clone()
    grads, seen = [], []
    offsets = iter([0.0, 1e9])  # the proposal is rejected

    def closure():
        seen.append(theta.detach().clone())
        return (theta**2).sum() + next(offsets)

    def reduce(g):
        grads.append(g.clone())
        return torch.zeros_like(g)

    mh = Metropolis([theta], sigma=0.2, proposal="mala", seed=1, grad_reduce=reduce)
    assert not mh.step(closure).accepted
    assert len(grads) == 2  # at θ and at θ'
    assert torch.allclose(grads[0], 2 * before)  # the raw gradient is what it reduces
    z = InPlaceStep([before], stream_seed(1, "param_step", 0), 1.0).z(0)
    assert torch.allclose(seen[1] - before, 0.2 * z, atol=1e-12)
    assert torch.equal(theta.detach(), before)


def test_mala_makes_the_tuned_parameters_require_grad():
    model = small_model()
    for p in model.parameters():
        p.requires_grad_(False)
    mh = Metropolis(model, patterns="3.*", proposal="mala", sigma=1e-3)
    assert all(p.requires_grad for p in mh.params)
    assert not model[0].weight.requires_grad


def test_mala_accepts_an_unused_parameter():
    theta, unused = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2))
    mh = Metropolis([theta, unused], proposal="mala", sigma=0.1, seed=0)
    rec = mh.step(lambda: (theta**2).sum())
    assert math.isfinite(rec.log_alpha)


# ----------------------------------------------------------------------------------------
# the same seed, the same run; resuming from a state dict
# ----------------------------------------------------------------------------------------
def mh_run(seed: int, steps: int, proposal: str = "random_walk"):
    model = small_model()
    # MALA's gradient keeps far larger steps: started at 0.2 it still rejects some.
    sigma = 0.2 if proposal == "mala" else 2e-2
    mh = Metropolis(model, sigma=sigma, proposal=proposal, seed=seed, adapt_every=3)
    recs = [mh.step(lambda: model_loss(model)) for _ in range(steps)]
    return snapshot(model), [r.accepted for r in recs], [r.sigma for r in recs]


@pytest.mark.parametrize("proposal", ["random_walk", "mala"])
def test_same_seed_same_run_different_seed_different_run(proposal):
    params_a, acc_a, sig_a = mh_run(3, 25, proposal)
    params_b, acc_b, sig_b = mh_run(3, 25, proposal)
    assert acc_a == acc_b and sig_a == sig_b
    assert all(torch.equal(params_a[n], params_b[n]) for n in params_a)
    assert 0 < sum(acc_a) < 25  # a run with decisions both ways
    params_c, acc_c, _ = mh_run(4, 25, proposal)
    assert acc_c != acc_a or any(not torch.equal(params_a[n], params_c[n]) for n in params_a)


def _resumable(model: nn.Module, seed: int = 5) -> Metropolis:
    return Metropolis(model, sigma=2e-2, seed=seed, adapt_every=3, tol=1e-3, patience=1000)


def test_state_dict_resumes_the_identical_run():
    model = small_model()
    mh = _resumable(model)
    closure = lambda: model_loss(model)  # noqa: E731
    for _ in range(10):
        mh.step(closure)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "mh": mh.state_dict()}, buf)
    rest = [mh.step(closure) for _ in range(10)]
    assert 0 < sum(r.accepted for r in rest) < 10

    buf.seek(0)
    saved = torch.load(buf)
    fresh = small_model(seed=123)  # different initial values: the load must overwrite them
    fresh.load_state_dict(saved["model"])
    mh2 = _resumable(fresh)
    mh2.load_state_dict(saved["mh"])
    rest2 = [mh2.step(lambda: model_loss(fresh)) for _ in range(10)]

    assert [r.accepted for r in rest2] == [r.accepted for r in rest]
    assert [r.sigma for r in rest2] == [r.sigma for r in rest]
    assert [r.loss for r in rest2] == [r.loss for r in rest]
    final, final2 = snapshot(model), snapshot(fresh)
    assert all(torch.equal(final[n], final2[n]) for n in final)
    assert (mh2.t, mh2.proposed, mh2.accepted, mh2.sigma) == (
        mh.t,
        mh.proposed,
        mh.accepted,
        mh.sigma,
    )
    assert mh2.convergence.state_dict() == mh.convergence.state_dict()
    assert mh2.adapter.state_dict() == mh.adapter.state_dict()

    # without the state the continuation differs (the state is what makes it identical)
    other = small_model(seed=123)
    other.load_state_dict(saved["model"])
    mh3 = _resumable(other)
    rest3 = [mh3.step(lambda: model_loss(other)) for _ in range(10)]
    assert [r.accepted for r in rest3] != [r.accepted for r in rest] or any(
        not torch.equal(a, b) for a, b in zip(snapshot(other).values(), snapshot(model).values())
    )


# ----------------------------------------------------------------------------------------
# run(): batches, max_iter, convergence
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("proposal", ["random_walk", "mala"])
def test_run_evaluates_each_step_twice_on_one_batch(proposal):
    model = small_model()
    batches = [torch.randn(4, 6, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    seen = []

    def loss_fn(batch):
        seen.append(next(i for i, b in enumerate(batches) if b is batch))
        return model(batch).pow(2).mean()

    mh = Metropolis(model, sigma=1e-2, proposal=proposal, seed=0)
    steps = mh.run(loss_fn, batches, max_iter=7, progress=False)
    assert len(steps) == 7 and mh.t == 7 and not mh.converged
    assert seen == [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2, 0, 0]


def test_run_without_batches_calls_the_closure():
    theta = nn.Parameter(torch.zeros(3))
    calls = []
    mh = Metropolis([theta], sigma=0.1, seed=0)
    steps = mh.run(lambda: calls.append(1) or (theta**2).sum(), max_iter=5, progress=False)
    assert len(steps) == 5 and len(calls) == 10


@pytest.mark.parametrize("patience", [1, 5])
def test_run_stops_when_converged_and_not_before(patience):
    theta = nn.Parameter(torch.zeros(3))
    mh = Metropolis([theta], sigma=0.1, seed=0, patience=patience)
    steps = mh.run(lambda: 1.0, max_iter=100, progress=False)  # a flat loss: no improvement
    assert len(steps) == patience + 1
    assert mh.converged


def test_run_tol_is_a_relative_improvement():
    def improving(tol):
        theta = nn.Parameter(torch.zeros(3))
        mh = Metropolis([theta], sigma=0.1, seed=0, tol=tol, patience=5)
        losses = iter(100.0 * 0.99**k for k in range(10_000))
        state = {"step": -1, "value": None}

        def loss_fn():  # the same value for both evaluations of a step, 1% lower each step
            state["step"] += 1
            if state["step"] % 2 == 0:
                state["value"] = next(losses)
            return state["value"]

        return mh.run(loss_fn, max_iter=60, progress=False)

    assert len(improving(0.0)) == 60  # every step improves
    assert len(improving(0.5)) < 60  # ... but never by 50%


def test_run_needs_a_positive_max_iter():
    mh = Metropolis([nn.Parameter(torch.zeros(2))], sigma=0.1)
    for bad in (0, -3):
        with pytest.raises(ValueError, match=f"max_iter must be >= 1, got {bad}"):
            mh.run(lambda: 1.0, max_iter=bad, progress=False)


# ----------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------
def test_bad_sigma():
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
            Metropolis(small_model(), sigma=bad)


def test_bad_temperature():
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="temperature start must be a finite number > 0"):
            Metropolis(small_model(), temperature=bad)
    with pytest.raises(ValueError, match="temperature end must be a finite number > 0"):
        Metropolis(
            small_model(), temperature=TemperatureSchedule(1.0, end=0.0, kind="linear", total=5)
        )


def test_annealing_without_end_or_total():
    with pytest.raises(ValueError, match="needs an end temperature"):
        TemperatureSchedule(1.0, kind="geometric", total=10)
    with pytest.raises(ValueError, match="needs the run's number of steps"):
        TemperatureSchedule(1.0, end=0.1, kind="cosine")


def test_pattern_that_selects_nothing_lists_the_names():
    with pytest.raises(ValueError, match="select no parameter") as err:
        Metropolis(small_model(), patterns=["classifier.*"], sigma=1e-3)
    message = str(err.value)
    for name in ("0.weight", "0.bias", "1.weight", "3.bias"):
        assert name in message


def test_no_parameter_requires_grad():
    model = small_model()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter requires grad.*0.weight"):
        Metropolis(model)


def test_unknown_proposal_and_restore():
    with pytest.raises(ValueError, match="unknown proposal 'hmc'"):
        Metropolis(small_model(), proposal="hmc")
    with pytest.raises(ValueError, match="unknown restore 'copy'"):
        Metropolis(small_model(), restore="copy")


@pytest.mark.parametrize("target", [0.0, 1.0, 1.2, -0.5])
def test_target_acceptance_outside_unit_interval(target):
    with pytest.raises(ValueError, match=r"target acceptance must be in \(0, 1\)"):
        Metropolis(small_model(), target_acceptance=target)


def test_mala_needs_a_differentiable_loss():
    theta = nn.Parameter(torch.zeros(3))
    mh = Metropolis([theta], proposal="mala", sigma=0.1)

    def no_grad_loss():
        with torch.no_grad():
            return (theta**2).sum()

    for closure in (lambda: 1.0, lambda: torch.tensor(1.0), no_grad_loss):
        with pytest.raises(ValueError, match="proposal='mala' needs the closure to return a loss"):
            mh.step(closure)
    assert torch.equal(theta.detach(), torch.zeros(3))


def test_select_parameters():
    model = small_model()
    names, params = select_parameters(model, "*.bias")
    assert names == ["0.bias", "1.bias", "3.bias"]
    assert params[0] is model[0].bias
    model[0].weight.requires_grad_(False)
    names, _ = select_parameters(model)
    assert "0.weight" not in names and "0.bias" in names
    tensors = [torch.zeros(2), torch.zeros(3)]
    names, params = select_parameters(tensors)
    assert names == ["param.0", "param.1"] and params[1] is tensors[1]
    names, _ = select_parameters([("a", tensors[0]), ("b", tensors[1])], "b")
    assert names == ["b"]
    with pytest.raises(ValueError, match="must be floating point"):
        select_parameters([("ints", torch.zeros(3, dtype=torch.long))])


@pytest.mark.parametrize("proposal", ["random_walk", "mala"])
def test_a_failing_proposal_evaluation_puts_theta_back(proposal):
    model = small_model()
    before = snapshot(model)
    mh = Metropolis(model, sigma=0.1, proposal=proposal, seed=0)
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == 2:  # the evaluation at θ + Δθ
            raise MemoryError("out of memory")
        return model_loss(model)

    with pytest.raises(MemoryError):
        mh.step(closure)
    for name, p in model.named_parameters():
        assert torch.equal(bits(p), before[name]), name


def test_run_with_no_batches_says_so():
    mh = Metropolis(small_model(), sigma=0.1)
    with pytest.raises(ValueError, match="batches is empty"):
        mh.run(lambda b: torch.zeros(()), batches=[], max_iter=3, progress=False)


def test_state_of_another_seed_is_refused():
    a = Metropolis(small_model(), sigma=0.1, seed=1)
    b = Metropolis(small_model(), sigma=0.1, seed=2)
    with pytest.raises(ValueError, match="seed 1, not 2"):
        b.load_state_dict(a.state_dict())


def test_run_goes_through_an_iterable_again_and_stops_when_an_iterator_runs_out():
    model = small_model()
    seen = []

    class Passes:  # re-iterable, like a DataLoader, and not a Sequence
        def __iter__(self):
            return iter([DATA[:8], DATA[8:16]])

    def loss(batch):
        seen.append(batch)
        return ((model(batch) - TARGET[: len(batch)]) ** 2).mean()

    mh = Metropolis(model, sigma=0.01, seed=0)
    assert len(mh.run(loss, Passes(), max_iter=5, progress=False)) == 5
    assert [torch.equal(b, DATA[:8]) for b in seen[::2]] == [True, False, True, False, True]
    one_shot = iter([DATA[:8], DATA[8:16], DATA[16:24]])
    assert len(mh.run(loss, one_shot, max_iter=10, progress=False)) == 3


def test_mala_hastings_term_survives_bfloat16():
    """The gradient part of the reverse proposal is far below εz's last bf16 bit here; it must
    still count (it is computed in float32 and summed in float64)."""
    d, eps, temp = 20_000, 0.05, 1.0
    theta = nn.Parameter(torch.full((d,), 0.5, dtype=torch.bfloat16))
    seen = []

    def closure():
        seen.append(theta.detach().double().clone())
        return 0.5 * (theta.float() ** 2).sum()

    mh = Metropolis([theta], sigma=eps, temperature=temp, proposal="mala", seed=0)
    rec = mh.step(closure)
    th0, th1 = seen
    g0 = th0.to(torch.bfloat16).double()  # the gradients, as bf16 gives them
    g1 = th1.to(torch.bfloat16).double()
    z = (th1 - th0 + 0.5 * eps**2 * g0) / eps
    shift = 0.5 * eps**2 * (g0 + g1)
    want_hastings = float((shift * (2 * eps * z - shift)).sum()) / (2 * eps**2)
    got_hastings = rec.log_alpha + (rec.proposed_loss - rec.loss) / temp
    assert abs(want_hastings) > 5  # a term that matters
    assert got_hastings == pytest.approx(want_hastings, rel=0.05)
