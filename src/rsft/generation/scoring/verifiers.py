"""Verifiers: the reward r(x, y) that tilts the generator, p(y|x) ∝ q(y|x) · exp(r/β).

A verifier is any callable ``(prompts, completions, references) -> rewards``, one float per
candidate. Rule verifiers (numeric, regex, math-verify, a user function) are written once as a
per-sample function and wrapped in :class:`SampleVerifier`; a reward model scores whole batches.

:func:`score` runs a verifier over a round's candidates and never stops on an error: one
malformed completion (or reference) must not throw away the thousands of generations around
it, so failures are recorded per sample in a :class:`ScoreResult` and are never accepted.
With a ``timeout``, per-sample verifiers run in worker processes that are killed when one
candidate takes too long (:mod:`rsft.generation.scoring.timed_pool`): a hostile answer such as
``\frac{1}{9^{9^{9^{9}}}}`` costs one failed candidate, not the run.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import pickle
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from rsft.generation.scoring.reward_model import RewardModelVerifier
from rsft.generation.scoring.timed_pool import TIMED_OUT, TimedPool
from rsft.generation.scoring.timed_pool import error_text as _error_text
from rsft.imports import import_object
from rsft.progress import progress_bar

Verifier = Callable[[list[str], list[str], list[str | None]], list[float]]
SampleFn = Callable[[str, str, str | None], float]

# The last number: "1,234.5" (thousands groups of exactly three digits), "-3", "0.25", ".5".
# A minus counts as a sign only where it does not follow a word character ("3-5" -> "5").
_NUMBER = re.compile(
    r"(?:(?<![\w.])-)?(?:\d{1,3}(?:,\d{3})+(?![\d,])(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
)


@dataclass
class ScoreResult:
    """One reward per candidate; ``None`` (with its error message) where scoring failed.

    ``timeouts`` counts the failures that ran past the time limit (their worker was killed).
    """

    rewards: list[float | None]
    errors: list[str | None]
    timeouts: int = 0

    @property
    def n_failed(self) -> int:
        return sum(r is None for r in self.rewards)

    def summary(self, examples: int = 3) -> str:
        """A one-line account of the failures for logs ("" when none failed)."""
        failed = [(i, e) for i, e in enumerate(self.errors) if e is not None]
        if not failed:
            return ""
        shown = "; ".join(f"#{i}: {e}" for i, e in failed[:examples])
        timed = f", {self.timeouts} of them timed out" if self.timeouts else ""
        return (
            f"{len(failed)} of {len(self.rewards)} candidates could not be scored{timed} ({shown})"
        )


class SampleVerifier:
    """A verifier from a per-sample function ``fn(prompt, completion, reference) -> float``.

    :func:`score` calls ``fn`` directly, sample by sample (in threads or worker processes), so
    a failure costs one sample; calling the verifier itself maps ``fn`` over the lists.
    ``recipe`` (a verifier kind and its options, as :func:`make_verifier` takes them) lets a
    worker process build the same verifier when ``fn`` cannot be sent to it (a closure).
    """

    batched = False

    def __init__(self, fn: SampleFn, name: str, recipe: tuple[str, dict] | None = None):
        self.fn = fn
        self.name = name
        self.recipe = recipe

    def __call__(
        self, prompts: list[str], completions: list[str], references: list[str | None]
    ) -> list[float]:
        return [float(self.fn(p, c, r)) for p, c, r in zip(prompts, completions, references)]

    def __repr__(self) -> str:
        return f"SampleVerifier({self.name})"


def _need_reference(reference: str | None, verifier: str) -> str:
    if reference is None:
        raise ValueError(f"the {verifier} verifier needs a reference answer; this prompt has none")
    return reference


def extract_number(text: str) -> str | None:
    """The last number in ``text``, thousands separators removed ("1,234.5" -> "1234.5").

    The last one because chain-of-thought answers end with the result ("... so 12 + 30 = 42").
    """
    matches = _NUMBER.findall(text)
    return matches[-1].replace(",", "") if matches else None


def _parse_reference_number(reference: str | None) -> float:
    text = _need_reference(reference, "numeric").strip().replace(",", "")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"reference {reference!r} is not a number") from None


def numeric_match(tolerance: float = 1e-6) -> SampleVerifier:
    """1.0 when the completion's last number equals the reference within ``tolerance``, else 0.0.

    A completion without a number scores 0.0 (a wrong answer); a reference that is not a
    number raises, so :func:`score` reports it as a failure instead of a silent 0.
    """
    if not (isinstance(tolerance, numbers.Real) and tolerance >= 0 and math.isfinite(tolerance)):
        raise ValueError(f"numeric tolerance must be a finite number >= 0, got {tolerance!r}.")

    def check(prompt: str, completion: str, reference: str | None) -> float:
        target = _parse_reference_number(reference)
        found = extract_number(completion)
        return float(found is not None and abs(float(found) - target) <= tolerance)

    return SampleVerifier(
        check, f"numeric(tolerance={tolerance:g})", ("numeric", {"tolerance": tolerance})
    )


def _normal_answer(text: str) -> str:
    return text.strip().casefold()


def regex_match(pattern: str, group: int | str = 1) -> SampleVerifier:
    """1.0 when ``group`` of the pattern's last match equals the reference, else 0.0.

    Both sides are compared stripped and casefolded; no match scores 0.0. Example:
    ``regex_match(r"####\\s*(\\S+)")`` for GSM8K-style answers.
    """
    try:
        compiled = re.compile(pattern)
    except (re.error, TypeError) as err:
        raise ValueError(f"regex verifier pattern {pattern!r} does not compile: {err}") from err
    has_group = (
        group in compiled.groupindex
        if isinstance(group, str)
        else isinstance(group, int) and 0 <= group <= compiled.groups
    )
    if not has_group:
        raise ValueError(
            f"regex verifier pattern {pattern!r} has no group {group!r} (it has "
            f"{compiled.groups} numbered group(s), named {sorted(compiled.groupindex)}). "
            "Put the answer in parentheses, or choose group=0 for the whole match."
        )

    def check(prompt: str, completion: str, reference: str | None) -> float:
        target = _normal_answer(_need_reference(reference, "regex"))
        matches = list(compiled.finditer(completion))
        if not matches:
            return 0.0
        answer = matches[-1].group(group)
        return float(answer is not None and _normal_answer(answer) == target)

    return SampleVerifier(
        check,
        f"regex({pattern!r}, group={group!r})",
        ("regex", {"pattern": pattern, "group": group}),
    )


def math_verify_match() -> SampleVerifier:
    """1.0 when math-verify finds the completion's answer equal to the reference (symbolically).

    math-verify's own timeouts are off (``parsing_timeout=None``, ``timeout_seconds=None``):
    they use ``signal.alarm``, which works only in the main thread and cannot stop C code (a
    power tower such as ``9^9^9^9`` hangs inside it). :func:`score` enforces the limit instead,
    by killing the worker process (``verifier.timeout``). A reference math-verify cannot parse
    is a failure.
    """
    try:
        from math_verify import parse, verify
    except ImportError as err:
        raise ImportError(
            "the math_verify verifier needs the math-verify package: pip install math-verify"
        ) from err

    @functools.lru_cache(maxsize=4096)  # k candidates per prompt share one reference
    def parse_reference(reference: str) -> list:
        gold = parse(reference, parsing_timeout=None)
        if not gold:
            raise ValueError(f"math-verify cannot parse the reference {reference!r}")
        return gold

    def check(prompt: str, completion: str, reference: str | None) -> float:
        gold = parse_reference(_need_reference(reference, "math_verify"))
        answer = parse(completion, parsing_timeout=None)
        return float(bool(answer) and verify(gold, answer, timeout_seconds=None))

    return SampleVerifier(check, "math_verify", ("math_verify", {}))


def function_verifier(path: str) -> SampleVerifier:
    """The user's ``fn(prompt, completion, reference) -> float`` named by import path.

    Named, never eval'd: the config names the code it runs (docs/security.md), and a worker
    process can import the same function by its path.
    """
    fn = import_object(path, "verifier function")
    if not callable(fn):
        raise ValueError(
            f"verifier function {path!r} is a {type(fn).__name__}, not callable. It must be "
            "fn(prompt: str, completion: str, reference: str | None) -> float."
        )
    return SampleVerifier(fn, path, ("function", {"path": path}))


VERIFIERS: dict[str, Callable[..., Verifier]] = {
    "numeric": numeric_match,
    "regex": regex_match,
    "math_verify": math_verify_match,
    "function": function_verifier,
    "reward_model": RewardModelVerifier,
}


def make_verifier(kind: str, **options: Any) -> Verifier:
    """Build a verifier by name, as a config names it: ``make_verifier("regex", pattern=...)``."""
    if kind not in VERIFIERS:
        raise ValueError(f"unknown verifier {kind!r}: choose one of {', '.join(VERIFIERS)}.")
    factory = VERIFIERS[kind]
    signature = inspect.signature(factory)
    try:
        signature.bind(**options)
    except TypeError as err:
        accepted = [
            f"{name}" + ("" if p.default is inspect.Parameter.empty else f"={p.default!r}")
            for name, p in signature.parameters.items()
        ]
        raise ValueError(
            f"verifier {kind!r}: {err}. Its options are: {', '.join(accepted) or 'none'}."
        ) from None
    return factory(**options)


# --------------------------------------------------------------------------- scoring


def _as_reward(value: Any) -> float:
    """A finite float from what a verifier returned, or an error saying what was wrong."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if not isinstance(value, numbers.Real):  # bool and numpy scalars are Real
        raise TypeError(f"the verifier returned {type(value).__name__} {value!r:.60}, not a number")
    reward = float(value)
    if not math.isfinite(reward):
        raise ValueError(f"the verifier returned a non-finite reward ({reward})")
    return reward


