"""``rsft compare`` of RFT arms end to end on a tiny causal LM: every arm's run, the shared
stages, the reuse of finished runs, the table, files and figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from rsft.atomic import read_jsonl
from rsft.compare.runner import CompareConfig, run_compare
from rsft.config import ConfigError, from_dict
from rsft.tasks.word_problems import prepare_word_problems

GENERATION_TESTS = Path(__file__).parents[1] / "generation"
sys.path.insert(0, str(GENERATION_TESTS))  # the tiny LM and the reward functions

from conftest import save_tiny_causal_lm  # noqa: E402

ARMS = {
    "base": {"rounds": 0},
    "sft-reference": {"train_on": "reference"},
    "rft": {},
    "random": {"selection": {"rule": "random"}},
}


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> str:
    return save_tiny_causal_lm(tmp_path_factory.mktemp("tiny_lm"))


@pytest.fixture
def compare_config(tiny_lm, tmp_path, monkeypatch) -> dict:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.syspath_prepend(str(GENERATION_TESTS))
    paths = prepare_word_problems(tmp_path / "data", n_train=8, n_eval=6, with_model=False)
    base = {
        "model": {"path": tiny_lm},
        "data": {
            "train": paths["train"],
            "eval": paths["eval"],
            "solution_column": "solution",
            "group_column": "phrasing",
        },
        "generation": {"k": 2, "max_new_tokens": 6, "chunk_prompts": 4, "batch_size": 16},
        # The untrained tiny LM is never right: "correct" is a graded reward over a threshold.
        "verifier": {"kind": "function", "function": "pipeline_rewards:digit_share"},
        "selection": {"rule": "correct", "threshold": 0.01},
        "sft": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
        "eval": {"k": 3, "threshold": 0.01},
        "rounds": 1,
        "progress": False,
    }
    return {
        "base": base,
        "methods": ARMS,
        "seeds": [0],
        "baseline": "sft-reference",
        "output_dir": str(tmp_path / "compare"),
    }


def test_arms_run_once_share_stages_and_are_reused(compare_config, capsys):
    cfg = from_dict(CompareConfig, compare_config)
    assert cfg.generation  # inferred from the base's RFT sections
    out = run_compare(cfg)
    root = Path(compare_config["output_dir"])
    run = {arm: root / arm / "seed-0" for arm in ARMS}
    log = capsys.readouterr().out

    # The base model's evaluation is computed once and copied byte for byte to every arm.
    base_eval = (run["base"] / "round_0" / "eval.json").read_bytes()
    for arm in ARMS:
        assert (run[arm] / "round_0" / "eval.json").read_bytes() == base_eval
    # Round 1's candidates: drawn once, by the first arm that generates, shared by the rest.
    drawn = (run["rft"] / "round_1" / "candidates.jsonl").read_bytes()
    assert (run["random"] / "round_1" / "candidates.jsonl").read_bytes() == drawn
    assert "copied from" in log
    assert not (run["sft-reference"] / "round_1" / "candidates.jsonl").exists()
    assert not (run["base"] / "round_1").exists()

    # What each arm trained on.
    refs = [r["solution"] for r in read_jsonl(compare_config["base"]["data"]["train"])]
    sft_ref = read_jsonl(run["sft-reference"] / "round_1" / "accepted.jsonl")
    assert [r["messages"][-1]["content"] for r in sft_ref] == refs
    kept = json.loads((run["rft"] / "round_1" / "selection.json").read_text())["kept"]
    assert 0 < kept < 16
    rand = json.loads((run["random"] / "round_1" / "selection.json").read_text())
    assert rand["kept"] == kept and rand["rule"]["size_of"]["rule"] == "correct"

    # The table: every arm, intervals, the design and its resolution.
    table = out["table"]
    for arm in ARMS:
        assert f"| {arm} |" in table
    assert "Δ pass@1 vs sft-reference" in table and "pass@3" in table
    assert "pass@1 seen" in table and "pass@1 unseen" in table
    assert "6 held-out prompts × 1 seed(s)" in table and "Smallest difference" in table
    for name in ("json", "csv", "summary_csv", "table", "coverage", "solve_rates"):
        assert Path(out["files"][name]).is_file(), name
    trained = {r["method"]: r["trained_on"] for r in out["records"]}
    assert trained == {"base": 0, "sft-reference": len(refs), "rft": kept, "random": kept}
    saved = json.loads((root / "results.json").read_text())
    assert {r["method"] for r in saved["records"]} == set(ARMS)
    assert all(len(r["outcomes"]["correct"]) == 6 for r in saved["records"])

    # A second compare with the same config reuses every run; changing one arm reruns it.
    again = run_compare(cfg)
    assert all(r["reused"] for r in again["records"])
    assert again["table"] == table
    compare_config["methods"]["rft"] = {"sft": {"lr": 2e-3}}
    third = run_compare(from_dict(CompareConfig, compare_config))
    reran = {r["method"] for r in third["records"] if not r["reused"]}
    assert reran == {"rft"}


def test_bad_arms_are_refused_before_any_run(compare_config):
    compare_config["baseline"] = "plain"
    with pytest.raises(ConfigError, match="baseline: 'plain' is not one of the methods"):
        run_compare(from_dict(CompareConfig, compare_config))
    compare_config["baseline"] = "rft"
    del compare_config["base"]["data"]["solution_column"]
    with pytest.raises(ConfigError, match="method 'sft-reference': .*data.solution_column"):
        run_compare(from_dict(CompareConfig, compare_config))
    assert not (Path(compare_config["output_dir"]) / "rft").exists()
