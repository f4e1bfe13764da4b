r"""Security cases: what a model folder, a config and a hostile answer can and cannot make rsft do.

Each table row reads: input -> expected refusal or behaviour. docs/security.md explains why.

Model folders (``rsft_model.json`` beside ``model.safetensors``; a folder is data, it is shared):

| id                     | the folder names              | trust | expected                       |
|------------------------|-------------------------------|-------|--------------------------------|
| exploit                | subprocess:run + shell kwargs | no    | refused before import, no shell|
| exploit-opted-in       | subprocess:run + shell kwargs | yes   | refused: not an nn.Module class|
| rsft-class             | rsft.tasks.digits:DigitsNet   | no    | loads                          |
| rsft-non-module        | rsft.imports:import_object    | no    | refused: not an nn.Module class|
| torch-class-via-rsft   | rsft.models.loading:nn.Linear | no    | refused: defined outside rsft  |
| outside-class          | security_models:OutsideNet    | no    | refused, module never imported |
| outside-class-opted-in | security_models:OutsideNet    | yes   | loads                          |
| not-a-config           | "num_labels": "ten"           | no    | refused, names the field       |

Transformers folders (``config.json`` with ``auto_map``, code beside it that marks a file):

| id                   | config.json                   | trust | expected                         |
|----------------------|-------------------------------|-------|----------------------------------|
| custom-type          | model_type unknown + auto_map | no    | refused, names the option; no run|
| custom-type-opted-in | model_type unknown + auto_map | yes   | the folder's code builds it      |
| known-type           | model_type bert + auto_map    | no    | transformers' BERT; no code run  |

End to end: ``rsft train model.path=<exploit folder>`` exits 2 naming the option, and the
shell command never runs.

Verifiers (``rsft rft``'s scoring; ``verifier.timeout``, 3 s in these tests, 10 s by default):

| id               | kind        | completion                | reference | expected            |
|------------------|-------------|---------------------------|-----------|---------------------|
| tower-completion | math_verify | $\frac{1}{9^{9^{9^{9}}}}$ | 1         | timed out, counted  |
| tower-reference  | math_verify | 1                         | 9^9^9^9   | timed out, counted  |
| equal-fraction   | math_verify | $\frac{1}{2}$             | 0.5       | 1.0                 |
| boxed            | math_verify | \boxed{0.5}               | $\frac12$ | 1.0                 |
| wrong            | math_verify | 0.25                      | 0.5       | 0.0                 |
| no-reference     | math_verify | 1                         | ""        | error, not a hang   |
| function-hangs   | function    | hang (sleeps an hour)     | 1         | timed out, counted  |
| function-exits   | function    | exit (os._exit(3))        | 1         | error: worker died  |
| function-raises  | function    | raise                     | 1         | error: KeyError     |
| function-normal  | function    | 7                         | 7         | 1.0                 |
| pipeline         | math_verify | the tower among 3 normal  | 0.5       | counted; round goes on |
| bad-timeout      | config      | timeout 0, -1, nan, inf   |           | ConfigError, names it  |
| not-importable   | a lambda    | with a timeout            |           | ValueError with the fix|
| round-table      | report      | 3 failed, 2 timed out     |           | the table counts both  |

Saved files (safetensors writes a private temporary file and renames it into place):

| id                | what is saved                           | umask | expected mode |
|-------------------|-----------------------------------------|-------|---------------|
| train-022         | rsft train: output_dir/model, results   | 022   | 0644          |
| train-027         | rsft train: output_dir/model, results   | 027   | 0640          |
| transformers-022  | save_classifier of a transformers model | 022   | 0644          |
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset

from rsft.cli.main import main
from rsft.models import load_classifier, save_classifier

HERE = Path(__file__).parent
CLASSES = [str(i) for i in range(10)]


@dataclass(frozen=True)
class FolderCase:
    id: str
    names: str  # the "class" that rsft_model.json names
    trust: bool  # trust_remote_code
    error: str | None  # a regex the refusal matches; None: the folder loads
    kwargs: dict | None = None  # the file's kwargs; None: {"width": 8}


SHELL = {"args": "touch {marker}", "shell": True}

MODEL_FOLDER_CASES = [
    FolderCase(
        "exploit",
        "subprocess:run",
        False,
        r"'subprocess:run' as its model class, which is not part of rsft.*"
        r"model\.trust_remote_code: true",
        SHELL,
    ),
    FolderCase(
        "exploit-opted-in", "subprocess:run", True, r"not a torch\.nn\.Module subclass", SHELL
    ),
    FolderCase("rsft-class", "rsft.tasks.digits:DigitsNet", False, None),
    FolderCase(
        "rsft-non-module",
        "rsft.imports:import_object",
        False,
        r"'rsft.imports:import_object', a function, not a torch\.nn\.Module subclass",
    ),
    FolderCase(
        "torch-class-via-rsft",
        "rsft.models.loading:nn.Linear",
        False,
        r"defined in 'torch\.nn\.modules\.linear', outside rsft.*model\.trust_remote_code",
    ),
    FolderCase(
        "outside-class",
        "security_models:OutsideNet",
        False,
        r"'security_models:OutsideNet' as its model class, which is not part of rsft",
    ),
    FolderCase("outside-class-opted-in", "security_models:OutsideNet", True, None),
]


@pytest.fixture
def digits_folder(tmp_path):
    """A saved rsft checkpoint of DigitsNet (width 8): the pretrained weights of the exploit."""
    clf = load_classifier("rsft.tasks.digits:DigitsNet", 10, kwargs={"width": 8})
    return save_classifier(clf, tmp_path / "model", CLASSES)


def rewrite_config(folder: Path, **changes) -> Path:
    file = folder / "rsft_model.json"
    meta = json.loads(file.read_text())
    meta.update(changes)
    file.write_text(json.dumps(meta))
    return folder


def hostile(kwargs: dict | None, marker: Path) -> dict:
    kwargs = {"width": 8} if kwargs is None else kwargs
    return {k: v.format(marker=marker) if isinstance(v, str) else v for k, v in kwargs.items()}


@pytest.mark.parametrize("case", MODEL_FOLDER_CASES, ids=lambda c: c.id)
def test_model_folder_names_only_trusted_module_classes(case, digits_folder, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.delitem(sys.modules, "security_models", raising=False)
    marker = tmp_path / "pwned"
    rewrite_config(digits_folder, **{"class": case.names, "kwargs": hostile(case.kwargs, marker)})

    if case.error is None:
        clf = load_classifier(str(digits_folder), 10, trust_remote_code=case.trust)
        assert clf.source["class"] == case.names
        assert clf.logits({"pixels": torch.zeros(2, 64)}).shape == (2, 10)
    else:
        with pytest.raises(ValueError, match=case.error):
            load_classifier(str(digits_folder), 10, trust_remote_code=case.trust)
        if not case.trust:  # an outside module is refused before its code is imported
            assert "security_models" not in sys.modules
    assert not marker.exists()


def test_model_folder_config_fields_are_checked(digits_folder):
    rewrite_config(digits_folder, num_labels="ten")
    with pytest.raises(ValueError, match=r'rsft_model\.json is not an rsft model config: "num_'):
        load_classifier(str(digits_folder), 10)


def test_saved_run_of_an_outside_class_needs_the_opt_in_again(tmp_path, monkeypatch):
    """A model trained from your own import path saves a folder naming it: sharing that folder
    must not let it run code on someone else's machine, so loading it back needs the opt-in."""
    monkeypatch.syspath_prepend(str(HERE))
    clf = load_classifier("security_models:OutsideNet", 10, kwargs={"width": 8})
    folder = save_classifier(clf, tmp_path / "model", CLASSES)
    with pytest.raises(ValueError, match="needs this option to be loaded again"):
        load_classifier(str(folder), 10)
    assert load_classifier(str(folder), 10, trust_remote_code=True).source["class"] == (
        "security_models:OutsideNet"
    )


