"""Evaluation metrics for generated answers: pass@k and distinct-n diversity."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct (Chen et al. 2021).

    ``1 - C(n-c, k) / C(n, k)``, the chance that k of the n samples drawn without replacement
    hold a correct one, computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` so that large n does
    not overflow the binomials.
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"pass_at_k: {name} must be a whole number, got {value!r}.")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got c={c}, n={n}.")
    if not 1 <= k <= n:
        raise ValueError(
            f"pass_at_k: need 1 <= k <= n, got k={k} with n={n} samples; sample at least k "
            "answers per prompt."
        )
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(
    correct: Mapping[str, Sequence[bool]] | Sequence[Sequence[bool]], k: int
) -> float:
    """pass@k averaged over prompts; ``correct`` holds each prompt's per-sample correctness."""
    items = correct.items() if isinstance(correct, Mapping) else enumerate(correct)
    values = []
    for prompt, marks in items:
        marks = list(marks)
        if len(marks) < k:
            raise ValueError(
                f"mean_pass_at_k: prompt {prompt!r} has {len(marks)} samples, fewer than k={k}."
            )
        values.append(pass_at_k(len(marks), sum(bool(m) for m in marks), k))
    if not values:
        raise ValueError("mean_pass_at_k: no prompts to average over.")
    return sum(values) / len(values)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams / all n-grams over whitespace tokens, counted within each text.

    1.0 means no n-gram repeats anywhere in the set; a model that collapses to one answer
    tends to 1/len(texts). 0.0 when no text has n tokens.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"distinct_n: n must be a whole number >= 1, got {n!r}.")
    total, unique = 0, set()
    for text in texts:
        tokens = text.split()
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0
