"""Reliability suite: engines that answer badly or slowly, and chat templates that fail.

Engines are stand-in vLLM servers (``tests/generation/fake_engine.py``) that answer with
missing, repeated or malformed completions, or trickle their answer a byte a second.
Templates are the tiny LM's, replaced by one that loops, renders nothing or raises. Each
case runs under :func:`bounded`: one that hangs fails after ``BOUND`` seconds instead of
holding the suite. Time limits here are small (``engine.request_timeout`` 2 s, the template
limit 2 s, ``engine.start_timeout`` 3 s) and the bound generous.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from rsft.cli.main import main
from rsft.generation.engines.base import Sampling
from rsft.generation.engines.client import EngineGenerator, Replica
from rsft.generation.engines.local import TransformersGenerator
from rsft.generation.engines.server import EngineError, EngineOptions, VLLMServer, served_models
from rsft.generation.templates import TemplateError

ROOT = Path(__file__).resolve().parents[2]
GENERATION = ROOT / "tests" / "generation"
sys.path.insert(0, str(GENERATION))
from fake_engine import FakeEngine  # noqa: E402

_spec = importlib.util.spec_from_file_location("_generation_conftest", GENERATION / "conftest.py")
_generation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_generation)  # its CHAT_TEMPLATE

BOUND = 30.0  # seconds any case may take; each limit it tests is a few seconds
LOOP = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def bounded(fn: Callable[[], Any], limit: float = BOUND) -> Any:
    """``fn()`` in a thread; its result or its error, or a failure when it is still running
    after ``limit`` seconds (a hang)."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as err:
            result["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still running after {limit:g} s: it hangs"
    if "error" in result:
        raise result["error"]
    return result["value"]


def convs(prefix: str, n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"{prefix}{i}"}] for i in range(n)]


def answers(prefix: str, prompts: int, n: int) -> list[list[str]]:
    """What the stand-in engine answers when it behaves."""
    return [[f"{prefix}{i} #{j}" for j in range(n)] for i in range(prompts)]


# ------------------------------------------------------------------- engine answers


def _set(choices: list[dict], k: int, **fields: Any) -> list[dict]:
    """The choices with choice ``k``'s fields replaced."""
    return [{**c, **fields} if i == k else c for i, c in enumerate(choices)]


@dataclass(frozen=True)
class Answer:
    id: str
    answer: Callable[[dict, list[dict]], Any]  # (payload, the right choices) -> what is sent
    expected: str | None  # a fragment of the EngineError; None: the completions are kept
    cut: int = 0  # bytes of the body left out of what its Content-Length promises


def bad_choice(id: str, expected: str, **fields: Any) -> Answer:
    """The right answer but for choice 0, whose ``fields`` are replaced."""
    return Answer(id, lambda p, c: {"choices": _set(c, 0, **fields)}, expected)


ANSWERS = [
    Answer(
        "fewer-choices",
        lambda p, c: {"choices": c[:3]},
        "returned 3 of the 8 completions asked for (n=2 for 4 prompts)",
    ),
    Answer(
        "index-twice",
        lambda p, c: {"choices": _set(c, 7, index=0)},
        "answered choice 0 twice",
    ),
    Answer("choices-null", lambda p, c: {"choices": None}, "which has no list of choices"),
    Answer("choices-missing", lambda p, c: {"id": "cmpl-1"}, "choices"),
    Answer("answer-a-list", lambda p, c: [c], "which has no list of choices"),
    bad_choice("index-out-of-range", "a choice with index 99, not 0 to 7", index=99),
    bad_choice("index-null", "a choice with index null, not 0 to 7", index=None),
    bad_choice("text-number", "answered choice 0 with the text 42, not a string", text=42),
    bad_choice("text-null", "answered choice 0 with the text null, not a string", text=None),
    Answer("not-json", lambda p, c: b"<html>busy</html>", "Expecting value"),
    Answer(
        "cut-short", lambda p, c: {"choices": c}, "a broken HTTP answer (IncompleteRead", cut=50
    ),
    Answer("usage-null", lambda p, c: {"choices": c, "usage": None}, None),
]


@pytest.mark.parametrize("case", ANSWERS, ids=[a.id for a in ANSWERS])
def test_an_engines_answer_is_checked(case: Answer, tiny_lm):
    """An answer that is not every prompt x sample exactly once, each a text, fails that
    replica; with no other replica the round stops naming the endpoint and the fault."""
    with FakeEngine(answer=case.answer, cut=case.cut) as engine:
        gen = EngineGenerator(tiny_lm, [Replica(engine.url, "rsft-model")])
        run = lambda: gen.generate(convs("q", 4), Sampling(n=2))  # noqa: E731
        if case.expected is None:
            assert bounded(run) == answers("q", 4, 2)
            return
        with pytest.raises(EngineError) as err:
            bounded(run)
    message = str(err.value)
    assert message.startswith("every engine failed with 1 chunk(s) left"), message
    assert case.expected in message and engine.url in message, message