# --------------------------------------------------------------------------- transformers folders

CUSTOM_CODE = """
from pathlib import Path

Path({marker!r}).touch()  # what a hostile folder would do instead

import torch
from transformers import PretrainedConfig, PreTrainedModel


class TinyConfig(PretrainedConfig):
    model_type = "rsft_tiny_custom"

    def __init__(self, hidden=4, **kwargs):
        self.hidden = hidden
        super().__init__(**kwargs)


class TinyModel(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config):
        super().__init__(config)
        self.body = torch.nn.Linear(4, config.hidden)
        self.classifier = torch.nn.Linear(config.hidden, config.num_labels)
        self.post_init()

    def forward(self, features):
        return self.classifier(self.body(features))
"""

AUTO_MAP = {
    "AutoConfig": "custom.TinyConfig",
    "AutoModelForSequenceClassification": "custom.TinyModel",
}


@dataclass(frozen=True)
class TransformersCase:
    id: str
    model_type: str
    trust: bool
    error: str | None
    runs_code: bool


TRANSFORMERS_CASES = [
    TransformersCase(
        "custom-type",
        "rsft_tiny_custom",
        False,
        r"asks to run its own code \(auto_map.*model\.trust_remote_code: true",
        False,
    ),
    TransformersCase("custom-type-opted-in", "rsft_tiny_custom", True, None, True),
    TransformersCase("known-type", "bert", False, None, False),
]


