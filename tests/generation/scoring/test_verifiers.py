"""Verifiers score what they claim, and score() turns every kind of failure into a counted one."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from rsft.generation.scoring.verifiers import (
    RewardModelVerifier,
    SampleVerifier,
    ScoreResult,
    extract_number,
    function_verifier,
    make_verifier,
    math_verify_match,
    numeric_match,
    regex_match,
    score,
)

HERE = Path(__file__).resolve().parents[1]  # verifier_fns
FNS = "verifier_fns"  # the helper module beside this file


@pytest.fixture
def fns(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))


def run(verifier, completions, references, **kwargs) -> ScoreResult:
    return score(verifier, ["q"] * len(completions), completions, references, **kwargs)


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("12 + 30 = 42.", "42"),
        ("it cools to -3.5 degrees", "-3.5"),
        ("x = -7", "-7"),
        ("pages 3-5", "5"),
        ("costs $1,234 in total", "1234"),
        ("1,234,567.89", "1234567.89"),
        ("1,2345", "2345"),
        ("the list 1, 2, 3", "3"),
        ("half is .5", ".5"),
        ("a 12 then b 7", "7"),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_number(text, number):
    assert extract_number(text) == number


def test_numeric_match_scores_last_number():
    result = run(
        numeric_match(),
        ["so 42", "it is -3.5", "1,234 apples", "no idea", "42.0000001", "40 then 41"],
        ["42", "-3.5", "1234", "5", "42", "40"],
    )
    assert result.rewards == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    assert result.n_failed == 0 and result.errors == [None] * 6
    assert run(numeric_match(tolerance=0.5), ["41.6"], ["42"]).rewards == [1.0]
    assert run(numeric_match(tolerance=0.1), ["41.6"], ["42"]).rewards == [0.0]


def test_numeric_bad_reference_fails_that_sample_only():
    result = run(numeric_match(), ["42", "42", "42"], ["42", "forty-two", None])
    assert result.rewards == [1.0, None, None]
    assert result.n_failed == 2
    assert result.errors[1] == "ValueError: reference 'forty-two' is not a number"
    assert "needs a reference" in result.errors[2]
    assert result.summary().startswith("2 of 3 candidates could not be scored (#1: ValueError")


def test_numeric_tolerance_validated():
    with pytest.raises(ValueError, match="tolerance must be a finite number >= 0"):
        numeric_match(-1.0)


# --------------------------------------------------------------------------- regex


def test_regex_match_uses_last_match_and_normalises():
    verifier = regex_match(r"####\s*(\S+)")
    result = run(
        verifier,
        ["work #### 42", "#### 41 then #### YES ", "no marker 42", "#### 42"],
        ["42", "yes", "42", "43"],
    )
    assert result.rewards == [1.0, 1.0, 0.0, 0.0]
    named = regex_match(r"answer: (?P<ans>\w+)", group="ans")
    assert run(named, ["answer: Paris"], [" paris "]).rewards == [1.0]
    whole = regex_match(r"\d+", group=0)
    assert run(whole, ["1 and 2"], ["2"]).rewards == [1.0]


@pytest.mark.parametrize(
    ("pattern", "group", "match"),
    [
        ("(", 1, "does not compile"),
        (r"(\d+)", 2, "has no group 2"),
        (r"(\d+)", "ans", "has no group 'ans'"),
    ],
)
def test_regex_bad_pattern_is_clear(pattern, group, match):
    with pytest.raises(ValueError, match=match):
        regex_match(pattern, group)


# --------------------------------------------------------------------------- math-verify


def test_math_verify_equivalent_forms():
    result = run(
        math_verify_match(),
        [r"so $\boxed{\frac{1}{2}}$", r"$\boxed{3}$", "The answer is 1/2", "nothing"],
        ["0.5", "0.5", r"\frac{1}{2}", "0.5"],
    )
    assert result.rewards == [1.0, 0.0, 1.0, 0.0]


def test_math_verify_in_threads_is_safe():
    """Worker threads: math-verify's signal.alarm timeouts would fail every sample here."""
    completions = [rf"$\boxed{{\frac{{{i}}}{{4}}}}$" for i in range(40)]
    references = [str(i / 4) if i % 3 else str(i / 4 + 1) for i in range(40)]
    threaded = run(math_verify_match(), completions, references, workers=4)
    assert threaded.n_failed == 0, threaded.summary()
    assert threaded.rewards == [float(i % 3 != 0) for i in range(40)]
    assert threaded.rewards == run(math_verify_match(), completions, references).rewards


