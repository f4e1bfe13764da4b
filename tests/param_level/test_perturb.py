"""In-place seeded steps: regenerated noise, bit-for-bit undo, the memory an exact undo holds."""

from __future__ import annotations

import itertools

import pytest
import torch
from scipy import stats
from torch import nn

from rsft.param_level import InPlaceStep
from rsft.param_level.perturb import noise
from rsft.seeding import stream_seed

torch.set_num_threads(1)

INT = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.bfloat16: torch.int16,
    torch.float16: torch.int16,
}
DTYPES = list(INT)


def bits(t: torch.Tensor) -> torch.Tensor:
    """The bit patterns of ``t`` as integers: equal bits, equal tensors (NaN and -0.0 too)."""
    return t.detach().view(INT[t.dtype]).clone()


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(bits(a), bits(b))


def awkward_params(dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    """Tensors with values over many magnitudes, zeros of both signs and subnormals."""
    g = torch.Generator().manual_seed(seed)
    mags = 10.0 ** torch.randint(-6, 4, (32, 1), generator=g).float()
    a = (torch.randn(32, 17, generator=g) * mags).to(dtype)
    tiny = torch.finfo(dtype).tiny
    b = torch.tensor(
        [0.0, -0.0, tiny, -tiny, tiny / 8, -tiny / 4, 1e-30, 1.0, -3.5, 300.0], dtype=torch.float32
    ).to(dtype)
    c = torch.randn(5, generator=g).to(dtype)
    return [a, b, c]


# ----------------------------------------------------------------------------------------
# the noise
# ----------------------------------------------------------------------------------------
def test_noise_is_regenerated_identically():
    p = torch.empty(300, 7)
    assert torch.equal(noise(p, 123, 2), noise(p, 123, 2))
    assert not torch.equal(noise(p, 123, 2), noise(p, 124, 2))
    assert not torch.equal(noise(p, 123, 2), noise(p, 123, 3))


def test_noise_is_standard_normal_and_independent_across_tensors():
    p = torch.empty(4000, dtype=torch.float64)
    z0, z1 = noise(p, 7, 0), noise(p, 7, 1)
    for z in (z0, z1):
        assert stats.kstest(z.numpy(), "norm").pvalue > 0.01
    # correlation of independent N(0,1) draws: ~N(0, 1/n); 4 standard errors is p ~ 6e-5
    r = float(torch.corrcoef(torch.stack([z0, z1]))[0, 1])
    assert abs(r) < 4 / 4000**0.5


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_noise_takes_the_parameter_dtype_and_shape(dtype):
    z = noise(torch.empty(3, 4, 5, dtype=dtype), 0, 0)
    assert z.dtype == dtype and z.shape == (3, 4, 5)


def test_piece_seeds_do_not_collide():
    pieces = itertools.product(range(200), range(50), range(2))
    seeds = {stream_seed(s, "param_noise", i, c) for s, i, c in pieces}
    assert len(seeds) == 200 * 50 * 2
    assert all(0 <= s < 2**63 for s in seeds)


# ----------------------------------------------------------------------------------------
# apply: θ ← θ + scale·z + shift
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_apply_adds_exactly_the_regenerated_delta(dtype):
    params = awkward_params(dtype, 0)
    shift = [torch.randn(p.shape).to(dtype) * 1e-2 for p in params]
    before = [p.clone() for p in params]
    step = InPlaceStep(params, seed=99, scale=0.03, shift=shift)
    step.apply()
    for i, (p, b) in enumerate(zip(params, before)):
        d = step.delta(i)
        assert same_bits(d, step.delta(i))  # regenerated, not stored
        assert same_bits(d, noise(p, 99, i).mul_(0.03).add_(shift[i]))
        assert same_bits(p, b + d)


def test_z_is_the_unscaled_noise():
    p = [torch.zeros(10, dtype=torch.float64)]
    step = InPlaceStep(p, seed=5, scale=2.5)
    assert torch.equal(step.z(0), noise(p[0], 5, 0))
    assert torch.allclose(step.delta(0), 2.5 * step.z(0))


def test_apply_twice_or_undo_first_is_an_error():
    step = InPlaceStep([torch.zeros(3)], seed=0, scale=1.0)
    with pytest.raises(RuntimeError, match="undo\\(\\) before apply\\(\\)"):
        step.undo()
    step.apply()
    with pytest.raises(RuntimeError, match="already applied"):
        step.apply()


# ----------------------------------------------------------------------------------------
# undo: bit for bit
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_apply_then_undo_restores_every_bit(dtype):
    """Many seeds and scales, from far below the values to far above them."""
    fixed_small = fallback = 0
    for seed, scale in itertools.product(range(12), [1e-7, 1e-3, 0.1, 10.0, 1e4]):
        params = awkward_params(dtype, seed)
        before = [bits(p) for p in params]
        step = InPlaceStep(params, seed=seed, scale=scale)
        step.apply()
        assert not all(torch.equal(bits(p), b) for p, b in zip(params, before))
        fixed_small += sum(int((f.small != 0).sum()) for f in step._fixes)
        fallback += sum(f.index.numel() for f in step._fixes)
        step.undo()
        for p, b in zip(params, before):
            assert torch.equal(bits(p), b), (dtype, seed, scale)
    # both correction paths were needed: small int8 differences and whole kept values
    assert fixed_small > 0
    assert fallback > 0


def test_large_scale_forces_the_fallback_path_and_is_still_exact():
    params = [torch.full((1000,), 1e-3), torch.tensor([-0.0, 0.0, 1e-40])]
    before = [bits(p) for p in params]
    step = InPlaceStep(params, seed=3, scale=1e3)
    step.apply()
    # (θ + δ) - δ loses θ almost entirely: nearly every element is kept whole
    assert step._fixes[0].index.numel() > 900
    step.undo()
    assert all(torch.equal(bits(p), b) for p, b in zip(params, before))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_special_values_are_restored(dtype):
    nan_bits = torch.tensor([0x7FC00123], dtype=torch.int32).view(torch.float32)  # a payload
    p = torch.cat(
        [torch.tensor([float("inf"), -float("inf"), -0.0, 0.0]), nan_bits, torch.ones(3)]
    ).to(dtype)
    before = bits(p)
    step = InPlaceStep([p], seed=11, scale=1e-2)
    step.apply()
    step.undo()
    assert torch.equal(bits(p), before)


def test_subtract_restore_is_only_within_rounding():
    """Without the fixes the same apply/undo does not give back θ's bits: the fixes matter."""
    params = awkward_params(torch.float32, 0)
    before = [p.clone() for p in params]
    step = InPlaceStep(params, seed=0, scale=0.1, exact=False)
    step.apply()
    assert step.fix_bytes() == 0
    step.undo()
    assert not all(same_bits(p, b) for p, b in zip(params, before))
    for p, b in zip(params, before):  # ... but it is close: within an ulp of |δ| ≲ 0.5
        assert torch.allclose(p, b, rtol=0, atol=1e-6)


def test_undo_then_apply_again_repeats_the_same_step():
    p = torch.randn(50)
    step = InPlaceStep([p], seed=4, scale=0.5)
    step.apply()
    first = p.clone()
    step.undo()
    step.apply()
    assert same_bits(p, first)


# ----------------------------------------------------------------------------------------
# memory held for the exact undo
# ----------------------------------------------------------------------------------------
def test_fix_bytes_is_about_one_byte_per_element():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.LayerNorm(128), nn.Linear(128, 10))
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    assert InPlaceStep(params, seed=1, scale=1e-3).fix_bytes() == 0  # nothing before apply
    step = InPlaceStep(params, seed=1, scale=1e-3)
    step.apply()
    assert n <= step.fix_bytes() <= 1.5 * n
    step.undo()
    assert step.fix_bytes() == 0
    step.apply()
    step.commit()
    assert step.fix_bytes() == 0
    assert not step.applied


