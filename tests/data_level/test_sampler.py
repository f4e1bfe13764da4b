import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import DataLoader, TensorDataset

from rsft.data_level import RejectionSampler
from rsft.rule import Envelope, EnvelopeError


def test_each_index_is_accepted_with_probability_w_over_m():
    """Over many epochs, index i is kept a fraction w_i/M of the time (binomial tests)."""
    w = torch.tensor([0.1, 0.25, 0.5, 0.75, 1.0, 2.0])
    sampler = RejectionSampler(w, Envelope("fixed", value=2.0), seed=0)
    epochs = 4000
    counts = torch.zeros(len(w))
    for e in range(epochs):
        counts[sampler.accepted_indices(e)] += 1
    for c, a in zip(counts.tolist(), (w / 2.0).tolist()):
        assert stats.binomtest(int(c), epochs, a).pvalue > 0.001


def test_no_weights_is_a_plain_shuffle():
    sampler = RejectionSampler(num_samples=50, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(50)) and order != list(range(50))
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_deterministic_by_seed_and_epoch():
    w = torch.rand(500, generator=torch.Generator().manual_seed(0))
    a, b = RejectionSampler(w, seed=7), RejectionSampler(w, seed=7)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    assert list(RejectionSampler(w, seed=8)) != list(b)


def test_ranks_share_one_draw_and_split_it():
    w = torch.rand(301, generator=torch.Generator().manual_seed(1))
    full = RejectionSampler(w, seed=5).accepted_indices(2).tolist()
    shards = []
    for rank in range(3):
        s = RejectionSampler(w, seed=5, num_replicas=3, rank=rank)
        s.set_epoch(2)
        shards.append(list(s))
    assert len({len(x) for x in shards}) == 1  # every rank runs the same number of steps
    covered = {i for shard in shards for i in shard}
    assert covered == set(full)
    assert sum(len(x) for x in shards) - len(full) < 3  # padding only


def test_state_dict_round_trip_and_skip():
    w = torch.rand(100, generator=torch.Generator().manual_seed(2))
    a = RejectionSampler(w, seed=1)
    a.set_epoch(4)
    expected = list(a)
    b = RejectionSampler(w, seed=99)
    b.load_state_dict(a.state_dict())
    b.skip(10)
    assert list(b) == expected[10:]
    assert len(b) == len(expected) - 10
    with pytest.raises(ValueError, match="same data"):
        RejectionSampler(torch.ones(5)).load_state_dict(a.state_dict())


def test_works_with_a_plain_dataloader():
    data = TensorDataset(torch.arange(64))
    w = torch.tensor([1.0] * 32 + [0.0] * 32)  # the second half is never accepted
    loader = DataLoader(data, batch_size=8, sampler=RejectionSampler(w, seed=0))
    seen = torch.cat([b[0] for b in loader])
    assert sorted(seen.tolist()) == list(range(32))


def test_fixed_envelope_below_weights_fails_before_training():
    with pytest.raises(EnvelopeError, match="Set M >="):
        RejectionSampler(np.array([0.5, 3.0]), Envelope("fixed", value=1.0))