def _checked_rewards(recipe: tuple[str, dict] | None, fn: SampleFn | None) -> SampleFn:
    """Inside a worker process: the verifier's per-sample function, returning checked rewards."""
    if recipe is not None:
        fn = make_verifier(recipe[0], **recipe[1]).fn  # type: ignore[attr-defined]
    assert fn is not None
    return lambda p, c, r: _as_reward(fn(p, c, r))


def _timed_pool(verifier: SampleVerifier, workers: int, timeout: float) -> TimedPool:
    recipe = getattr(verifier, "recipe", None)
    build = functools.partial(_checked_rewards, recipe, None if recipe else verifier.fn)
    try:
        return TimedPool(build, workers=workers, timeout=timeout)
    except (pickle.PicklingError, AttributeError, TypeError) as err:
        raise ValueError(
            f"score(timeout={timeout}) runs {verifier!r} in worker processes, which need its "
            "function by import path (a module-level function, or function_verifier("
            f"'pkg.module:fn')); this one cannot be sent ({err}). Or pass timeout=None."
        ) from err


def score(
    verifier: Verifier,
    prompts: Sequence[str],
    completions: Sequence[str],
    references: Sequence[str | None] | None = None,
    *,
    workers: int = 1,
    batch_size: int = 64,
    progress: bool = False,
    timeout: float | None = None,
) -> ScoreResult:
    """Score every candidate, recording failures instead of raising.

    A :class:`SampleVerifier` (``batched = False``) is applied per sample; an exception fails
    that sample. With ``timeout`` (seconds per candidate) it runs in ``workers`` processes and
    a candidate past the limit fails with a ``TimeoutError`` (counted in ``timeouts``), its
    worker killed and replaced; without, in ``workers`` threads of this process, unbounded.
    Any other verifier (a reward model, a user's batch callable) is called on ``batch_size``
    candidates at a time in this thread, and an exception, or a result of the wrong length,
    fails that batch. A non-numeric or non-finite reward fails its sample either way.
    """
    n = len(completions)
    references = [None] * n if references is None else list(references)
    if not len(prompts) == n == len(references):
        raise ValueError(
            f"score needs one prompt, completion and reference per candidate; got "
            f"{len(prompts)} prompts, {n} completions and {len(references)} references."
        )
    if workers < 1 or batch_size < 1:
        raise ValueError(f"workers and batch_size must be >= 1, got {workers} and {batch_size}.")
    if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a number of seconds > 0 (or None), got {timeout}.")
    rewards: list[float | None] = [None] * n
    errors: list[str | None] = [None] * n
    timeouts = 0
    bar = progress_bar(total=n, desc="score", unit="candidates", show=progress)

    def record(i: int, value: Any) -> None:
        try:
            rewards[i] = _as_reward(value)
        except (TypeError, ValueError) as err:
            errors[i] = _error_text(err)

    per_sample = not getattr(verifier, "batched", True)
    if per_sample and timeout is not None:
        pool = _timed_pool(verifier, workers, timeout)  # type: ignore[arg-type]
        for i, value, error in pool.run(list(zip(prompts, completions, references))):
            timeouts += value is TIMED_OUT
            if error is None:
                rewards[i] = value
            else:
                errors[i] = error
            bar.update()
    elif per_sample:
        fn: SampleFn = verifier.fn  # type: ignore[attr-defined]

        def one(i: int) -> tuple[Any, str | None]:
            try:
                return fn(prompts[i], completions[i], references[i]), None
            except Exception as err:  # a verifier bug or bad sample must not end the round
                return None, _error_text(err)

        pool = ThreadPoolExecutor(workers) if workers > 1 else None
        results = pool.map(one, range(n)) if pool else map(one, range(n))
        for i, (value, error) in enumerate(results):
            if error is None:
                record(i, value)
            else:
                errors[i] = error
            bar.update()
        if pool:
            pool.shutdown()
    else:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            try:
                values = list(
                    verifier(
                        list(prompts[start:stop]),
                        list(completions[start:stop]),
                        references[start:stop],
                    )
                )
                if len(values) != stop - start:
                    raise ValueError(
                        f"the verifier returned {len(values)} rewards for {stop - start} candidates"
                    )
            except Exception as err:
                errors[start:stop] = [_error_text(err)] * (stop - start)
            else:
                for i, value in zip(range(start, stop), values):
                    record(i, value)
            bar.update(stop - start)
    bar.close()
    return ScoreResult(rewards, errors, timeouts)