def test_a_replica_with_incomplete_answers_leaves_its_chunks_to_the_others(tiny_lm):
    chunks = [convs(f"c{c}-", 4) for c in range(6)]
    got: dict[int, list[list[str]]] = {}
    with (
        FakeEngine(answer=lambda p, c: {"choices": c[:3]}) as bad,
        FakeEngine(delay=0.05) as good,
    ):
        replicas = [Replica(bad.url, "rsft-model"), Replica(good.url, "rsft-model")]
        gen = EngineGenerator(tiny_lm, replicas)
        bounded(lambda: gen.generate_chunks(chunks, lambda i: Sampling(n=2), got.__setitem__))
    assert got == {c: answers(f"c{c}-", 4, 2) for c in range(6)}
    assert len(gen.failures) == 1 and bad.url in gen.failures[0]
    assert "returned 3 of the 8 completions asked for" in gen.failures[0]


def test_a_chunk_that_cannot_be_saved_stops_the_round_with_that_error(tiny_lm):
    def save(i: int, outs: list[list[str]]) -> None:
        raise OSError(28, "No space left on device")

    with FakeEngine() as engine:
        gen = EngineGenerator(tiny_lm, [Replica(engine.url, "rsft-model")])
        chunks = [convs("x", 2) for _ in range(3)]
        with pytest.raises(OSError, match="No space left on device"):
            bounded(lambda: gen.generate_chunks(chunks, lambda i: Sampling(n=1), save))


# ----------------------------------------------------------------- slow endpoints

SLOW_ENGINE = """#!{python}
import sys, threading
sys.path.insert(0, {folder!r})
from fake_engine import FakeEngine
with FakeEngine(port=int(sys.argv[sys.argv.index("--port") + 1]), trickle=1.0):
    threading.Event().wait()
"""


def _generate_from(engine: FakeEngine, tiny_lm: str, timeout: float) -> list[list[str]]:
    gen = EngineGenerator(tiny_lm, [Replica(engine.url, "rsft-model")], request_timeout=timeout)
    return gen.generate(convs("q", 4), Sampling(n=2))


def _slow_completions(tiny_lm: str, tmp_path: Path, trickle_headers: bool) -> str:
    with FakeEngine(trickle=1.0, trickle_headers=trickle_headers) as engine:
        with pytest.raises(EngineError) as err:
            bounded(lambda: _generate_from(engine, tiny_lm, timeout=2.0))
    return f"{err.value} | {engine.url}"


def _slow_models(tiny_lm: str, tmp_path: Path) -> str:
    with FakeEngine(trickle=1.0) as engine:
        with pytest.raises(EngineError) as err:
            bounded(lambda: served_models(engine.url, timeout=2.0))
    return f"{err.value} | {engine.url}"


def _slow_health_check(tiny_lm: str, tmp_path: Path) -> str:
    python = tmp_path / "python"  # stands for vLLM's python: serves a slow-loris endpoint
    python.write_text(SLOW_ENGINE.format(python=sys.executable, folder=str(GENERATION)))
    python.chmod(0o755)
    options = EngineOptions(vllm_python=str(python), start_timeout=3.0)
    server = VLLMServer(tiny_lm, options, tmp_path / "engine.log")
    try:
        with pytest.raises(EngineError) as err:
            bounded(server.start)
    finally:
        server.stop(grace=1.0)
    return f"{err.value} | {server.url}"


def _slow_in_time(tiny_lm: str, tmp_path: Path) -> str:
    with FakeEngine(trickle=0.002, trickle_headers=False) as engine:
        assert bounded(lambda: _generate_from(engine, tiny_lm, timeout=20.0)) == answers("q", 4, 2)
    return "kept"


@pytest.mark.parametrize(
    "run, expected",
    [
        pytest.param(
            functools.partial(_slow_completions, trickle_headers=False),
            ["no complete answer within 2 s (engine.request_timeout"],
            id="slow-loris-body",
        ),
        pytest.param(
            functools.partial(_slow_completions, trickle_headers=True),
            ["no complete answer within 2 s (engine.request_timeout"],
            id="slow-loris-headers",
        ),
        pytest.param(
            _slow_models,
            ["does not answer as an OpenAI-compatible server", "within 2 s"],
            id="slow-loris-models",
        ),
        pytest.param(
            _slow_health_check,
            ["did not answer within 3 s (engine.start_timeout)"],
            id="slow-loris-health-check",
        ),
        pytest.param(_slow_in_time, ["kept"], id="slow-answer-in-time"),
    ],
)
def test_a_slow_endpoint_fails_at_its_deadline(run, expected, tiny_lm, tmp_path):
    """A request's time limit is a deadline for its whole answer, not for each read: an
    endpoint that sends a byte a second fails at the limit, naming itself and the option."""
    message = run(tiny_lm, tmp_path)
    url = message.rsplit(" | ", 1)[-1]
    for fragment in [*expected, url]:
        assert fragment in message, message


