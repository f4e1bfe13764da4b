"""``rsft rft`` on a model and prompts named by Hub name, from a local Hugging Face cache:
prompts by subset, split and revision, the reference answer inside a worked solution
(``data.answer_pattern``), the model resolved once to its snapshot folder, what state.json
records of both, and the options for Hub names refused where nothing is one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsft.config import ConfigError, from_dict
from rsft.data.validate import DataError
from rsft.generation import RFTConfig, RFTPipeline
from rsft.generation.inputs import with_inputs
from rsft.generation.prompts import load_prompts
from rsft.same_run import check_same_data, data_digest, run_identity

A, B = "a" * 40, "b" * 40
GSM, LM = "tiny-org/tiny-gsm", "tiny-org/tiny-lm"


def _problems(split: str, n: int) -> list[dict]:
    """GSM8K's shape: a question, and an answer that is a worked solution ending '#### n'."""
    return [
        {"question": f"{split}: what is {i} + 2?", "answer": f"{i} + 2 = {i + 2}.\n#### {i + 2}"}
        for i in range(n)
    ]


@pytest.fixture
def gsm(hub_cache):
    splits = {"train": _problems("train", 4), "test": _problems("test", 3)}
    hub_cache.dataset(GSM, {"main": splits, "socratic": splits}, commit=A)
    return hub_cache


@pytest.fixture(autouse=True)
def importable_rewards(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def test_prompts_by_hub_name_subset_split_and_the_answer_inside_a_solution(gsm):
    kwargs = {"subset": "main", "answer_pattern": "#### *(.+)$", "solution_column": "answer"}
    train = load_prompts(GSM, "question", "answer", split="train", **kwargs)
    assert train.texts[1] == "train: what is 1 + 2?"
    assert train.references == ["2", "3", "4", "5"]
    assert train.solutions[1] == "1 + 2 = 3.\n#### 3"
    assert train.source == f"{GSM} (subset main, split train, Hub)"
    held_out = load_prompts(GSM, "question", "answer", split="eval", limit=2, **kwargs)
    assert held_out.texts == ["test: what is 0 + 2?", "test: what is 1 + 2?"]  # eval: test
    assert held_out.ids == ["eval-0", "eval-1"]
    other = load_prompts(GSM, "question", "answer", split="eval", hub_split="train", revision=A,
                         subset="socratic")  # fmt: skip
    assert other.references[0] == "0 + 2 = 2.\n#### 2"  # no pattern: the whole answer


def test_a_row_without_the_answer_pattern_is_refused_naming_it(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"q": "a?", "a": "so #### 1"}, {"q": "b?", "a": "no marker"}, {"q": "c?", "a": 3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as err:
        load_prompts(path, "q", "a", answer_pattern="#### *(.+)$")
    message = str(err.value)
    assert "finds no answer in 2 row(s) of column 'a'" in message
    assert "first at row 1: 'no marker'" in message


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"answer_pattern": "#### (.+)(x)"}, "has 2 groups; it needs exactly one"),
        ({"answer_pattern": "#### .+"}, "has 0 groups"),
        ({"answer_pattern": "(["}, "is not a regex"),
        ({"answer_pattern": "(.+)", "answer_column": None}, "data.answer_column, which is null"),
    ],
)
def test_a_bad_answer_pattern_is_refused_when_the_config_is_read(data, expected):
    with pytest.raises(ConfigError, match="data.answer_pattern") as err:
        from_dict(RFTConfig, {"data": data})
    assert expected in str(err.value)


def _options(tmp_path, **data) -> dict:
    return {
        "model": {"path": LM},
        "data": {"train": GSM, "eval": GSM, "prompt_column": "question", **data},
        "output_dir": str(tmp_path / "run"),
    }


def _config(tmp_path, **data) -> RFTConfig:
    return from_dict(RFTConfig, _options(tmp_path, **data))


