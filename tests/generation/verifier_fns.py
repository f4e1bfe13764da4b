"""Verifier functions named by import path ("verifier_fns:name") in test_verifiers.py."""


def length_reward(prompt, completion, reference):
    return float(len(completion))


def exact(prompt, completion, reference):
    return completion.strip() == reference


def fails_on_x(prompt, completion, reference):
    if "x" in completion:
        raise KeyError("no x allowed")
    return 1.0


def returns_text(prompt, completion, reference):
    return completion


def returns_nan(prompt, completion, reference):
    return float("nan")


NOT_CALLABLE = 3.0
