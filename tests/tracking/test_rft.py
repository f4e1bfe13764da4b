"""What rsft rft logs per round: its selection, its rule's statistics, its evaluations."""

from __future__ import annotations

import math

import pytest

from rsft.generation.results import HeldOutEval, RoundResult
from rsft.tracking import held_out_metrics_of, rft_round_metrics

EVAL = {
    "prompts": 8,
    "pass@1": 0.25,
    "failed": 1,
    "timeouts": 0,
    "mean_length": 3.5,
    "pass@1_sampled": 0.3,
    "pass@4": 0.5,
    "distinct_2": 0.75,
}
TILTED = {
    "candidates": 32,
    "scored": 31,
    "accepted": 6,
    "acceptance_rate": 6 / 32,
    "beta": 0.5,
    "r_max_source": "observed",
    "log_M": None,
    "violations": 0,
    "expected_acceptance": 0.2,
    "ess": 11.5,
}
ROUND = {
    "round": 2,
    "candidates": 32,
    "prompts": 8,
    "failed": 1,
    "timeouts": 1,
    "failures": "1 of 32 candidates failed to score",
    "accepted": 6,
    "kept": 5,
    "prompts_kept": 4,
    "distinct_n": 0.6,
    "rule": TILTED,
    "before": EVAL,
    "after": dict(EVAL, **{"pass@1": 0.5}),
}


def test_a_held_out_evaluation_is_logged_by_its_file_keys():
    metrics = held_out_metrics_of(HeldOutEval.from_json(EVAL), "after")
    assert metrics == {f"after/{k}": float(v) for k, v in EVAL.items()}


def test_a_rounds_selection_rule_and_evaluations_are_logged():
    metrics = rft_round_metrics(RoundResult.from_json(ROUND))
    assert metrics["selection/candidates"] == 32 and metrics["selection/kept"] == 5
    assert metrics["selection/prompts_kept"] == 4 and metrics["selection/distinct_n"] == 0.6
    assert metrics["selection/acceptance_rate"] == pytest.approx(6 / 32)
    assert (metrics["rule/ess"], metrics["rule/violations"], metrics["rule/beta"]) == (11.5, 0, 0.5)
    assert "rule/log_M" not in metrics and "rule/r_max_source" not in metrics  # None, text
    assert (metrics["before/pass@1"], metrics["after/pass@1"]) == (0.25, 0.5)
    assert metrics["after/pass@4"] == 0.5 and metrics["after/distinct_2"] == 0.75
    assert not any(k.startswith("control/") for k in metrics)
    assert all(isinstance(v, float) and not math.isnan(v) for v in metrics.values())


def test_the_random_controls_evaluation_is_logged_when_it_ran():
    with_control = dict(ROUND, control=5, control_eval=dict(EVAL, **{"pass@1": 0.125}))
    metrics = rft_round_metrics(RoundResult.from_json(with_control))
    assert metrics["control/pass@1"] == 0.125 and metrics["selection/control"] == 5