def test_the_model_is_resolved_once_to_its_snapshot_folder(gsm, tiny_lm, tmp_path):
    snapshot = gsm.model(LM, tiny_lm, commit=A)
    gsm.model(LM, tiny_lm, commit=B, ref="v1")
    cfg = _config(tmp_path)
    assert with_inputs(cfg).model.path == str(snapshot) and cfg.model.path == LM
    tagged = {**_options(tmp_path), "model": {"path": LM, "revision": "v1"}}
    assert with_inputs(from_dict(RFTConfig, tagged)).model.path.endswith(f"snapshots/{B}")
    endpoints = {
        **_options(tmp_path),
        "generation": {"backend": "vllm"},
        "engine": {"endpoints": ["http://h:8000"]},
        "sft": {"lora": True},
        "start_from": "base",
    }
    served = with_inputs(from_dict(RFTConfig, endpoints)).engine.served_model
    assert served == LM  # the name servers started on the model serve it by


@pytest.mark.parametrize(
    "model, data, expected",
    [
        ({"revision": "v1"}, {}, "model.revision applies to a model named by Hub name"),
        ({}, {"subset": "main"}, "data.subset applies to a dataset named by Hub name"),
        ({}, {"revision": A}, "data.revision applies"),
        ({}, {"train_split": "train"}, "data.train_split applies"),
        ({}, {"eval_split": "test"}, "data.eval_split applies"),
    ],
)
def test_an_option_for_hub_names_is_refused_where_every_path_is_local(
    tiny_lm, tmp_path, model, data, expected
):
    cfg = {
        "model": {"path": tiny_lm, **model},
        "data": {"train": str(tmp_path / "t.jsonl"), "eval": str(tmp_path / "e.jsonl"), **data},
    }
    with pytest.raises(ConfigError, match=expected) as err:
        with_inputs(from_dict(RFTConfig, cfg))
    assert "Drop " in str(err.value)


def test_state_records_the_commits_and_a_changed_dataset_is_refused_on_resume(
    gsm, tiny_lm, tmp_path
):
    gsm.model(LM, tiny_lm, commit=A)
    cfg = _config(tmp_path, subset="main")
    resolved = with_inputs(cfg)
    assert run_identity(resolved) == run_identity(cfg)  # by Hub name, wherever the cache is
    fields = ("data.train", "data.eval", "model.path")
    then = data_digest(resolved, fields)
    assert data_digest(cfg, fields) == then
    assert {k: then["model.path"][k] for k in ("hub", "commit")} == {"hub": LM, "commit": A}
    assert then["data.train"]["split"] == "train" and then["data.eval"]["split"] == "test"
    assert then["data.eval"]["commit"] == A and then["data.eval"]["subset"] == "main"
    gsm.dataset(
        GSM, {"main": {"train": _problems("train", 5), "test": _problems("t", 3)}}, commit=B
    )
    now = data_digest(resolved, fields)
    with pytest.raises(ConfigError) as err:
        check_same_data(then, now, "the run started")
    assert f"data.eval ({GSM}) changed since the run started (commit {A}, 3 rows then; commit " in (
        str(err.value)
    )


def test_one_round_on_a_model_and_prompts_named_by_hub_name(hub_cache, tiny_lm, tmp_path):
    snapshot = hub_cache.model(LM, tiny_lm, commit=A)
    problems = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(8)]
    hub_cache.dataset(GSM, {None: {"train": problems[:6], "test": problems[6:]}}, commit=B)
    config = {
        "model": {"path": LM},
        "data": {"train": GSM, "eval": GSM, "prompt_column": "question"},
        "generation": {"k": 2, "max_new_tokens": 4, "chunk_prompts": 6, "batch_size": 16},
        "verifier": {
            "kind": "function",
            "function": "pipeline_rewards:digit_share",
            "timeout": None,
        },
        "selection": {"rule": "top_fraction", "fraction": 0.5},
        "sft": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
        "rounds": 1,
        "output_dir": str(tmp_path / "run"),
        "progress": False,
    }
    pipeline = RFTPipeline(from_dict(RFTConfig, config))
    assert pipeline.base == snapshot
    assert pipeline.eval_prompts.texts == ["What is 6 + 6?", "What is 7 + 7?"]
    result = pipeline.run()
    assert result["rounds"][0]["candidates"] == 12
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["config"]["model"]["path"] == LM
    assert state["data"]["model.path"]["commit"] == A
    assert state["data"]["data.train"]["commit"] == B and state["data"]["data.train"]["rows"] == 6