def custom_code_folder(folder: Path, model_type: str, marker: Path) -> Path:
    """A transformers folder whose config.json asks for the code beside it (auto_map)."""
    from safetensors.torch import save_file
    from transformers import BertConfig, BertForSequenceClassification

    folder.mkdir()
    (folder / "custom.py").write_text(CUSTOM_CODE.format(marker=str(marker)))
    if model_type == "bert":
        config = BertConfig(
            vocab_size=30,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=8,
            num_labels=2,
        )
        BertForSequenceClassification(config).save_pretrained(folder)
        meta = json.loads((folder / "config.json").read_text())
    else:
        meta = {"model_type": model_type, "hidden": 4, "num_labels": 2}
        weights = {
            "body.weight": torch.zeros(4, 4),
            "body.bias": torch.zeros(4),
            "classifier.weight": torch.zeros(2, 4),
            "classifier.bias": torch.zeros(2),
        }
        save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    meta["auto_map"] = AUTO_MAP
    (folder / "config.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("case", TRANSFORMERS_CASES, ids=lambda c: c.id)
def test_transformers_folder_runs_its_code_only_when_trusted(case, tmp_path, monkeypatch):
    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    marker = tmp_path / "ran"
    folder = custom_code_folder(tmp_path / "model", case.model_type, marker)
    if case.error is None:
        clf = load_classifier(str(folder), 3, trust_remote_code=case.trust)
        assert clf.is_transformers
        expected = "TinyModel" if case.runs_code else "BertForSequenceClassification"
        assert type(clf.model).__name__ == expected
    else:
        with pytest.raises(ValueError, match=case.error):
            load_classifier(str(folder), 3, trust_remote_code=case.trust)
    assert marker.exists() == case.runs_code


# --------------------------------------------------------------------------- end to end


def write_digits_table(path: Path, n: int = 20) -> str:
    rng = np.random.default_rng(0)
    cols = {"pixels": rng.normal(size=(n, 64)).astype("float32").tolist()}
    cols["label"] = (np.arange(n) % 10).tolist()
    Dataset.from_dict(cols).to_parquet(str(path))
    return str(path)


def test_train_on_the_exploit_folder_exits_2_and_runs_nothing(
    digits_folder, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    marker = tmp_path / "pwned"
    rewrite_config(digits_folder, **{"class": "subprocess:run", "kwargs": hostile(SHELL, marker)})
    argv = [
        "train",
        f"model.path={digits_folder}",
        f"data.train={write_digits_table(tmp_path / 'train.parquet')}",
        "data.feature_columns=[pixels]",
        "epochs=1",
        "progress=false",
        f"output_dir={tmp_path / 'run'}",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "'subprocess:run'" in err and "model.trust_remote_code: true" in err
    assert not marker.exists()
    # Opting in does not make a function a model: it is still never called.
    assert main([*argv, "model.trust_remote_code=true"]) == 2
    assert "not a torch.nn.Module subclass" in capsys.readouterr().err
    assert not marker.exists()


# --------------------------------------------------------------------------- verifiers

TIMEOUT = 3.0  # seconds: long enough for a normal answer on a busy machine, short for a test
TIMED_OUT = "TimeoutError: scoring took longer than 3 s"
TOWER = r"$\frac{1}{9^{9^{9^{9}}}}$"


@dataclass(frozen=True)
class VerifierCase:
    id: str
    completion: str
    reference: str | None
    reward: float | None  # None: the candidate fails, with `error`
    error: str | None = None  # a regex the recorded error matches


MATH_VERIFY_CASES = [
    VerifierCase("tower-completion", TOWER, "1", None, TIMED_OUT),
    VerifierCase("tower-reference", "1", "9^9^9^9", None, TIMED_OUT),
    VerifierCase("equal-fraction", r"$\frac{1}{2}$", "0.5", 1.0),
    VerifierCase("boxed", r"\boxed{0.5}", r"$\frac12$", 1.0),
    VerifierCase("wrong", "0.25", "0.5", 0.0),
    VerifierCase("no-reference", "1", "", None, "cannot parse the reference"),
]
FUNCTION_CASES = [
    VerifierCase("function-hangs", "hang", "1", None, TIMED_OUT),
    VerifierCase("function-exits", "exit", "1", None, r"worker process died \(exit code 3\)"),
    VerifierCase("function-raises", "raise", "1", None, "KeyError: 'a verifier bug'"),
    VerifierCase("function-normal", "7", "7", 1.0),
]
VERIFIER_CASES = [("math_verify", c) for c in MATH_VERIFY_CASES] + [
    ("function", c) for c in FUNCTION_CASES
]


@pytest.fixture(scope="module")
def scored():
    """Each verifier scores its cases once, all in one call, as a round would."""
    from rsft.generation.scoring.verifiers import function_verifier, math_verify_match, score

    pytest.importorskip("math_verify")
    sys.path.insert(0, str(HERE))
    try:
        verifiers = {
            "math_verify": (math_verify_match(), MATH_VERIFY_CASES),
            "function": (function_verifier("security_verifiers:hostile"), FUNCTION_CASES),
        }
        results = {}
        for kind, (verifier, cases) in verifiers.items():
            completions = [c.completion for c in cases]
            references = [c.reference for c in cases]
            result = score(
                verifier, ["q"] * len(cases), completions, references, workers=2, timeout=TIMEOUT
            )
            results[kind] = {c.id: (r, e) for c, r, e in zip(cases, result.rewards, result.errors)}
            results[kind]["timeouts"] = result.timeouts
    finally:
        sys.path.remove(str(HERE))
    return results


@pytest.mark.parametrize(("kind", "case"), [pytest.param(k, c, id=c.id) for k, c in VERIFIER_CASES])
def test_scoring_is_bounded_and_normal_answers_score_right(kind, case, scored):
    reward, error = scored[kind][case.id]
    assert reward == case.reward
    if case.error is None:
        assert error is None
    else:
        assert re.search(case.error, error), error


@pytest.mark.parametrize(
    ("kind", "cases"),
    [("math_verify", MATH_VERIFY_CASES), ("function", FUNCTION_CASES)],
    ids=["math_verify-timeouts", "function-timeouts"],
)
def test_timeouts_are_counted(kind, cases, scored):
    assert scored[kind]["timeouts"] == sum(c.error == TIMED_OUT for c in cases)


def test_a_round_with_a_hostile_answer_goes_on_and_counts_it(tmp_path):
    """The pipeline's score stage: the tower fails (timed out, recorded in the round's files),
    the other candidates are scored and accepted as usual."""
    from rsft.config import from_dict
    from rsft.generation.config import RFTConfig
    from rsft.generation.pipeline import RFTPipeline

    pytest.importorskip("math_verify")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")  # checked, never loaded here
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "1/2 = ?", "answer": "0.5"}) + "\n")
    cfg = from_dict(
        RFTConfig,
        {
            "model": {"path": str(tmp_path / "model")},
            "data": {"train": str(prompts), "eval": str(prompts)},
            "verifier": {"kind": "math_verify", "timeout": TIMEOUT, "workers": 2},
            "output_dir": str(tmp_path / "run"),
            "progress": False,
        },
    )
    answers = [r"$\frac{1}{2}$", TOWER, "0.5", "0.25"]
    rows = [
        {"prompt": "1/2 = ?", "reference": "0.5", "prompt_id": 0, "completion": a} for a in answers
    ]
    stats = RFTPipeline(cfg).score_and_select(1, rows)
    assert (stats["failed"], stats["timeouts"], stats["accepted"]) == (1, 1, 2)
    assert "1 of them timed out" in stats["failures"]
    saved = [json.loads(x) for x in (tmp_path / "run" / "round_1" / "generations.jsonl").open()]
    assert [r["reward"] for r in saved] == [1.0, None, 1.0, 0.0]
    assert saved[1]["error"] == TIMED_OUT


