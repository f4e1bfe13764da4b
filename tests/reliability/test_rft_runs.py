"""Generation-level runs (``rsft rft``): what a resumed or restarted run keeps, what held-out
evaluation counts as correct, and the warnings about prompts (issue 17 items 1, 7, 8).

Every run here is the fast pipeline of tests/generation/test_pipeline.py: a 2-layer Llama with
a byte-level tokenizer, 12 training and 6 held-out arithmetic prompts, the numeric verifier in
threads. A kill is an exception that nothing catches (:class:`Killed`), raised right after
generation saved its first chunk, or at the start of fine-tuning.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from rsft.atomic import read_jsonl
from rsft.cli.main import main
from rsft.config import ConfigError, from_dict
from rsft.generation import RFTConfig, RFTPipeline
from rsft.generation import pipeline as pipeline_module
from rsft.generation.engines.pool import EnginePool
from rsft.generation.evaluation import held_out_metrics
from rsft.generation.prompt_checks import PromptWarning
from rsft.generation.prompts import Prompts
from rsft.generation.run_state import LATER_OPTIONS
from rsft.generation.scoring.verifiers import make_verifier
from rsft.same_run import without
from rsft.tasks.arithmetic import prepare_arithmetic
from rsft.training import FineTuner, TrainConfig

TESTS = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str):
    """A helper module of another test folder (the suite imports tests by path)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_training = _load(TESTS / "training" / "conftest.py", "_rft_runs_training_conftest")


class Killed(BaseException):
    """kill -9: nothing catches it (not an Exception)."""


class NoModel(Exception):
    """Raised where the pipeline would load a model for the first time."""


@pytest.fixture(autouse=True)
def offline_one_thread(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models run faster on one thread when cores are shared
    yield
    torch.set_num_threads(threads)


def _config(lm: str, tmp_path: Path) -> dict:
    paths = prepare_arithmetic(tmp_path / "data", n_train=12, n_eval=6, with_model=False)
    return {
        "model": {"path": lm},
        "data": {"train": paths["train"], "eval": paths["eval"]},
        "generation": {"k": 2, "max_new_tokens": 6, "chunk_prompts": 4, "batch_size": 16},
        "verifier": {"kind": "numeric", "timeout": None, "workers": 1},
        # The untrained tiny LM is never right: keep half of its candidates anyway.
        "selection": {"rule": "top_fraction", "fraction": 0.5},
        "sft": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
        "rounds": 1,
        "output_dir": str(tmp_path / "run"),
        "progress": False,
    }


@pytest.fixture
def rft(tiny_lm, tmp_path) -> dict:
    return _config(tiny_lm, tmp_path)


def _override(cfg: dict, change: dict) -> dict:
    """``cfg`` with ``change``: top-level options replaced, sections updated option by option."""
    out = copy.deepcopy(cfg)
    for key, value in change.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def _pipeline(cfg: dict) -> RFTPipeline:
    return RFTPipeline(from_dict(RFTConfig, copy.deepcopy(cfg)))


def _write_prompts(path: Path, rows: list[tuple[str, str]]) -> str:
    path.write_text("".join(json.dumps({"prompt": p, "answer": a}) + "\n" for p, a in rows))
    return str(path)


def _prompt_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, PromptWarning)]


# ------------------------------------------- item 1: files edited between a kill and the rerun


def _kill_after_first_chunk(monkeypatch) -> None:
    real = pipeline_module.atomic_write_jsonl

    def write(path, rows):
        real(path, rows)
        if Path(path).parent.name == "chunks":
            raise Killed(path)

    monkeypatch.setattr(pipeline_module, "atomic_write_jsonl", write)


def _killed(*args, **kwargs):
    raise Killed("fine-tuning")


def _edit_answers(path: str) -> None:
    """Every reference answer of a prompt file plus one: the same prompts, other answers."""
    rows = read_jsonl(path)
    Path(path).write_text(
        "".join(json.dumps({**r, "answer": str(int(r["answer"]) + 1)}) + "\n" for r in rows)
    )


def _edit_train(cfg: dict) -> str:
    _edit_answers(cfg["data"]["train"])
    return cfg["data"]["train"]


def _edit_eval(cfg: dict) -> str:
    _edit_answers(cfg["data"]["eval"])
    return cfg["data"]["eval"]


def _edit_model(cfg: dict) -> str:
    folder = Path(cfg["model"]["path"])
    (folder / "generation_config.json").write_text('{"do_sample": true}\n')
    return str(folder)


