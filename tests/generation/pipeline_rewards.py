"""Reward functions the pipeline tests name by import path."""


def digit_share(prompt: str, completion: str, reference: str | None) -> float:
    """The share of digits in the completion: a graded reward an untrained LM can earn."""
    return sum(ch.isdigit() for ch in completion) / max(1, len(completion))


def always_fails(prompt: str, completion: str, reference: str | None) -> float:
    """A verifier with a bug: every call raises."""
    raise KeyError("score")
