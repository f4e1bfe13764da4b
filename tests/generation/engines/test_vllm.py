"""RFT through real vLLM CPU engines (``make test-engine``; skipped without vLLM's environment).

The engines run from ``.venv-vllm`` (or ``RSFT_VLLM_PYTHON``) on a tiny Llama whose head size
vLLM's CPU attention supports. These tests start real engines (about 15-40 s each).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rsft.config import from_dict
from rsft.generation import RFTConfig, RFTPipeline
from rsft.generation.engines.base import Sampling
from rsft.generation.engines.client import EngineGenerator, Replica
from rsft.generation.engines.pool import EnginePool
from rsft.generation.engines.server import SERVED_NAME, EngineError, EngineOptions, VLLMServer
from rsft.tasks.arithmetic import prepare_arithmetic

VLLM_PYTHON = os.environ.get("RSFT_VLLM_PYTHON") or str(
    Path(__file__).resolve().parents[3] / ".venv-vllm" / "bin" / "python"
)
pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(
        not Path(VLLM_PYTHON).is_file(), reason="no vLLM environment (make vllm-env)"
    ),
]


def save_engine_lm(folder: Path) -> str:
    """The suite's tiny Llama with head size 32 (vLLM's CPU attention has no smaller kernel)."""
    from conftest import save_tiny_causal_lm

    return save_tiny_causal_lm(folder, hidden=64, heads=2, kv_heads=1, positions=512)


@pytest.fixture(scope="module")
def engine_lm(tmp_path_factory) -> str:
    sys.path.insert(0, str(Path(__file__).parents[1]))
    return save_engine_lm(tmp_path_factory.mktemp("engine_lm"))


@pytest.fixture
def engine_config(engine_lm, tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1]))
    paths = prepare_arithmetic(tmp_path / "data", n_train=12, n_eval=6, with_model=False)
    return {
        "model": {"path": engine_lm},
        "data": {"train": paths["train"], "eval": paths["eval"]},
        "generation": {"k": 2, "max_new_tokens": 8, "chunk_prompts": 4, "backend": "vllm"},
        "engine": {"vllm_python": VLLM_PYTHON, "max_model_len": 256, "cpu_kv_cache_gib": 1},
        "verifier": {"kind": "function", "function": "pipeline_rewards:digit_share"},
        "selection": {"rule": "top_fraction", "fraction": 0.5},
        "sft": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
        "rounds": 2,
        "output_dir": str(tmp_path / "run"),
        "progress": False,
    }


def engine_pids() -> set[int]:
    """Processes running vLLM's OpenAI server (the engines rsft starts).

    Read from /proc: ``ps`` may cut command lines to the terminal's width, and a long
    checkout path then hides the module name.
    """
    pids = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes()
        except OSError:  # the process ended while we looked
            continue
        if b"vllm.entrypoints.openai.api_server" in args:
            pids.add(int(cmdline.parent.name))
    return pids


def test_two_rounds_through_real_engines_and_none_left_running(engine_config):
    before = engine_pids()
    result = RFTPipeline(from_dict(RFTConfig, engine_config)).run()
    out = Path(engine_config["output_dir"])
    rows = (out / "round_2" / "candidates.jsonl").read_text().splitlines()
    assert len(rows) == 12 * 2
    assert all(isinstance(json.loads(r)["completion"], str) for r in rows)
    # base (eval + round 1), round 1's model (eval + round 2), round 2's model (eval)
    assert len(result["engine"]["starts_s"]) == 3
    assert result["engine"]["adapter_loads_s"] == []
    assert result["engine"]["backend"] == "vllm"
    assert sorted(p.name for p in (out / "engines").glob("*.log")) == [
        "engine-0.log",
        "engine-1.log",
        "engine-2.log",
    ]
    assert engine_pids() <= before, "an engine outlived the run"


def test_lora_adapters_are_loaded_into_the_running_engine(engine_config):
    engine_config["sft"].update(lora=True, lora_r=4, lora_alpha=8, lora_target_modules="all-linear")
    engine_config["start_from"] = "base"
    result = RFTPipeline(from_dict(RFTConfig, engine_config)).run()
    assert len(result["engine"]["starts_s"]) == 1  # one engine, every model an adapter
    assert result["engine"]["model_reload"] == "lora"
    assert len(result["engine"]["adapter_loads_s"]) == 2  # each round's adapter, once
    assert (Path(engine_config["output_dir"]) / "round_2" / "eval.json").is_file()


def test_a_replica_killed_mid_round_loses_and_doubles_nothing(engine_config, tmp_path):
    cfg = from_dict(
        RFTConfig, dict(engine_config, engine={**engine_config["engine"], "replicas": 2})
    )
    pool = EnginePool(cfg, Path(engine_config["model"]["path"]), tmp_path / "engines")
    try:
        gen = pool.generator(Path(engine_config["model"]["path"]))
        assert isinstance(gen, EngineGenerator) and len(gen.replicas) == 2
        chunks = [
            [[{"role": "user", "content": f"{c} + {i} = ?"}] for i in range(3)] for c in range(12)
        ]
        got: dict[int, list] = {}

        def save(i, outs):
            assert i not in got
            got[i] = outs
            if len(got) == 2:  # kill one engine while the round is under way
                os.killpg(pool.servers[0].proc.pid, signal.SIGKILL)

        gen.generate_chunks(chunks, lambda i: Sampling(n=2, max_new_tokens=6, seed=i), save)
    finally:
        pool.close()
    assert sorted(got) == list(range(12))
    assert all(len(outs) == 3 and all(len(s) == 2 for s in outs) for outs in got.values())


def test_sigkill_of_rsft_leaves_no_engine_running(engine_config, tmp_path):
    cfg_path = tmp_path / "rft.yaml"
    cfg_path.write_text(yaml.safe_dump(engine_config))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    before = engine_pids()
    log = tmp_path / "rsft.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rsft.cli.main", "rft", "--config", str(cfg_path)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 240
    while not (engine_pids() - before) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    started = engine_pids() - before
    assert started, f"rsft never started an engine (exit {proc.poll()}):\n{log.read_text()[-3000:]}"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 60
    while engine_pids() & started and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not engine_pids() & started, "the engine outlived a SIGKILLed rsft"


def test_a_folder_that_is_not_a_model_fails_with_the_engine_log(tmp_path):
    (tmp_path / "empty").mkdir()
    options = EngineOptions(vllm_python=VLLM_PYTHON, start_timeout=300)
    server = VLLMServer(tmp_path / "empty", options, tmp_path / "engine.log")
    with pytest.raises(EngineError, match="exited with code"):
        server.start()
    assert not server.alive()


def test_one_engine_samples_every_prompt(engine_lm, tmp_path):
    options = EngineOptions(vllm_python=VLLM_PYTHON, max_model_len=256, cpu_kv_cache_gib=1)
    with VLLMServer(engine_lm, options, tmp_path / "engine.log") as server:
        gen = EngineGenerator(engine_lm, [Replica(server.url, SERVED_NAME, server)])
        convs = [[{"role": "user", "content": f"{i} + 1 = ?"}] for i in range(5)]
        out = gen.generate(convs, Sampling(n=3, max_new_tokens=5))
        greedy = gen.generate(convs, Sampling(max_new_tokens=5, greedy=True))
        again = gen.generate(convs, Sampling(max_new_tokens=5, greedy=True))
    assert [len(o) for o in out] == [3] * 5
    assert greedy == again  # greedy decoding does not depend on the engine's random state
    assert gen.generated_tokens > 0


def test_greedy_answers_are_the_same_on_a_fresh_engine(engine_lm, tmp_path):
    """What a rerun reproduces on vLLM's CPU engine: greedy answers. Sampled ones are not
    reproduced even by a fresh engine with the same seed and requests (docs/engines.md)."""
    options = EngineOptions(vllm_python=VLLM_PYTHON, max_model_len=256, cpu_kv_cache_gib=1)
    convs = [[{"role": "user", "content": f"{i} + 2 = ?"}] for i in range(4)]
    answers = []
    for run in range(2):
        with VLLMServer(engine_lm, options, tmp_path / f"engine-{run}.log") as server:
            gen = EngineGenerator(engine_lm, [Replica(server.url, SERVED_NAME, server)])
            answers.append(gen.generate(convs, Sampling(max_new_tokens=6, greedy=True)))
    assert answers[0] == answers[1]