def test_fix_bytes_counts_the_fallback_values():
    p = torch.full((100,), 1e-3)
    step = InPlaceStep([p], seed=0, scale=1e3)
    step.apply()
    k = step._fixes[0].index.numel()
    assert k > 0
    assert step.fix_bytes() == 100 + k * (8 + 4)  # int8 each, plus index (int64) and value


def test_commit_keeps_the_step():
    p = torch.zeros(20)
    step = InPlaceStep([p], seed=2, scale=1.0)
    step.apply()
    after = p.clone()
    step.commit()
    assert same_bits(p, after) and not torch.equal(p, torch.zeros(20))
    with pytest.raises(RuntimeError, match="before apply"):
        step.undo()  # nothing left to undo


def test_non_contiguous_parameter_is_restored():
    conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    w = conv.weight
    assert not w.is_contiguous()
    before = bits(w)
    step = InPlaceStep([w], seed=0, scale=1e-2)
    step.apply()
    step.undo()
    assert torch.equal(bits(w), before)


def test_large_tensors_are_stepped_in_chunks_and_restored_exactly(monkeypatch):
    monkeypatch.setattr("rsft.param_level.perturb.CHUNK", 7)
    g = torch.Generator().manual_seed(0)
    params = [
        torch.randn(20, generator=g) * 1e-3,  # 3 pieces
        torch.randn(5, generator=g),  # one piece
        torch.randn(4, 6, generator=g).t(),  # non-contiguous: one piece
        torch.randn(3, 9, generator=g),  # 27 elements: 4 pieces
    ]
    shift = [torch.randn(p.shape, generator=g) for p in params]
    before = [p.clone() for p in params]
    step = InPlaceStep(params, seed=11, scale=0.5, shift=shift, shift_scale=-0.1)
    # The noise of a chunked tensor is its pieces' noise, in order.
    zs = [z for z, _ in step.z_pieces(0)]
    assert len(zs) == 3 and torch.equal(torch.cat(zs), step.z(0))
    assert torch.equal(step.z(0), noise(params[0], 11, 0))
    step.apply()
    for i, (p, b) in enumerate(zip(params, before)):
        assert torch.equal(p, b + step.delta(i)), i
        assert torch.allclose(step.delta(i), step.z(i) * 0.5 - 0.1 * shift[i])
    step.undo()
    for p, b in zip(params, before):
        assert same_bits(p, b)


