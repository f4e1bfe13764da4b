"""How long a run trains: epochs, an optional sample budget, and the scheduler's step count.

``budget: samples`` trains as many sampler epochs as it takes to backpropagate as many samples
as ``epochs`` plain epochs would: RSFT at the same compute, not the same epochs.
``budget: forwards`` does the same with forwarded samples (gradient-free methods forward each
sample twice per step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class Budget:
    epochs: int  # epochs to run (at most, when a sample budget ends the run first)
    sample_budget: int | None  # stop at this many samples, mid-epoch if need be
    budget_key: str  # the TrainState count the sample budget is about
    total_steps: int  # the learning-rate schedule's length


def plan_budget(
    cfg: Any,
    n_train: int,
    expected_acceptance: float,
    passes: tuple[int, int],
    num_processes: int,
    round_size: int | None = None,
) -> Budget:
    """``round_size``: a model-aware run's samples per scored round (None otherwise)."""
    model_aware = round_size is not None
    epochs, sample_budget = cfg.epochs, None
    key = "forwarded" if cfg.budget == "forwards" else "backpropagated"
    if cfg.budget == "forwards" or (cfg.budget == "samples" and model_aware):
        sample_budget = cfg.epochs * n_train
        if model_aware:
            # The acceptance rate is only known as training goes: below 1% the cap ends it.
            epochs = cfg.epochs * 100
        else:
            epochs = math.ceil(cfg.epochs / (passes[0] * expected_acceptance))
    elif cfg.budget == "samples":
        epochs = max(1, round(cfg.epochs / expected_acceptance))

    per_rank = math.ceil(expected_acceptance * n_train / num_processes)
    micro = cfg.batch_size * cfg.gradient_accumulation_steps
    total_steps = max(1, math.ceil(per_rank / micro)) * epochs
    if model_aware:  # at most every sample, or the sample budget
        samples = sample_budget or cfg.epochs * n_train
        total_steps = max(1, math.ceil(samples / round_size))
    elif sample_budget is not None:
        per_step = micro * num_processes * passes[0]
        total_steps = max(1, math.ceil(sample_budget / per_step))
    return Budget(epochs, sample_budget, key, total_steps)
