"""RFTPipeline takes objects: a transformers model, a datasets.Dataset, a reward callable
(rsft's per-sample signature or TRL's), as well as the paths a config names."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import pytest

from rsft.atomic import read_jsonl
from rsft.config import ConfigError, from_dict
from rsft.generation import RFTConfig, RFTPipeline
from rsft.generation.scoring.callables import TRLReward, callable_verifier, is_trl_reward
from rsft.generation.scoring.verifiers import score
from rsft.tasks.arithmetic import prepare_arithmetic

OPTIONS = {
    "generation": {"k": 2, "max_new_tokens": 6, "chunk_prompts": 4, "batch_size": 16},
    "selection": {"rule": "top_fraction", "fraction": 0.5},
    "sft": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
    "rounds": 1,
    "progress": False,
}


def digit_share(prompt: str, completion: str, reference: str | None) -> float:
    return sum(ch.isdigit() for ch in completion) / max(1, len(completion))


def trl_style(completions, answer, **kwargs):
    """A TRL reward function: 1 when the completion holds the reference answer."""
    return [float(a in c[0]["content"]) for c, a in zip(completions, answer)]


@pytest.fixture
def prompts(tmp_path):
    paths = prepare_arithmetic(tmp_path / "data", n_train=12, n_eval=6, with_model=False)
    return read_jsonl(paths["train"]), read_jsonl(paths["eval"])


def test_a_model_object_datasets_and_a_reward_callable_run_a_round(tiny_lm, prompts, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    train, held_out = Dataset.from_list(prompts[0]), Dataset.from_list(prompts[1])
    cfg = from_dict(RFTConfig, {**OPTIONS, "output_dir": str(tmp_path / "run")})

    def pipeline() -> RFTPipeline:
        return RFTPipeline(
            cfg, model=model, tokenizer=tokenizer, train=train, eval=held_out, reward=digit_share
        )

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a module-level function runs under the time limit
        pipe = pipeline()
    inputs = tmp_path / "run" / "inputs"
    assert pipe.cfg.model.path == str(inputs / "model") and cfg.model.path == ""
    assert Dataset.from_parquet(str(inputs / "train.parquet")).to_list() == prompts[0]
    assert pipe.cfg.verifier.function.endswith(":digit_share")
    result = pipe.run()
    assert result.rounds[0].selection.kept > 0
    assert (tmp_path / "run" / "round_1" / "sft" / "model" / "model.safetensors").is_file()

    stamps = [p.stat().st_mtime_ns for p in (inputs / "model").iterdir()]
    again = pipeline()  # the same objects: the same files, so the run resumes (nothing to do)
    assert [p.stat().st_mtime_ns for p in (inputs / "model").iterdir()] == stamps
    assert again.run().rounds[0].after.pass_at_1 == result.rounds[0].after.pass_at_1


def test_a_changed_dataset_is_refused_on_resume(tiny_lm, prompts, tmp_path):
    cfg = from_dict(RFTConfig, {**OPTIONS, "output_dir": str(tmp_path / "run")})
    args = {"model": tiny_lm, "eval": prompts[1], "reward": digit_share}
    RFTPipeline(cfg, train=prompts[0], **args)._prepare_output()
    with pytest.raises(ConfigError, match=r"data\.train .* changed since"):
        RFTPipeline(cfg, train=prompts[0][:6], **args)._prepare_output()


def test_a_trl_reward_function_scores_each_candidate():
    from trl.rewards import accuracy_reward

    assert is_trl_reward(accuracy_reward) and not is_trl_reward(digit_share)
    verifier, timeout = callable_verifier(accuracy_reward, "solution", timeout=10.0)
    assert timeout == 10.0  # a module-level function: worker processes, under the limit
    pickle.dumps(verifier.fn)
    result = score(
        verifier,
        ["What is 2 + 3?", "What is 2 + 3?"],
        ["The answer is $5$.", "The answer is $6$."],
        ["5", "5"],
        workers=1,
        timeout=timeout,
    )
    assert result.rewards == [1.0, 0.0]


def test_a_trl_reward_gets_the_reference_by_its_column_name():
    reward = TRLReward(trl_style, "answer")
    assert reward("What is 1 + 1?", "2", "2") == 1.0 and reward("q", "3", "2") == 0.0
    with pytest.raises(ConfigError, match=r"takes 'answer'.*data\.answer_column \('solution'\)"):
        callable_verifier(trl_style, "solution", timeout=None)


def test_a_trl_reward_of_none_fails_that_candidate():
    def none_for_unparsable(completions, **kwargs):
        return [None for _ in completions]

    verifier, timeout = callable_verifier(none_for_unparsable, "answer", timeout=None)
    result = score(verifier, ["q"], ["c"], ["r"])
    assert result.rewards == [None] and "no reward" in result.errors[0]


def test_a_callable_that_cannot_be_sent_to_workers_runs_in_threads_with_a_warning():
    def closure(prompt, completion, reference):
        return 1.0

    with pytest.warns(UserWarning, match="verifier.timeout does not apply"):
        verifier, timeout = callable_verifier(closure, "answer", timeout=10.0)
    assert timeout is None
    assert score(verifier, ["q"], ["c"], ["r"], timeout=timeout).rewards == [1.0]


def test_the_inputs_are_required_somewhere(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.path is required.*or model="):
        RFTPipeline(from_dict(RFTConfig, {"output_dir": str(tmp_path / "run")}))
    with pytest.raises(ConfigError, match=r"data\.train is required"):
        RFTPipeline(RFTConfig(output_dir=str(tmp_path / "run")), model="m")
    assert not Path(tmp_path / "run").exists()
    assert json.dumps(RFTConfig().data.train) == '""'
