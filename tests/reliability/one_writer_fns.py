"""A model and a reward that wait at a gate, so a test can hold a real ``rsft train`` or
``rsft rft`` run in the middle of writing its output folder (the tests put this folder on
PYTHONPATH and name these by import path).

With ``RSFT_TEST_GATE=<path>`` set, each waits (at a training step; at a scored answer)
until the file ``<path>`` exists, after touching ``<path>.waiting`` to say it got there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from rsft.tasks.digits import DigitsNet

GATE = "RSFT_TEST_GATE"
WAIT_LIMIT = 240  # seconds: a test that never opens the gate fails instead of hanging


def wait_at_gate() -> None:
    gate = os.environ.get(GATE)
    if not gate:
        return
    Path(gate + ".waiting").touch()
    deadline = time.monotonic() + WAIT_LIMIT
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} was not opened within {WAIT_LIMIT} s")
        time.sleep(0.02)


class GatedNet(DigitsNet):
    """DigitsNet whose training steps wait at the gate (evaluation does not)."""

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        if self.training:
            wait_at_gate()
        return super().embed(features)


def digit_share(prompt: str, completion: str, reference: str | None) -> float:
    """The share of digits in the completion: a reward an untrained LM can earn."""
    return sum(ch.isdigit() for ch in completion) / max(1, len(completion))


def gated_reward(prompt: str, completion: str, reference: str | None) -> float:
    """:func:`digit_share`, once the gate is open."""
    wait_at_gate()
    return digit_share(prompt, completion, reference)