def _to_old_state(cfg: dict) -> None:
    """state.json as rsft wrote it before it kept the options and the data digests."""
    path = Path(cfg["output_dir"]) / "state.json"
    state = json.loads(path.read_text())
    path.write_text(json.dumps({k: state[k] for k in ("config_hash", "rsft_version")}))


@pytest.mark.parametrize(
    ("field", "edit"),
    [
        pytest.param("data.train", _edit_train, id="rft-train-edited"),
        pytest.param("data.eval", _edit_eval, id="rft-eval-edited"),
        pytest.param("model.path", _edit_model, id="rft-model-edited"),
        pytest.param(None, lambda cfg: None, id="rft-nothing-edited"),
        pytest.param(None, _to_old_state, id="rft-state-without-digests"),
    ],
)
def test_files_edited_between_a_kill_and_the_rerun_are_refused(
    field, edit, rft, tiny_lm, tmp_path, monkeypatch
):
    rft["model"]["path"] = str(shutil.copytree(tiny_lm, tmp_path / "lm"))  # edited by one case
    with monkeypatch.context() as m:
        _kill_after_first_chunk(m)
        with pytest.raises(Killed):
            _pipeline(rft).run()
    chunks = Path(rft["output_dir"]) / "round_1" / "chunks"
    saved = sorted(chunks.iterdir())
    assert [p.name for p in saved] == ["00000.jsonl"]
    edited = edit(rft)
    if field is None:  # the rerun resumes: it generates the rest, then fine-tuning is killed
        monkeypatch.setattr(pipeline_module, "sft_train", _killed)
        with pytest.raises(Killed):
            _pipeline(rft).run()
        rows = read_jsonl(chunks.parent / "candidates.jsonl")
        references = {r["prompt"]: r["answer"] for r in read_jsonl(rft["data"]["train"])}
        assert all(r["reference"] == references[r["prompt"]] for r in rows)
        if edit is _to_old_state:  # from now on, this run's files are checked too
            assert "data" in json.loads((Path(rft["output_dir"]) / "state.json").read_text())
        return
    with pytest.raises(ConfigError) as err:
        _pipeline(rft).run()
    message = str(err.value)
    assert message.startswith(f"{field} ({edited}) changed since the run in ")
    assert "resuming would mix two data sets in one run" in message
    assert message.endswith("Restore the data, or start over: a new output_dir, or resume: never.")
    assert sorted(chunks.iterdir()) == saved, "nothing was generated after the refusal"


# ------------------------------------------------- a changed option on resume: name the option


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param({"seed": 1}, "(seed: 0 then, 1 now)", id="rft-changed-seed"),
        pytest.param(
            {"sft": {"lr": 1e-4}, "generation": {"temperature": 0.5}},
            "(generation.temperature: 1.0 then, 0.5 now; sft.lr: 0.001 then, 0.0001 now)",
            id="rft-changed-two",
        ),
        pytest.param(
            {"seed": 3, "data_mode": "accumulate", "eval": {"k": 2, "threshold": 0.5}},
            '(data_mode: "replace" then, "accumulate" now; eval.k: 0 then, 2 now; '
            "eval.threshold: 1.0 then, 0.5 now; and 1 more)",
            id="rft-changed-many",
        ),
        pytest.param({"rounds": 3, "progress": "quiet"}, None, id="rft-unhashed-change"),
    ],
)
def test_a_changed_option_on_resume_is_named(change, named, rft):
    _pipeline(rft)._prepare_output()
    changed = _override(rft, change)
    if named is None:
        _pipeline(changed)._prepare_output()  # options that do not change the result
        return
    with pytest.raises(ConfigError) as err:
        _pipeline(changed)._prepare_output()
    assert str(err.value) == (
        f"{rft['output_dir']} holds a run with different options {named}; resuming it would "
        "mix two runs. Use another output_dir, or resume=never to start over."
    )


def test_rft_state_with_only_a_hash_keeps_the_old_message(rft):
    _pipeline(rft)._prepare_output()
    _to_old_state(rft)
    with pytest.raises(ConfigError) as err:
        _pipeline({**rft, "seed": 1})._prepare_output()
    assert str(err.value) == (
        f"{rft['output_dir']} holds a run with different options; resuming it would mix two "
        "runs. Use another output_dir, or resume=never to start over."
    )