def test_math_verify_unparseable_reference_is_a_failure():
    result = run(math_verify_match(), ["1/2", "1/2"], ["", "0.5"])
    assert result.rewards == [None, 1.0]
    assert "cannot parse the reference" in result.errors[0]


def test_math_verify_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)
    with pytest.raises(ImportError, match="pip install math-verify"):
        math_verify_match()


# --------------------------------------------------------------------------- user function


def test_function_verifier_by_import_path(fns):
    result = run(function_verifier(f"{FNS}:length_reward"), ["a", "abc", ""], None)
    assert result.rewards == [1.0, 3.0, 0.0]
    exact = make_verifier("function", path=f"{FNS}:exact")
    assert run(exact, ["4", " 5 "], ["4", "4"]).rewards == [1.0, 0.0]  # bool -> 1.0 / 0.0


@pytest.mark.parametrize("workers", [1, 3])
def test_raising_function_fails_samples_and_run_continues(fns, workers):
    completions = ["a", "x", "b", "xx", "c"] * 3
    result = run(function_verifier(f"{FNS}:fails_on_x"), completions, None, workers=workers)
    assert result.rewards == [None if "x" in c else 1.0 for c in completions]
    assert result.n_failed == 6
    assert result.errors[1] == "KeyError: 'no x allowed'"


@pytest.mark.parametrize(
    ("name", "error"),
    [("returns_text", "TypeError: the verifier returned str 'abc'"), ("returns_nan", "non-finite")],
)
def test_function_bad_return_is_a_failure(fns, name, error):
    result = run(function_verifier(f"{FNS}:{name}"), ["abc"], None)
    assert result.rewards == [None]
    assert error in result.errors[0]


@pytest.mark.parametrize(
    ("path", "match"),
    [
        (f"{FNS}:NOT_CALLABLE", "is a float, not callable"),
        (f"{FNS}:no_such_fn", "has no 'no_such_fn'"),
        ("no_such_module_for_rsft:fn", "cannot import module"),
    ],
)
def test_function_verifier_bad_path(fns, path, match):
    with pytest.raises(ValueError, match=match):
        function_verifier(path)


# --------------------------------------------------------------------------- make_verifier


def test_make_verifier_kinds_and_options():
    assert isinstance(make_verifier("numeric", tolerance=0.5), SampleVerifier)
    assert run(make_verifier("regex", pattern=r"= (\d+)"), ["1 = 2"], ["2"]).rewards == [1.0]
    with pytest.raises(ValueError, match="unknown verifier 'exact'.*numeric, regex, math_verify"):
        make_verifier("exact")
    with pytest.raises(ValueError, match=r"'numeric'.*'tol'.*options are: tolerance=1e-06"):
        make_verifier("numeric", tol=0.1)
    with pytest.raises(ValueError, match=r"'function'.*missing.*'path'"):
        make_verifier("function")


# --------------------------------------------------------------------------- score


def test_score_preserves_order_with_threads(fns):
    completions = ["a" * (i % 17) for i in range(200)]
    verifier = function_verifier(f"{FNS}:length_reward")
    threaded = run(verifier, completions, None, workers=8, progress=True)
    assert threaded.rewards == [float(i % 17) for i in range(200)]


@pytest.mark.parametrize(
    "make",
    [
        lambda: function_verifier(f"{FNS}:fails_on_x"),
        lambda: numeric_match(),
        lambda: regex_match(r"= (\w+)"),
    ],
    ids=["function", "numeric", "regex"],
)
def test_worker_processes_score_like_threads(fns, make):
    """With a time limit the candidates go to worker processes, many per message: same
    rewards, same errors, same order as scoring in this process."""
    completions = [f"{i} = {'x' * (i % 3)}{i % 7}" for i in range(600)]
    references = [str(i % 5) for i in range(600)]
    in_threads = run(make(), completions, references, workers=2)
    in_processes = run(make(), completions, references, workers=2, timeout=30)
    assert in_processes.rewards == in_threads.rewards
    assert in_processes.errors == in_threads.errors
    assert in_processes.timeouts == 0 and in_threads.n_failed < len(completions)