# ------------------------------------------------------------------- chat templates


@dataclass(frozen=True)
class Tpl:
    id: str
    template: str | None  # the folder's chat_template.jinja; None: the folder has none
    backend: str  # "transformers" or "engine"
    expected: str  # a fragment of the TemplateError, or "prompt:<the prompt sent>"


NOTHING = "{% if false %}x{% endif %}"
RAISES = "{{ raise_exception('this template needs a system message') }}"
SENT = "<|im_start|>user\nq0<|im_end|>\n<|im_start|>assistant\n"
TOO_SLOW = "took longer than 2 s (generation.template_timeout) to render one prompt; fix the"
BLANK = "so the model would see no prompt; fix the template"
TEMPLATES = [
    Tpl("huge-loop", LOOP + _generation.CHAT_TEMPLATE, "transformers", TOO_SLOW),
    Tpl("huge-loop-engine", LOOP + _generation.CHAT_TEMPLATE, "engine", TOO_SLOW),
    Tpl("renders-nothing", NOTHING, "transformers", "renders a conversation to ''"),
    Tpl("renders-nothing-engine", NOTHING, "engine", "renders a conversation to ''"),
    Tpl("renders-whitespace", "  \n ", "transformers", BLANK),
    Tpl("empty-template", "", "engine", BLANK),
    Tpl("template-raises", RAISES, "transformers", "this template needs a system message"),
    Tpl("template-control", _generation.CHAT_TEMPLATE, "engine", "prompt:" + SENT),
    Tpl("no-template", None, "engine", "prompt:q0\n"),
]


def _folder_with_template(tiny_lm: str, tmp_path: Path, template: str | None) -> Path:
    folder = tmp_path / "lm"
    shutil.copytree(tiny_lm, folder)
    jinja = folder / "chat_template.jinja"
    jinja.unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert "chat_template" not in config, "the template is in chat_template.jinja"
    if template is not None:
        jinja.write_text(template)
    return folder


@pytest.mark.parametrize("case", TEMPLATES, ids=[t.id for t in TEMPLATES])
def test_a_chat_template_is_checked_before_generation(case: Tpl, tiny_lm, tmp_path, monkeypatch):
    """On both backends: a template that loops, renders a conversation to nothing or raises
    is an input error naming its file and the fix, before any prompt is generated from."""
    folder = _folder_with_template(tiny_lm, tmp_path, case.template)
    with FakeEngine() as engine:
        if case.backend == "engine":
            replicas = [Replica(engine.url, "rsft-model")]
            gen = EngineGenerator(folder, replicas, template_timeout=2.0)
        else:
            gen = TransformersGenerator(folder, device="cpu", template_timeout=2.0)
        run = lambda: gen.generate(convs("q", 3), Sampling(n=1, max_new_tokens=2))  # noqa: E731
        if case.expected.startswith("prompt:"):
            bounded(run)
            assert engine.requests[0]["prompt"][0] == case.expected.removeprefix("prompt:")
            return
        with pytest.raises(TemplateError) as err:
            bounded(run)
    assert case.expected in str(err.value), err.value
    assert str(folder / "chat_template.jinja") in str(err.value)
    assert not engine.requests, "a prompt was sent"


def _rft_config(tiny_lm: str, tmp_path: Path, template: str) -> Path:
    from rsft.tasks.arithmetic import prepare_arithmetic

    folder = _folder_with_template(tiny_lm, tmp_path, template)
    paths = prepare_arithmetic(tmp_path / "data", n_train=4, n_eval=2, with_model=False)
    config = {
        "model": {"path": str(folder)},
        "data": {"train": paths["train"], "eval": paths["eval"]},
        "generation": {"k": 2, "max_new_tokens": 4, "chunk_prompts": 4},
        "verifier": {"kind": "numeric"},
        "sft": {"epochs": 1, "batch_size": 4},
        "eval": {"k": 0},
        "rounds": 1,
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "rft.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_rsft_rft_refuses_a_template_that_renders_nothing(tiny_lm, tmp_path, capsys):
    rc = main(["rft", "-c", str(_rft_config(tiny_lm, tmp_path, NOTHING))])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("rsft rft: error: the chat template in ") and BLANK in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "round_0" / "generations.jsonl").exists()


RSFT = "import sys; from rsft.cli.main import main; sys.exit(main(sys.argv[1:]))"


def test_rsft_rft_stops_a_looping_template_within_its_limit(tiny_lm, tmp_path):
    """In a process of its own, killed if it hangs (generation.template_timeout: 2 s)."""
    path = _rft_config(tiny_lm, tmp_path, LOOP + _generation.CHAT_TEMPLATE)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", RSFT, "rft", "-c", str(path), "generation.template_timeout=2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("rsft rft: error: the chat template in "), proc.stderr
    assert TOO_SLOW in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