def test_rft_run_from_before_eval_threshold_resumes(rft):
    """A state.json of a run from before eval.threshold existed (its hash without it): the
    same run, as long as the option counts as correct what evaluation counted then
    (eval.threshold equal to selection.threshold, as by default)."""
    _pipeline(rft)._prepare_output()
    path = Path(rft["output_dir"]) / "state.json"
    options = json.loads(path.read_text())["config"]
    del options["eval"]["threshold"]
    del options["sft"]["trl"]  # nor sft.trl, newer still
    without(options, list(LATER_OPTIONS))  # nor the options added since (train_on, ...)
    old_hash = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]
    path.write_text(json.dumps({"config_hash": old_hash, "rsft_version": "0.9"}))
    _pipeline(rft)._prepare_output()  # resumes
    path.write_text(json.dumps({"config_hash": old_hash, "rsft_version": "0.9"}))
    with pytest.raises(ConfigError, match=r"different options;"):
        _pipeline({**rft, "eval": {"threshold": 0.5}})._prepare_output()
    path.write_text(json.dumps({"config_hash": old_hash, "rsft_version": "0.9"}))
    with pytest.raises(ConfigError, match=r"different options;"):  # a later option, set
        _pipeline({**rft, "data": {**rft["data"], "group_column": "a"}})._prepare_output()


