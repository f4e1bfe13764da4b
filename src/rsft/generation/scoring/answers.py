"""The final answer of a completion, as the verifier reads it: what a majority vote counts.

maj@k (self-consistency) takes, for each prompt, the answer most of its k samples give; it
needs the answer itself, not only whether a sample was right. The built-in verifiers that
read an answer out of the text (``numeric``, ``regex``) say how; the others (``math_verify``,
a function, a reward model) have no answer to count, and maj@k is not reported for them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from rsft.generation.scoring.verifiers import extract_number

Extractor = Callable[[str], "str | None"]


def answer_extractor(kind: str, options: dict[str, Any]) -> Extractor | None:
    """How the verifier ``kind`` (with its config options) reads an answer, or None."""
    if kind == "numeric":
        return _number
    if kind == "regex":
        compiled, group = re.compile(options["pattern"]), options.get("group", 1)

        def last_group(text: str) -> str | None:
            matches = list(compiled.finditer(text))
            answer = matches[-1].group(group) if matches else None
            return None if answer is None else answer.strip().casefold()

        return last_group
    return None


def _number(text: str) -> str | None:
    found = extract_number(text)
    return None if found is None else repr(float(found))  # "42" and "42.0" are one answer


def majority(answers: Sequence[str | None], correct: Sequence[bool]) -> tuple[str | None, bool]:
    """The most frequent answer among one prompt's samples (ties: the one given first) and
    whether it is right; samples without an answer do not vote. ``(None, False)`` when no
    sample gave one."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return None, False
    top = max(votes.values())
    winner = next(a for a in answers if a is not None and votes[a] == top)
    return winner, bool(correct[answers.index(winner)])