@pytest.mark.parametrize(
    "value",
    [0, -1, float("nan"), float("inf")],
    ids=["timeout-0", "timeout-negative", "timeout-nan", "timeout-inf"],
)
def test_verifier_timeout_must_be_positive_seconds(value):
    from rsft.config import ConfigError
    from rsft.generation.config import VerifierConfig

    with pytest.raises(ConfigError, match=r"verifier\.timeout must be a number of seconds > 0"):
        VerifierConfig(timeout=value)


def test_a_verifier_a_worker_cannot_import_is_refused_with_a_fix():
    from rsft.generation.scoring.verifiers import SampleVerifier, score

    local = SampleVerifier(lambda p, c, r: 1.0, "a lambda")
    with pytest.raises(ValueError, match="need its function by import path.*timeout=None"):
        score(local, ["q"], ["1"], ["1"], timeout=TIMEOUT)
    assert score(local, ["q"], ["1"], ["1"]).rewards == [1.0]  # no limit: in this process


# --------------------------------------------------------------------------- saved files

FILE_MODE_CASES = [("train-022", 0o022, 0o644), ("train-027", 0o027, 0o640)]


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def modes(folder: Path) -> dict[str, str]:
    return {p.name: oct(p.stat().st_mode & 0o777) for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize(
    ("case", "mask", "mode"), FILE_MODE_CASES, ids=[c[0] for c in FILE_MODE_CASES]
)
def test_saved_model_and_results_get_the_umask_mode(case, mask, mode, tmp_path, umask, capsys):
    umask(mask)
    out = tmp_path / "run"
    argv = [
        "train",
        "model.path=rsft.tasks.digits:DigitsNet",
        "model.kwargs={width: 4}",
        f"data.train={write_digits_table(tmp_path / 'train.parquet')}",
        "data.feature_columns=[pixels]",
        "epochs=1",
        "progress=false",
        f"output_dir={out}",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    expected = oct(mode)
    assert modes(out / "model") == {"model.safetensors": expected, "rsft_model.json": expected}
    assert modes(out)["results.json"] == expected


def test_saved_transformers_model_gets_the_umask_mode(tmp_path, umask):
    from transformers import BertConfig, BertForSequenceClassification

    umask(0o022)
    config = BertConfig(
        vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=8, num_labels=2,
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(tmp_path / "bert")
    clf = load_classifier(str(tmp_path / "bert"), 3)
    saved = save_classifier(clf, tmp_path / "saved", ["a", "b", "c"])
    assert set(modes(saved).values()) == {"0o644"}


def test_the_round_table_reports_timeouts():
    from rsft.generation.report import format_rounds
    from rsft.generation.results import (
        EngineSummary,
        HeldOutEval,
        RFTResult,
        RoundResult,
        RoundSelection,
    )

    evals = HeldOutEval(4, 0.25, 0, 0, 3.0, distinct_n=2, distinct=0.5)
    row = {"candidates": 8, "accepted": 2, "kept": 2, "prompts_kept": 1, "prompts": 4}

    def selection(failed: int, timeouts: int) -> RoundSelection:
        return RoundSelection(**row, failed=failed, timeouts=timeouts, failures="", distinct=0.5,
                              rule={})  # fmt: skip

    rounds = [
        RoundResult(1, selection(2, 1), evals, evals),
        RoundResult(2, selection(1, 1), evals, evals),
    ]
    table = format_rounds(RFTResult("0", "base", evals, rounds, "m", {}, EngineSummary("x")))
    assert "3 candidate(s) failed to score, 2 of them past verifier.timeout" in table