@pytest.mark.parametrize("exact", [True, False])
def test_a_scalar_parameter_is_stepped_and_restored(exact):
    params = [torch.tensor(2.6592), torch.randn(4), torch.tensor(-0.0)]
    before = [p.clone() for p in params]
    step = InPlaceStep(params, seed=3, scale=1e-2, exact=exact)
    step.apply()
    assert not torch.equal(params[0], before[0])
    step.undo()
    if exact:
        assert all(same_bits(p, b) for p, b in zip(params, before))
    else:
        assert all(torch.allclose(p, b, atol=1e-6) for p, b in zip(params, before))


def test_a_scalar_that_needs_its_whole_value_kept_is_restored():
    p = torch.tensor(1e-30)  # a step of 1.0 swamps it: (p + 1) - 1 is 0, not 1e-30
    step = InPlaceStep([p], seed=0, scale=1.0)
    step.apply()
    assert step._fixes[0].index.numel() == 1
    step.undo()
    assert same_bits(p, torch.tensor(1e-30))


@pytest.mark.parametrize("exact", [True, False])
def test_a_failure_during_apply_leaves_every_tensor_as_it_was(exact, monkeypatch):
    import rsft.param_level.perturb as perturb

    params = [torch.randn(10), torch.randn(10), torch.randn(10)]
    before = [p.clone() for p in params]
    real = perturb.noise
    calls = []

    def failing_noise(param, seed, index):
        calls.append(index)
        if len(calls) == 3:  # the third tensor's noise: out of memory
            raise MemoryError("out of memory")
        return real(param, seed, index)

    monkeypatch.setattr(perturb, "noise", failing_noise)
    step = InPlaceStep(params, seed=1, scale=0.1, exact=exact)
    with pytest.raises(MemoryError):
        step.apply()
    monkeypatch.setattr(perturb, "noise", real)
    assert not step.applied
    for p, b in zip(params, before):
        assert same_bits(p, b) if exact else torch.allclose(p, b, atol=1e-6)
