"""The LLM pipeline end to end on a tiny causal LM: files, fine-tuning, resume, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from rsft.config import ConfigError, from_dict
from rsft.generation import RFTConfig, RFTPipeline
from rsft.generation import pipeline as pipeline_module
from rsft.generation.engines import pool as engines_module
from rsft.tasks.arithmetic import prepare_arithmetic


@pytest.fixture
def rft_config(tiny_lm, tmp_path):
    """A complete, fast RFT config dict on the tiny LM; tests override what they exercise."""
    paths = prepare_arithmetic(tmp_path / "data", n_train=12, n_eval=6, with_model=False)
    return {
        "model": {"path": tiny_lm},
        "data": {"train": paths["train"], "eval": paths["eval"]},
        "generation": {"k": 2, "max_new_tokens": 6, "chunk_prompts": 4, "batch_size": 16},
        # The untrained tiny LM is never right: keep the top half by a numeric reward.
        "verifier": {"kind": "function", "function": "pipeline_rewards:digit_share"},
        "selection": {"rule": "top_fraction", "fraction": 0.5},
        "sft": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
        "rounds": 1,
        "output_dir": str(tmp_path / "run"),
        "progress": False,
    }


@pytest.fixture(autouse=True)
def importable_rewards(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def run(config: dict) -> dict:
    return RFTPipeline(from_dict(RFTConfig, config)).run()


def test_one_round_writes_every_stage_and_fine_tunes(rft_config):
    rft_config["eval"] = {"k": 3}
    result = run(rft_config)
    out = Path(rft_config["output_dir"])
    rnd = out / "round_1"
    gens = [json.loads(line) for line in (rnd / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 12 * 2
    assert {"prompt_id", "prompt", "reference", "completion", "reward", "accepted", "kept"} <= set(
        gens[0]
    )
    accepted = [json.loads(line) for line in (rnd / "accepted.jsonl").read_text().splitlines()]
    assert len(accepted) == sum(g["kept"] for g in gens) > 0
    roles = [m["role"] for m in accepted[0]["messages"]]
    assert roles == ["user", "assistant"]
    kept_texts = {(g["prompt_id"], g["completion"]) for g in gens if g["kept"]}
    assert {(a["prompt_id"], a["messages"][-1]["content"]) for a in accepted} == kept_texts

    base = load_file(str(Path(rft_config["model"]["path"]) / "model.safetensors"))
    tuned = load_file(str(rnd / "sft" / "model" / "model.safetensors"))
    changed = [k for k in base if not torch.equal(base[k], tuned[k])]
    assert len(changed) == len(base), "full fine-tuning trains every weight"

    for name in (
        "round_0/eval.json",
        "round_1/eval.json",
        "results.json",
        "summary.md",
        "pass_at_1.png",
        "config.yaml",
        "state.json",
    ):
        assert (out / name).is_file(), name
    assert not (rnd / "chunks").exists() and not (rnd / "sft" / "trainer").exists()
    row = result["rounds"][0]
    assert row["candidates"] == 24 and row["kept"] == len(accepted)
    after = row["after"]
    assert after["prompts"] == 6 and 0.0 <= after["pass@1"] <= 1.0
    assert after["pass@1_sampled"] <= after["pass@3"] <= 1.0 and 0 < after["distinct_2"] <= 1
    assert "| 1 | 24 |" in result["table"]
    # every stage is timed, the end-of-run table and plot too (benchmarks read it)
    assert {"generate", "score", "select", "train", "evaluate", "report"} <= set(result["timings"])


def test_same_seed_same_candidates_other_seed_differs(rft_config, tmp_path):
    def candidates(seed, name):
        cfg = dict(rft_config, seed=seed, output_dir=str(tmp_path / name))
        pipe = RFTPipeline(from_dict(RFTConfig, cfg))
        pipe._prepare_output()
        return [r["completion"] for r in pipe.generate(1, pipe.base)]

    a, b, c = candidates(0, "a"), candidates(0, "b"), candidates(1, "c")
    assert a == b
    assert a != c


def test_crash_in_fine_tuning_resumes_without_regenerating(rft_config, monkeypatch):
    real_sft = pipeline_module.sft_train

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(pipeline_module, "sft_train", crash)
    with pytest.raises(KeyboardInterrupt):
        run(rft_config)
    rnd = Path(rft_config["output_dir"]) / "round_1"
    saved = (rnd / "generations.jsonl").read_text()
    assert not (rnd / "sft" / "model").exists()

    calls = []
    monkeypatch.setattr(pipeline_module, "sft_train", real_sft)
    monkeypatch.setattr(
        engines_module,
        "TransformersGenerator",
        _counting(engines_module.TransformersGenerator, calls),
    )
    run(rft_config)
    # Only evaluation loads a generator now (base: already evaluated; round 1 after training).
    assert calls == ["eval"]
    assert (rnd / "generations.jsonl").read_text() == saved
    assert (rnd / "sft" / "model" / "model.safetensors").is_file()


def _counting(make, calls):
    def wrapped(path, *args, **kwargs):
        calls.append("eval" if "sft" in str(path) else "generate")
        return make(path, *args, **kwargs)

    return wrapped


def test_killed_generation_resumes_after_its_last_saved_chunk(rft_config, tmp_path, killer):
    """SIGKILL a real `rsft rft` process once a chunk is saved; the rerun keeps that chunk and
    ends with exactly the candidates of an uninterrupted run."""
    rft_config["generation"].update(chunk_prompts=2, max_new_tokens=24)
    killed_dir = tmp_path / "killed"
    cfg_path = tmp_path / "killed.yaml"
    cfg_path.write_text(yaml.safe_dump(dict(rft_config, output_dir=str(killed_dir))))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
        ),
    }
    cmd = [sys.executable, "-m", "rsft.cli.main", "rft", "--config", str(cfg_path)]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    chunks = killed_dir / "round_1" / "chunks"
    killer(proc, lambda: chunks.is_dir() and any(chunks.glob("*.jsonl")))
    first = sorted(chunks.glob("*.jsonl"))[0]
    saved, mtime = first.read_text(), first.stat().st_mtime_ns
    assert not (killed_dir / "round_1" / "candidates.jsonl").exists()
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    full = dict(rft_config, output_dir=str(tmp_path / "full"))
    run(full)

    def completions(d):
        path = Path(d) / "round_1" / "candidates.jsonl"
        return [json.loads(line)["completion"] for line in path.read_text().splitlines()]

    assert completions(killed_dir) == completions(tmp_path / "full")
    assert saved in (killed_dir / "round_1" / "candidates.jsonl").read_text()
    assert mtime > 0


def test_a_second_round_samples_from_the_first_rounds_model(rft_config, monkeypatch):
    calls = []
    monkeypatch.setattr(
        engines_module,
        "TransformersGenerator",
        _counting(engines_module.TransformersGenerator, calls),
    )
    rft_config.update(rounds=2, data_mode="accumulate")
    result = run(rft_config)
    # base eval, round 1 generate (base), round 1 eval, round 2 generate (round 1's), eval
    assert calls == ["generate", "generate", "eval", "eval", "eval"]
    assert [r["round"] for r in result["rounds"]] == [1, 2]
    assert result["final_model"].endswith("round_2/sft/model")


def test_lora_adapters_are_merged_into_a_plain_model(rft_config):
    rft_config["sft"].update(lora=True, lora_r=4, lora_alpha=8, lr=1e-2)
    run(rft_config)
    folder = Path(rft_config["output_dir"]) / "round_1" / "sft" / "model"
    tuned = load_file(str(folder / "model.safetensors"))
    assert not any("lora" in k for k in tuned), "adapters must be merged"
    base = load_file(str(Path(rft_config["model"]["path"]) / "model.safetensors"))
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all("proj" in k for k in changed), changed


def test_random_control_has_the_filters_size_and_is_evaluated(rft_config):
    rft_config["selection"]["control"] = "random"
    result = run(rft_config)
    rnd = Path(rft_config["output_dir"]) / "round_1"
    control = (rnd / "control.jsonl").read_text().splitlines()
    assert len(control) == result["rounds"][0]["kept"]
    assert (rnd / "control" / "model").is_dir()
    assert "control_eval" in result["rounds"][0]
    assert "random control" in result["table"]


def test_changed_options_refuse_to_resume_into_the_same_folder(rft_config):
    run(rft_config)
    rft_config["generation"]["temperature"] = 0.5
    with pytest.raises(ConfigError, match="different options"):
        run(rft_config)
    rft_config["resume"] = "never"
    run(rft_config)  # starts over


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["model"].update(path="/no/such/model"), "does not exist"),
        (lambda c: c["generation"].update(k=0), "generation.k must be >= 1"),
        (lambda c: c["data"].update(prompt_column="question"), "prompt column 'question'"),
        (lambda c: c["data"].update(answer_column="solution"), "answer column 'solution'"),
        (lambda c: c["verifier"].update(kind="regex", function=None), "needs verifier.pattern"),
        (lambda c: c["data"].update(train="/no/such/file.jsonl"), "does not exist"),
    ],
)
def test_bad_input_stops_before_any_work(rft_config, change, message):
    change(rft_config)
    with pytest.raises((ConfigError, ValueError, FileNotFoundError), match=message):
        RFTPipeline(from_dict(RFTConfig, rft_config))
    assert not Path(rft_config["output_dir"]).exists()


def test_empty_prompts_are_refused_with_their_row(rft_config, tmp_path):
    path = tmp_path / "prompts.jsonl"
    rows = [{"prompt": "What is 1 + 2?", "answer": "3"}, {"prompt": "   ", "answer": "4"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rft_config["data"]["train"] = str(path)
    with pytest.raises(ValueError, match="empty or not text.*row 1"):
        RFTPipeline(from_dict(RFTConfig, rft_config))


def test_cli_reports_bad_input_with_exit_code_2(rft_config, tmp_path, capsys):
    from rsft.cli.main import main

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(rft_config))
    assert main(["rft", "--config", str(cfg_path), "generation.k=0"]) == 2
    assert "generation.k must be >= 1" in capsys.readouterr().err


def test_a_verifier_that_always_fails_stops_with_its_error(rft_config, tmp_path, capsys):
    """Failures are counted and kept in generations.jsonl; with nothing accepted the CLI says
    why and exits 1 instead of fine-tuning on nothing."""
    from rsft.cli.main import main

    rft_config["verifier"]["function"] = "pipeline_rewards:always_fails"
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(rft_config))
    assert main(["rft", "--config", str(cfg_path)]) == 1
    err = capsys.readouterr().err
    assert "no candidate was accepted" in err and "24 of 24 candidates could not be scored" in err
    assert "KeyError" in err
    rnd = Path(rft_config["output_dir"]) / "round_1"
    gens = [json.loads(line) for line in (rnd / "generations.jsonl").read_text().splitlines()]
    assert all(g["reward"] is None and "KeyError" in g["error"] for g in gens)


def test_report_to_logs_every_round_and_the_sft_stage(rft_config):
    pytest.importorskip("tensorboard")
    sys.path.insert(0, str(Path(__file__).parents[1] / "tracking"))
    from test_tensorboard import read_events

    rft_config["report_to"] = ["tensorboard"]
    result = run(rft_config)
    out = Path(rft_config["output_dir"])
    scalars, config = read_events(out / "trackers" / "tensorboard")
    before, after = result.base_eval.pass_at_1, result.rounds[0].after.pass_at_1
    assert scalars["after/pass@1"] == [(0, pytest.approx(before)), (1, pytest.approx(after))]
    assert scalars["selection/kept"] == [(1, result.rounds[0].selection.kept)]
    assert "report_to:" in config
    assert list((out / "round_1" / "sft" / "trackers").rglob("events.out.tfevents.*"))
    # A resumed (here: finished) run logs nothing twice.
    run(rft_config)
    assert (
        read_events(out / "trackers" / "tensorboard")[0]["after/pass@1"] == scalars["after/pass@1"]
    )
