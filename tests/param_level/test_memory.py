"""rsft.memory: the peak tensor memory of a block, and the bytes of a model's parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rsft.memory import PeakMemory, parameter_bytes

MB = 1_000_000
F32_40MB = 10_000_000  # float32 elements in 40 MB


def test_peak_of_a_200_mb_tensor_freed_inside_the_block():
    with PeakMemory() as m:
        x = torch.ones(50_000_000, dtype=torch.float32)  # 200 MB
        del x
    assert m.peak_bytes is not None
    assert 190 * MB <= m.peak_bytes <= 210 * MB, m.peak_bytes / MB


def test_peak_of_a_trivial_block_is_small():
    with PeakMemory():  # a big block first: its peak must not leak into the next one
        x = torch.ones(50_000_000)
        del x
    with PeakMemory() as m:
        y = sum(range(100)) + int(torch.tensor(3) + 1)
    assert y == 4954
    assert m.peak_bytes is not None
    assert 0 <= m.peak_bytes < 1 * MB, m.peak_bytes / MB


def test_peak_is_the_most_alive_at_once_not_the_total_allocated():
    with PeakMemory() as seq:
        for _ in range(5):  # 5 × 40 MB, one at a time
            x = torch.ones(F32_40MB)
            del x
    assert 38 * MB <= seq.peak_bytes <= 42 * MB, seq.peak_bytes / MB
    with PeakMemory() as together:
        a = torch.ones(F32_40MB)
        b = a + 1
        c = b * 2  # a, b and c alive at once: 120 MB
        del a, b
    assert float(c[0]) == 4.0
    assert 118 * MB <= together.peak_bytes <= 122 * MB, together.peak_bytes / MB


def test_memory_held_on_entry_is_not_counted():
    held = torch.ones(25_000_000)  # 100 MB in use before the block, kept through it
    with PeakMemory() as m:
        x = torch.ones(F32_40MB)
        del x
    assert float(held[0]) == 1.0
    assert 38 * MB <= m.peak_bytes <= 42 * MB, m.peak_bytes / MB


def test_no_peak_when_the_block_raises():
    with pytest.raises(KeyError), PeakMemory() as m:
        torch.ones(1000)
        raise KeyError("boom")
    assert m.peak_bytes is None


def test_default_device_is_cpu():
    assert PeakMemory().device == torch.device("cpu")
    assert PeakMemory("cpu").peak_bytes is None  # nothing measured before the block ran


def test_parameter_bytes():
    model = nn.Sequential(nn.Linear(10, 20), nn.Linear(20, 3, bias=False))
    assert parameter_bytes(model) == (10 * 20 + 20 + 20 * 3) * 4
    model[1].to(torch.bfloat16)
    assert parameter_bytes(model) == (10 * 20 + 20) * 4 + 20 * 3 * 2
    model.double()
    assert parameter_bytes(model) == (10 * 20 + 20 + 20 * 3) * 8
    assert parameter_bytes(nn.ReLU()) == 0


def test_parameter_bytes_counts_a_tied_weight_once():
    emb = nn.Embedding(100, 16)
    head = nn.Linear(16, 100, bias=False)
    head.weight = emb.weight
    model = nn.ModuleDict({"emb": emb, "head": head})
    assert parameter_bytes(model) == 100 * 16 * 4


def test_net_bytes_is_what_the_block_still_holds():
    kept = []
    with PeakMemory() as m:
        kept.append(torch.ones(10_000_000))  # 40 MB kept
        tmp = torch.ones(5_000_000)  # 20 MB freed
        del tmp
    assert 39 * MB <= m.net_bytes <= 41 * MB
    assert 59 * MB <= m.peak_bytes <= 61 * MB
    with PeakMemory() as m:
        kept.clear()
    assert m.net_bytes <= 0
