"""Every random stream derives from the run's seed, a stream name and integer keys."""

import itertools

import numpy as np
import pytest
import torch

from rsft.data_level.sampler import RejectionSampler
from rsft.rule import accept
from rsft.seeding import STREAMS, stream_seed, torch_generator


def _keys(name: str, *values: int) -> tuple[int, ...]:
    """``values`` cut or padded to the stream's number of keys."""
    n = len(STREAMS[name].keys)
    return (tuple(values) + (0,) * n)[:n]


def test_same_inputs_same_seed():
    for name in STREAMS:
        keys = _keys(name, 3, 1)
        assert stream_seed(7, name, *keys) == stream_seed(7, name, *keys)
        assert stream_seed(7, name, *keys) == stream_seed(np.int64(7), name, *map(np.int64, keys))
    a = torch.rand(5, generator=torch_generator(7, "sampler", 2))
    assert torch.equal(a, torch.rand(5, generator=torch_generator(7, "sampler", 2)))


def test_the_derivation_is_fixed():
    """A change here changes every run's draws: it must be deliberate (and say so)."""
    assert stream_seed(0, "sampler", 0) == 4329139302909563008
    assert stream_seed(1, "generate", 2, 3) == 1504810777


def test_names_keys_and_seeds_give_distinct_streams():
    seeds = {}
    for name in STREAMS:
        ranges = [range(6)] * len(STREAMS[name].keys)
        for run in (-2, -1, 0, 1, 2, 2**40):
            for keys in itertools.product(*ranges):
                seeds[(run, name, keys)] = stream_seed(run, name, *keys)
    assert len(set(seeds.values())) == len(seeds)


def test_the_old_collision_is_gone():
    """``seed * 1_000_003 + epoch + 7919`` made model-aware epoch 0 the sampler's epoch 7919."""
    assert stream_seed(0, "model_aware", 0) != stream_seed(0, "sampler", 7919)
    assert stream_seed(0, "sampler", 1_000_003) != stream_seed(1, "sampler", 0)


def test_seeds_fit_their_consumers():
    for name, stream in STREAMS.items():
        values = [stream_seed(s, name, *_keys(name, s, s)) for s in range(200)]
        assert all(0 <= v < 2**stream.bits for v in values), name
        assert max(values) >= 2 ** (stream.bits - 4), name  # the whole width is used
    assert STREAMS["sft"].bits == 32  # transformers' set_seed seeds numpy: below 2**32


def test_streams_are_independent():
    """Neighbouring epochs and two names draw uncorrelated uniforms."""
    n = 20_000
    draws = [
        torch.rand(n, generator=torch_generator(5, "sampler", 0), dtype=torch.float64),
        torch.rand(n, generator=torch_generator(5, "sampler", 1), dtype=torch.float64),
        torch.rand(n, generator=torch_generator(5, "model_aware", 0), dtype=torch.float64),
    ]
    r = torch.corrcoef(torch.stack(draws))
    off = r[~torch.eye(3, dtype=torch.bool)]
    assert off.abs().max() < 4 / n**0.5  # 4 standard errors


@pytest.mark.parametrize(
    ("name", "keys", "match"),
    [
        ("samplers", (0,), "unknown random stream 'samplers'"),
        ("sampler", (), r"takes 1 key\(s\) \(epoch\), got 0"),
        ("eval", (1,), r"takes 0 key\(s\) \(none\), got 1"),
        ("sampler", (-1,), "integers >= 0"),
        ("sampler", (1.0,), "integers >= 0"),
        ("sampler", (True,), "integers >= 0"),
    ],
)
def test_bad_streams_are_refused(name, keys, match):
    with pytest.raises(ValueError, match=match):
        stream_seed(0, name, *keys)


def test_sampler_epochs_come_from_the_sampler_stream():
    w = torch.rand(300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sampler = RejectionSampler(w, seed=11)
    gen = torch_generator(11, "sampler", 4)
    mask = accept(sampler.log_w, sampler.log_m, gen)
    want = torch.nonzero(mask).flatten()
    want = want[torch.randperm(len(want), generator=gen)]
    assert torch.equal(sampler.accepted_indices(4), want)
    # every rank draws the same set, then takes its shard (padded to equal lengths)
    shards = [RejectionSampler(w, seed=11, num_replicas=2, rank=r) for r in (0, 1)]
    for s in shards:
        s.set_epoch(4)
    assert set(shards[0]) | set(shards[1]) == set(want.tolist())
    assert len(shards[0]) == len(shards[1])
