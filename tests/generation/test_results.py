"""The generation level's typed results: what the files hold, read back field by field."""

from __future__ import annotations

import json

import pytest

from rsft.generation.results import HeldOutEval, RFTResult, RoundResult, RoundSelection

# results.json as the pipeline wrote it before it had typed results (its keys, its order)
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
SELECTION = {
    "candidates": 32,
    "prompts": 8,
    "failed": 1,
    "timeouts": 1,
    "failures": "1 of 32 candidates failed to score",
    "accepted": 6,
    "kept": 5,
    "prompts_kept": 4,
    "distinct_n": 0.6,
    "rule": {"threshold": 1.0, "accepted": 6},
    "control": 5,
}
RESULTS = {
    "rsft_version": "0.5.0",
    "base_model": "data/arithmetic/model",
    "base_eval": EVAL,
    "rounds": [
        {"round": 1, **SELECTION, "before": EVAL, "after": dict(EVAL, **{"pass@1": 0.5})},
        {"round": 2, **SELECTION, "before": EVAL, "after": EVAL, "control_eval": EVAL},
    ],
    "final_model": "runs/rft/round_2/sft/model",
    "timings": {"generate": 1.5},
    "engine": {
        "backend": "transformers",
        "starts_s": [],
        "adapter_loads_s": [],
        "model_reload": "restart",
    },
}


def test_an_evaluation_reads_its_keys_into_fields():
    e = HeldOutEval.from_json(EVAL)
    assert (e.k, e.pass_at_k, e.pass_at_1_sampled) == (4, 0.5, 0.3)
    assert (e.distinct_n, e.distinct, e.pass_at_1) == (2, 0.75, 0.25)
    assert e.line() == "pass@1 25.0% on 8 held-out prompts"


def test_an_evaluation_without_samples_has_no_pass_at_k():
    greedy = {k: v for k, v in EVAL.items() if k not in ("pass@1_sampled", "pass@4")}
    e = HeldOutEval.from_json(greedy)
    assert e.k == 0 and e.pass_at_k is None
    assert e.to_json() == greedy  # and it writes no pass@k key


def test_a_results_file_round_trips_with_its_keys_in_order(tmp_path):
    result = RFTResult.from_json(RESULTS)
    assert result.rounds[0].after.pass_at_1 == 0.5
    assert result.rounds[1].control_eval is not None and result.rounds[0].control_eval is None
    assert result.rounds[0].selection.control == 5
    result.write(tmp_path / "results.json")
    text = (tmp_path / "results.json").read_text()
    assert json.loads(text) == RESULTS
    assert list(json.loads(text)["rounds"][0]) == list(RESULTS["rounds"][0])  # same key order
    assert RFTResult.read(tmp_path / "results.json") == RESULTS


def test_a_result_reads_like_its_file_as_a_mapping():
    result = RFTResult.from_json(RESULTS)
    assert result["rounds"][0]["after"]["pass@1"] == 0.5
    assert result["rounds"][1]["kept"] == 5 and "control_eval" in result["rounds"][1]
    assert "table" not in result
    result.table = "| round |"
    assert result["table"] == "| round |" and "table" not in result.to_json()
    with pytest.raises(KeyError):
        result["rounds"][0]["pass@1"]


def test_a_round_is_its_selection_and_its_evaluations():
    r = RoundResult.from_json(RESULTS["rounds"][1])
    assert isinstance(r.selection, RoundSelection) and r.selection.kept == 5
    assert r.to_json() == RESULTS["rounds"][1]


def test_the_report_reads_fields():
    from rsft.generation.report import format_rounds

    table = format_rounds(RFTResult.from_json(RESULTS))
    assert "| pass@4 after | distinct-2 after | random control pass@1 |" in table
    assert "| 1 | 32 | 6 (19%) | 5 | 4/8 | 25.0% → 50.0% | 50.0% | 0.75 | - |" in table
    assert "2 candidate(s) failed to score, 2 of them past verifier.timeout" in table


def test_maj_at_k_and_groups_round_trip_and_older_files_have_neither():
    data = dict(EVAL, **{"maj@4": 0.375, "pass@1_by_group": {"seen": 0.5, "unseen": 0.0}})
    ev = HeldOutEval.from_json(data)
    assert ev.maj_at_k == 0.375 and ev.groups == {"seen": 0.5, "unseen": 0.0}
    assert ev.to_json() == data
    old = HeldOutEval.from_json(EVAL)
    assert old.maj_at_k is None and old.groups is None and old.to_json() == EVAL


def test_held_out_outcomes_read_what_evaluation_writes(tmp_path):
    from rsft.generation.results import HeldOutOutcomes

    rows = [
        {"prompt_id": "eval-0", "completion": "7", "correct": True, "group": "seen",
         "sampled": 4, "sampled_correct": 3, "majority": "7.0", "majority_correct": True},
        {"prompt_id": "eval-1", "completion": "x", "correct": False, "group": "unseen",
         "sampled": 4, "sampled_correct": 0, "majority": None, "majority_correct": False},
    ]  # fmt: skip
    path = tmp_path / "eval_generations.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    o = HeldOutOutcomes.read(path)
    assert o.prompt_ids == ["eval-0", "eval-1"] and o.correct == [True, False]
    assert (o.samples, o.sampled_correct, o.majority_correct) == (4, [3, 0], [True, False])
    assert o.groups == ["seen", "unseen"]
    greedy_only = tmp_path / "greedy.jsonl"
    greedy_only.write_text(json.dumps({"prompt_id": "a", "completion": "", "correct": 0}) + "\n")
    g = HeldOutOutcomes.read(greedy_only)
    assert g.samples == 0 and g.sampled_correct is None and g.groups is None