def test_train_changed_option_on_resume_is_named(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    cfg = {
        "model": {"path": "rsft.tasks.mlp:MLP", "kwargs": {"in_features": 64, "hidden": 8}},
        "data": {
            "train": _training.write_table(data / "train.parquet", n=32),
            "feature_columns": ["pixels"],
        },
        "optim": {"name": "sgd", "lr": 0.05},
        "epochs": 1,
        "batch_size": 8,
        "output_dir": str(tmp_path / "run"),
        "progress": False,
    }
    FineTuner(from_dict(TrainConfig, cfg)).train()
    cfg["optim"]["lr"] = 0.01
    with pytest.raises(ConfigError) as err:
        FineTuner(from_dict(TrainConfig, cfg))
    assert (
        "holds a checkpoint of a run with a different config (optim.lr: 0.05 then, 0.01 now)."
        in str(err.value)
    )
    assert str(err.value).endswith("set resume: never to start over.")


# ------------------------------------------- item 7: what held-out evaluation counts as correct


@pytest.mark.parametrize(
    ("options", "answers", "pass_at_1"),
    [
        pytest.param(
            {"selection": {"threshold": 0.0}}, ["", "", "3"], 1 / 3, id="eval-threshold-default"
        ),
        pytest.param(
            {"selection": {"threshold": 0.0}, "eval": {"threshold": 0.0}},
            ["", "", "3"],
            1.0,
            id="eval-threshold-zero",
        ),
        pytest.param(
            {
                "verifier": {"kind": "function", "function": "pipeline_rewards:digit_share"},
                "eval": {"threshold": 0.5},
            },
            ["12", "a1", "ab"],
            2 / 3,
            id="eval-threshold-graded",
        ),
    ],
)
def test_held_out_pass_at_1_counts_by_eval_threshold(
    options, answers, pass_at_1, rft, tmp_path, monkeypatch
):
    monkeypatch.syspath_prepend(str(TESTS / "generation"))  # pipeline_rewards
    cfg = from_dict(RFTConfig, _override(rft, options))
    prompts = Prompts(
        ["eval-0", "eval-1", "eval-2"], ["1 = ?", "2 = ?", "3 = ?"], ["1", "2", "3"], "eval.jsonl"
    )
    v = cfg.verifier
    verifier = make_verifier(v.kind, **v.options())
    metrics = held_out_metrics(cfg, prompts, verifier, answers, [], tmp_path / "eval", print)
    assert metrics["pass@1"] == pytest.approx(pass_at_1)
    marked = [r["correct"] for r in read_jsonl(tmp_path / "eval_generations.jsonl")]
    assert sum(marked) == round(3 * pass_at_1)


@pytest.mark.parametrize(
    ("option", "fragments"),
    [
        pytest.param(
            "eval.threshold",
            [
                "A held-out completion counts as correct when its reward is at least this",
                "Independent of selection.threshold",
            ],
            id="eval-threshold-help",
        ),
        pytest.param(
            "resume",
            [
                "never: start over, deleting what an earlier run wrote in output_dir",
                "results.json",
                "state.json",
                "and nothing else",
            ],
            id="resume-never-help",
        ),
    ],
)
def test_rft_help_says_what_the_option_does(option, fragments, capsys):
    with pytest.raises(SystemExit):
        main(["rft", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    at = text.index(f" {option} (")
    entry = text[at : at + 600]
    for fragment in fragments:
        assert fragment in entry, (fragment, entry)


# ------------------------------------------------------- item 8: resume: never starts over


@pytest.fixture(scope="module")
def finished_run(tiny_lm, tmp_path_factory) -> dict:
    """A finished one-round run, with the user's own files and another run's lock beside it."""
    cfg = _config(tiny_lm, tmp_path_factory.mktemp("finished"))
    _pipeline(cfg).run()
    out = Path(cfg["output_dir"])
    (out / "engines").mkdir()
    (out / "engines" / "engine-0.log").write_text("an engine's log\n")
    (out / ".rsft.lock").write_text("12345\n")
    (out / "notes.txt").write_text("my notes\n")
    (out / "round_notes").mkdir()
    (out / "round_notes" / "plan.md").write_text("my plan\n")
    return cfg


RUN_FILES = ["config.yaml", "pass_at_1.png", "results.json", "state.json", "summary.md"]
OTHER_FILES = [".rsft.lock", "notes.txt", "round_notes/plan.md"]


def _files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "case",
    [
        pytest.param("finished", id="never-finished-run"),
        pytest.param("empty", id="never-empty-output-dir"),
    ],
)
def test_resume_never_deletes_the_earlier_runs_files_and_nothing_else(
    case, finished_run, tmp_path, capsys
):
    cfg = {**finished_run, "resume": "never", "output_dir": str(tmp_path / "run")}
    out = Path(cfg["output_dir"])
    if case == "finished":
        shutil.copytree(finished_run["output_dir"], out, symlinks=True)
        assert {"results.json", "round_1/eval.json", "engines/engine-0.log"} <= set(_files(out))
    pipe = _pipeline(cfg)
    capsys.readouterr()
    pipe._prepare_output()  # where run() starts
    said = capsys.readouterr().out
    kept = OTHER_FILES if case == "finished" else []
    assert _files(out) == sorted(["config.yaml", "state.json", *kept]), "written anew"
    if case == "empty":
        assert said == ""
        return
    assert said == (
        "resume: never: deleted the earlier run's round_0, round_1, engines, results.json, "
        f"summary.md, pass_at_1.png, config.yaml, state.json in {out}\n"
    )


# ------------------------------------------------------------------------ prompt warnings


def _overlapping_eval(cfg: dict, tmp_path: Path) -> None:
    train = read_jsonl(cfg["data"]["train"])
    rows = [(r["prompt"], r["answer"]) for r in read_jsonl(cfg["data"]["eval"])]
    rows.append(("  " + train[3]["prompt"].upper().replace(" ", "   ") + "\n", train[3]["answer"]))
    cfg["data"]["eval"] = _write_prompts(tmp_path / "eval.jsonl", rows)


@pytest.mark.parametrize(
    ("overlap", "expected"),
    [
        pytest.param(
            True,
            [
                "1 of the 7 held-out prompts (data.eval: ",
                "are also training prompts (data.train: ",
                "the same text up to case and whitespace, e.g. eval-6 'WHAT IS",
                "held-out pass@1 would then measure memorisation. Remove them from data.eval",
            ],
            id="eval-overlaps-train",
        ),
        pytest.param(False, None, id="eval-disjoint-from-train"),
    ],
)
def test_held_out_prompts_that_are_training_prompts_warn(overlap, expected, rft, tmp_path):
    if overlap:
        _overlapping_eval(rft, tmp_path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _pipeline(rft)  # checked before any model is loaded
    found = _prompt_warnings(record)
    if expected is None:
        assert found == []
        return
    assert len(found) == 1
    for fragment in expected:
        assert fragment in found[0], (fragment, found[0])


def test_rft_prints_a_prompt_warning_as_one_line(rft, tmp_path, monkeypatch, capsys):
    _overlapping_eval(rft, tmp_path)
    path = tmp_path / "rft.yaml"
    path.write_text(yaml.safe_dump(rft))

    def stop(*args, **kwargs):
        raise ConfigError("stopped by the test where a model would load")

    monkeypatch.setattr(EnginePool, "generator", stop)
    assert main(["rft", "-c", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("rsft rft: warning: 1 of the 7 held-out prompts (data.eval: ")
    assert err[1] == "rsft rft: error: stopped by the test where a model would load"


DUPLICATED = ["What is 1 + 1?", "what is 1 +  1?", " WHAT IS 1 + 1? "]
UNIQUE = ["What is 2 + 2?", "What is 3 + 3?", "What is 4 + 4?"]


@pytest.mark.parametrize(
    ("from_duplicates", "data_mode", "warned"),
    [
        pytest.param(4, "replace", True, id="duplicates-dominate"),
        pytest.param(3, "replace", False, id="duplicates-half"),
        pytest.param(1, "replace", False, id="duplicates-minority"),
        pytest.param(2, "accumulate", True, id="duplicates-dominate-accumulated"),
    ],
)
def test_duplicated_prompts_that_dominate_the_sft_set_warn(
    from_duplicates, data_mode, warned, rft, tmp_path, monkeypatch
):
    rows = [(p, "2") for p in DUPLICATED] + [(p, str(2 * i + 4)) for i, p in enumerate(UNIQUE)]
    rft["data"]["train"] = _write_prompts(tmp_path / "train.jsonl", rows)
    rft["data_mode"] = data_mode
    rft["rounds"] = 2
    pipe = _pipeline(rft)
    ids = pipe.train_prompts.ids  # train-0..2: the duplicated text; train-3..5: unique

    def records(dup: int, unique: int) -> list[str]:
        chosen = [ids[i % 3] for i in range(dup)] + [ids[3 + i % 3] for i in range(unique)]
        return [json.dumps({"messages": [], "prompt_id": i, "reward": 1.0}) for i in chosen]

    first, second = records(from_duplicates, 6 - from_duplicates), records(3, 0)
    for rnd, lines in ((1, first), (2, second)):
        (pipe.out / f"round_{rnd}").mkdir(parents=True)
        (pipe.out / f"round_{rnd}" / "accepted.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(pipeline_module, "sft_train", lambda start, records, out, *a, **k: out)
    rnd = 2 if data_mode == "accumulate" else 1
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        pipe.train(rnd, pipe.base, "accepted.jsonl", tmp_path / "sft")
    found = _prompt_warnings(record)
    if not warned:
        assert found == []
        return
    n, total = (4, 6) if data_mode == "replace" else (5, 9)
    assert found == [
        f"round {rnd}: {n} of the {total} SFT records come from training prompts that occur "
        f"more than once in data.train ({pipe.train_prompts.source}: 1 text repeated, up to "
        f"case and whitespace), e.g. 'What is 1 + 1?' (3 times, {n} records): fine-tuning "
        "then mostly learns those prompts. Remove the repeated rows from data.train."
    ]


LONG = "Say yes. " * 40  # 320 letters and spaces: over the tiny LM's 256 positions


@pytest.mark.parametrize(
    ("options", "long_prompt", "expected"),
    [
        pytest.param(
            {},
            True,
            [
                "1 of the 13 prompts of data.train (",
                "are too long for the model's context (256 tokens: max_position_embeddings in ",
                "config.json) once the 6 tokens of generation.max_new_tokens are added: the "
                "longest, train-12 'Say yes. Say yes.",
                "Shorten or drop those prompts, or lower generation.max_new_tokens.",
            ],
            id="prompt-over-context",
        ),
        pytest.param(
            {"sft": {"max_length": 40}},
            False,
            [
                "12 of the 12 prompts of data.train (",
                "are too long for sft.max_length (40 tokens) once the 6 tokens of "
                "generation.max_new_tokens are added",
                "SFT truncates each sequence there, so the completion the model should learn "
                "is cut off. Raise sft.max_length, or shorten those prompts.",
            ],
            id="prompt-over-sft-max-length",
        ),
        pytest.param(
            {"generation": {"backend": "vllm"}, "engine": {"max_model_len": 40}},
            False,
            [
                "12 of the 12 prompts of data.train (",
                "are too long for engine.max_model_len (40 tokens) once",
                "Shorten or drop those prompts, raise engine.max_model_len, or lower "
                "generation.max_new_tokens.",
                "6 of the 6 prompts of data.eval (",
            ],
            id="prompt-over-engine-max-model-len",
        ),
        pytest.param({}, False, [], id="prompts-fit"),
    ],
)
def test_prompts_too_long_warn_before_a_model_loads(
    options, long_prompt, expected, rft, tmp_path, monkeypatch
):
    rft = _override(rft, options)
    if long_prompt:
        rows = [(r["prompt"], r["answer"]) for r in read_jsonl(rft["data"]["train"])]
        rft["data"]["train"] = _write_prompts(tmp_path / "train.jsonl", [*rows, (LONG, "yes")])

    def no_model(*args, **kwargs):
        raise NoModel

    monkeypatch.setattr(EnginePool, "generator", no_model)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(NoModel):
            _pipeline(rft).run()
    found = " | ".join(_prompt_warnings(record))
    if not expected:
        assert found == ""
    for fragment in expected:
        assert fragment in found, (fragment, found)