def test_score_validates_inputs():
    with pytest.raises(ValueError, match="2 prompts, 3 completions and 3 references"):
        score(numeric_match(), ["a", "b"], ["1", "2", "3"], ["1", "2", "3"])
    with pytest.raises(ValueError, match="workers and batch_size must be >= 1"):
        score(numeric_match(), ["a"], ["1"], ["1"], workers=0)
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0"):
        score(numeric_match(), ["a"], ["1"], ["1"], timeout=0)


def test_batched_verifier_failures_are_per_batch():
    calls = []

    def batch_verifier(prompts, completions, references):
        calls.append(len(completions))
        if "boom" in completions:
            raise RuntimeError("model crashed")
        return [math.nan if c == "nan" else float(len(c)) for c in completions]

    completions = ["a", "bb", "boom", "c", "nan", "dd", "e"]
    result = score(batch_verifier, ["q"] * 7, completions, None, batch_size=2)
    assert calls == [2, 2, 2, 1]
    assert result.rewards == [1.0, 2.0, None, None, None, 2.0, 1.0]
    assert result.errors[2] == result.errors[3] == "RuntimeError: model crashed"
    assert "non-finite" in result.errors[4]

    def too_short(prompts, completions, references):
        return [1.0]

    short = score(too_short, ["q"] * 3, ["a", "b", "c"], None, batch_size=2)
    assert short.rewards == [None, None, 1.0]
    assert "returned 1 rewards for 2 candidates" in short.errors[0]


# --------------------------------------------------------------------------- reward model


def _texts():
    prompts = ["1+1=?", "2+2=?", "3+3=?", "1+1=?", "9+9=?"]
    completions = ["2", "4", "six, I think: 3 + 3 = 6", "3", "18"]
    return prompts, completions


def test_reward_model_scores_shape_and_determinism(tiny_reward_model):
    rm = RewardModelVerifier(tiny_reward_model, device="cpu", batch_size=16)
    prompts, completions = _texts()
    rewards = rm(prompts, completions, [None] * 5)
    assert len(rewards) == 5 and all(math.isfinite(r) for r in rewards)
    assert len(set(rewards)) == 5  # a real model, not a constant
    assert rm(prompts, completions, [None] * 5) == rewards
    # Padding is masked: scoring one at a time gives the same rewards as a padded batch.
    one_by_one = RewardModelVerifier(tiny_reward_model, device="cpu", batch_size=1)
    torch.testing.assert_close(one_by_one(prompts, completions), rewards, rtol=0, atol=1e-5)
    via_score = score(make_verifier("reward_model", path=tiny_reward_model), prompts, completions)
    assert via_score.n_failed == 0
    torch.testing.assert_close(via_score.rewards, rewards, rtol=0, atol=1e-5)


def test_reward_model_uses_chat_template(tiny_reward_model):
    from transformers import AutoModelForSequenceClassification

    rm = RewardModelVerifier(tiny_reward_model, device="cpu")
    text = rm.format("1+1=?", "2")
    assert text == "<|im_start|>user\n1+1=?<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n"
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_model).eval()
    with torch.no_grad():
        expected = model(**rm.tokenizer(text, return_tensors="pt")).logits[0, 0].item()
    assert rm(["1+1=?"], ["2"])[0] == pytest.approx(expected, abs=1e-6)


def _with_labels(tiny_reward_model, folder, num_labels):
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    config = AutoConfig.from_pretrained(tiny_reward_model, num_labels=num_labels)
    torch.manual_seed(1)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_reward_model).save_pretrained(folder)
    return model


def test_reward_model_two_labels_is_log_odds(tiny_reward_model, tmp_path):
    model = _with_labels(tiny_reward_model, tmp_path, 2)
    rm = RewardModelVerifier(str(tmp_path), device="cpu")
    prompts, completions = _texts()
    batch = rm.tokenizer(
        [rm.format(p, c) for p, c in zip(prompts, completions)],
        padding=True,
        return_tensors="pt",
        add_special_tokens=False,
    )
    with torch.no_grad():
        logits = model(**batch).logits
    torch.testing.assert_close(rm(prompts, completions), (logits[:, 1] - logits[:, 0]).tolist())


def test_reward_model_errors(tiny_reward_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a transformers model folder"):
        RewardModelVerifier(str(tmp_path / "missing"))
    _with_labels(tiny_reward_model, tmp_path / "three", 3)
    with pytest.raises(ValueError, match="has 3 outputs"):
        RewardModelVerifier(str(tmp_path / "three"))
