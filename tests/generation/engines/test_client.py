"""The engine client, replicas and engine faults, on stand-in servers (no vLLM needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rsft.config import ConfigError, from_dict
from rsft.generation import RFTConfig
from rsft.generation.engines.base import Sampling
from rsft.generation.engines.client import EngineGenerator, Replica
from rsft.generation.engines.pool import cpu_binds, generation_dtype
from rsft.generation.engines.server import (
    EngineError,
    EngineOptions,
    VLLMServer,
    check_endpoint,
    find_vllm_python,
)

sys.path.insert(0, str(Path(__file__).parents[1]))  # fake_engine
from fake_engine import FakeEngine  # noqa: E402


def convs(prefix: str, n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"{prefix}{i}"}] for i in range(n)]


def run_chunks(gen, chunks, k=3):
    got: dict[int, list[list[str]]] = {}

    def save(i, outs):
        assert i not in got, f"chunk {i} delivered twice"
        got[i] = outs

    gen.generate_chunks(chunks, lambda i: Sampling(n=k, seed=i), save)
    return got


def test_answers_come_back_per_prompt_and_sample_in_order(tiny_lm):
    with FakeEngine() as engine:
        gen = EngineGenerator(tiny_lm, [Replica(engine.url, "rsft-model")])
        out = gen.generate(convs("q", 4), Sampling(n=3))
    # the stand-in answers in reverse order: the client must place each by its index
    assert out == [[f"q{i} #{j}" for j in range(3)] for i in range(4)]
    assert engine.requests[0]["n"] == 3 and len(engine.requests[0]["prompt"]) == 4
    assert engine.requests[0]["add_special_tokens"] is False
    assert "seed" not in engine.requests[0]  # vLLM's CPU engine crashes on a request seed


def test_chunks_are_spread_over_replicas_and_each_is_delivered_once(tiny_lm):
    chunks = [convs(f"c{c}-", 2) for c in range(8)]
    with FakeEngine(delay=0.05) as a, FakeEngine(delay=0.05) as b:
        gen = EngineGenerator(tiny_lm, [Replica(a.url, "rsft-model"), Replica(b.url, "rsft-model")])
        got = run_chunks(gen, chunks)
    assert sorted(got) == list(range(8))
    assert got[5] == [[f"c5-{i} #{j}" for j in range(3)] for i in range(2)]
    assert len(a.requests) + len(b.requests) == 8
    assert a.requests and b.requests  # both replicas took work


def test_a_replica_that_dies_mid_round_loses_and_doubles_nothing(tiny_lm):
    chunks = [convs(f"c{c}-", 2) for c in range(10)]
    with FakeEngine(fail_after=2) as dying, FakeEngine(delay=0.05) as healthy:
        gen = EngineGenerator(
            tiny_lm, [Replica(dying.url, "rsft-model"), Replica(healthy.url, "rsft-model")]
        )
        got = run_chunks(gen, chunks)
    assert sorted(got) == list(range(10))
    for c in range(10):
        assert got[c] == [[f"c{c}-{i} #{j}" for j in range(3)] for i in range(2)]
    assert len(gen.failures) == 1 and dying.url in gen.failures[0]
    assert len(gen.replicas) == 1  # the dead one takes no more chunks


def test_when_every_replica_fails_the_round_stops_with_their_errors(tiny_lm):
    with FakeEngine(fail_after=1) as a:
        gen = EngineGenerator(tiny_lm, [Replica(a.url, "rsft-model")])
        with pytest.raises(EngineError, match="every engine failed with 2 chunk"):
            run_chunks(gen, [convs("x", 1) for _ in range(3)])


def test_a_request_the_engine_refuses_is_not_retried_elsewhere(tiny_lm):
    with FakeEngine() as a, FakeEngine() as b:
        gen = EngineGenerator(tiny_lm, [Replica(a.url, "other"), Replica(b.url, "other")])
        with pytest.raises(EngineError, match="refused the request"):
            run_chunks(gen, [convs("x", 1) for _ in range(4)])
        assert len(a.requests) + len(b.requests) <= 2


def test_an_endpoint_that_does_not_answer_names_its_url():
    with pytest.raises(EngineError, match="http://127.0.0.1:9 does not answer"):
        check_endpoint("http://127.0.0.1:9", "m")


def test_an_endpoint_serving_another_model_is_refused():
    with FakeEngine(model="served", root="/models/other") as engine:
        assert check_endpoint(engine.url, "/models/other") == "served"
        assert check_endpoint(engine.url, "served") == "served"
        with pytest.raises(EngineError, match="serves served \\(/models/other\\), not 'mine'"):
            check_endpoint(engine.url, "mine")


def test_an_engine_that_fails_to_start_shows_the_end_of_its_log(tmp_path):
    fake_python = tmp_path / "python"
    fake_python.write_text(
        "#!/bin/sh\necho 'loading model'\necho 'ValueError: not a model folder' >&2\nexit 3\n"
    )
    fake_python.chmod(0o755)
    server = VLLMServer(tmp_path, EngineOptions(vllm_python=str(fake_python)), tmp_path / "e.log")
    with pytest.raises(EngineError, match="exited with code 3(.|\n)*not a model folder"):
        server.start()
    assert not server.alive()


def test_an_engine_that_never_answers_is_stopped_after_the_timeout(tmp_path):
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\necho 'stuck'\nexec sleep 60\n")
    fake_python.chmod(0o755)
    options = EngineOptions(vllm_python=str(fake_python), start_timeout=1.0)
    server = VLLMServer(tmp_path, options, tmp_path / "e.log")
    with pytest.raises(EngineError, match="did not answer within 1 s(.|\n)*stuck"):
        server.start()
    assert server.proc is None


def test_without_vllm_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./.venv-vllm here
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="make vllm-env"):
        find_vllm_python("auto")
    with pytest.raises(ConfigError, match="not an executable"):
        find_vllm_python(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    "engine, match",
    [
        ({"replicas": 0}, "engine.replicas must be >= 1"),
        ({"endpoints": ["localhost:8000"]}, "not an http"),
        ({"endpoints": ["http://h:1"], "replicas": 2}, "list every endpoint"),
        ({"endpoints": ["http://h:1"]}, "set sft.lora: true"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
    ],
)
def test_engine_options_are_checked_before_anything_starts(tiny_lm, tmp_path, engine, match):
    cfg = {
        "model": {"path": tiny_lm},
        "data": {"train": "t.jsonl", "eval": "e.jsonl"},
        "generation": {"backend": "vllm"},
        "engine": engine,
    }
    with pytest.raises(ConfigError, match=match):
        from_dict(RFTConfig, cfg)


def test_generation_dtype_and_cpu_binding():
    assert generation_dtype("model", "float32", gpu=False) == "float32"
    assert generation_dtype("model", "auto", gpu=True) == "bfloat16"
    assert generation_dtype("float16", "float32", gpu=False) == "float16"
    assert cpu_binds(1) == [None]
    binds = cpu_binds(2)
    if all(binds):  # two or more cores: disjoint shares
        assert not set(binds[0].split(",")) & set(binds[1].split(","))
