"""A Python callable as the verifier: rsft's per-sample function, or a TRL reward function.

Two signatures are taken:

- rsft's ``fn(prompt, completion, reference) -> float`` (what ``verifier.function`` names);
- TRL's reward function ``fn(completions, **columns) -> list[float | None]`` (``GRPOTrainer``'s
  ``reward_funcs``, e.g. ``trl.rewards.accuracy_reward``): it is called once per candidate
  with the completion in TRL's conversational form (``[[{"role": "assistant", "content":
  ...}]]``), the prompt as ``prompts`` (its chat messages) and the reference answer under the
  name of its column (``data.answer_column``), as TRL passes a data set's columns by name.
  A ``None`` reward ("no reward for this one") fails that candidate: recorded, never accepted.

Scoring runs in worker processes with ``verifier.timeout`` when the function can be sent to
them (a module-level function); one that cannot (a lambda, a closure, a bound method of an
object that does not pickle) runs in threads, with a warning that the time limit does not
apply.
"""

from __future__ import annotations

import inspect
import pickle
import warnings
from collections.abc import Callable
from typing import Any

from rsft.config import ConfigError
from rsft.generation.scoring.verifiers import SampleVerifier

TRL_NAMES = ("completions", "prompts", "completion_ids", "trainer_state", "log_extra")


def is_trl_reward(fn: Callable) -> bool:
    """Whether ``fn`` has TRL's reward-function signature (a ``completions`` parameter)."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "completions" in parameters


class TRLReward:
    """TRL's batch reward function, called per candidate (picklable when ``fn`` is)."""

    def __init__(self, fn: Callable, column: str | None) -> None:
        self.fn, self.column = fn, column

    def __call__(self, prompt: str, completion: str, reference: str | None) -> float:
        columns = {} if self.column is None else {self.column: [reference]}
        out = self.fn(
            completions=[[{"role": "assistant", "content": completion}]],
            prompts=[[{"role": "user", "content": prompt}]],
            **columns,
        )
        if len(out) != 1:
            raise ValueError(f"the reward function returned {len(out)} rewards for 1 completion")
        if out[0] is None:
            raise ValueError("the reward function gave no reward (None) for this completion")
        return out[0]


def _name(fn: Callable) -> str:
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}:{getattr(fn, '__qualname__', type(fn).__name__)}"


def check_trl_columns(fn: Callable, column: str | None) -> None:
    """Refuse a TRL reward function that needs a column the prompts do not pass it."""
    needed = [
        name
        for name, p in inspect.signature(fn).parameters.items()
        if name not in TRL_NAMES
        and p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    missing = [name for name in needed if name != column]
    if missing:
        raise ConfigError(
            f"the reward function {_name(fn)} takes {', '.join(repr(m) for m in missing)}, "
            "a column of the data set in TRL, and rsft passes it the reference answers under "
            f"data.answer_column ({column!r}). Name the answer column {missing[0]!r} (e.g. "
            f"dataset.rename_column({column!r}, {missing[0]!r}) and data.answer_column: "
            f"{missing[0]})."
        )


def callable_verifier(
    fn: Callable, answer_column: str | None, timeout: float | None
) -> tuple[SampleVerifier, float | None]:
    """The verifier for ``fn`` and the time limit its scoring runs under (None: threads)."""
    if not callable(fn):
        raise ConfigError(f"reward: a {type(fn).__name__} is not callable.")
    per_sample: Callable = fn
    if is_trl_reward(fn):
        check_trl_columns(fn, answer_column)
        per_sample = TRLReward(fn, answer_column)
    verifier = SampleVerifier(per_sample, _name(fn))
    if timeout is not None:
        try:
            pickle.dumps(per_sample)
        except (pickle.PicklingError, AttributeError, TypeError) as err:
            warnings.warn(
                f"the reward function {_name(fn)} cannot be sent to worker processes ({err}), "
                "so it scores in threads of this process and verifier.timeout does not apply: "
                "an answer that makes it loop would hang the run. Define it at the top level "
                "of a module to have the time limit.",
                UserWarning,
                stacklevel=3,
            )
            timeout = None
    return verifier, timeout


def describe(fn: Any) -> str:
    """What a run records as ``verifier.function`` for a callable: its module and name."""
    return _name(fn)
