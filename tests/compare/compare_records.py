"""Records as ``rsft compare`` writes them, for tests/compare and tests/plots.

Not a test module: the conftest.py of each of those folders puts this folder on sys.path,
imports the fixtures below, and the tests import the builders and constants.
"""

from __future__ import annotations

import pytest


def make_record(method: str, seed: int, acc: float, epochs: int = 3) -> dict:
    history = [
        {
            "epoch": e,
            "step": 10 * e,
            "eval_accuracy": acc - 0.05 * (epochs - e),
            "eval_loss": 1.0 / e,
            "train_loss": 1.2 / e,
            "accepted": 100,
        }
        for e in range(1, epochs + 1)
    ]
    rsft = method != "plain"
    return {
        "method": method,
        "seed": seed,
        "test_accuracy": acc,
        "test_loss": 0.5,
        "acceptance_rate": 0.5 if rsft else 1.0,
        "ess_fraction": 0.4 if rsft else 1.0,
        "violations": 2 if rsft else 0,
        "envelope": 1.0,
        "forwarded": 12000,
        "backpropagated": 6000 if rsft else 12000,
        "wall_time": 3.25,
        "history": history,
    }


# Exactly representable accuracies, so "better by a constant" is exact in floating point.
PLAIN = [0.5, 0.625, 0.75, 0.5625]
DELTA = 0.125

MB = 1_000_000


def make_param_record(method: str, seed: int, acc: float, epochs: int = 3) -> dict:
    """A record as the trainer now writes it: forwarded in the history, memory, and for
    Metropolis/MALA the step acceptance (None for the other methods)."""
    rec = make_record(method, seed, acc, epochs)
    metropolis = method in ("metropolis", "mala")
    gradient_free = metropolis or method == "zo-sgd"
    per_epoch = 2000 if gradient_free else 3000
    for entry in rec["history"]:
        entry["forwarded"] = per_epoch * entry["epoch"]
        if metropolis:
            entry.update(step_acceptance=0.25, sigma=0.01, temperature=1.0)
    rec["forwarded"] = per_epoch * epochs
    rec["backpropagated"] = 0 if gradient_free else per_epoch * epochs
    rec["step_acceptance"] = (0.25 + 0.125 * seed) if metropolis else None
    rec["peak_memory"] = 1_200_000 if gradient_free else 2_000_000
    rec["inference_memory"] = 1_000_000
    rec["memory_vs_inference"] = rec["peak_memory"] / rec["inference_memory"]
    return rec


@pytest.fixture
def records() -> list[dict]:
    recs = [make_record("plain", s, a) for s, a in enumerate(PLAIN)]
    recs += [make_record("rsft", s, a + DELTA) for s, a in enumerate(PLAIN)]
    return recs


@pytest.fixture
def param_records() -> list[dict]:
    return [
        make_param_record(m, s, a)
        for m in ("plain", "metropolis", "zo-sgd")
        for s, a in enumerate(PLAIN[:3])
    ]
