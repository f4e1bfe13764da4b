"""The results of an RFT run: one typed record per held-out evaluation, round and run.

Written and read here only: ``eval.json`` (:class:`HeldOutEval`), ``selection.json``
(:class:`RoundSelection`) and ``results.json`` (:class:`RFTResult`, whose rounds are
:class:`RoundResult`). The report, the plot and the CLI read fields; the files keep their
keys (``pass@1``, ``pass@8``, ``distinct_2``), parsed in :meth:`HeldOutEval.from_json` only.
Like the training level's :class:`~rsft.training.results.RunResult`, each record also reads
like a mapping over the keys of its file (``result["rounds"][0]["after"]["pass@1"]``), so
code that loads a results.json and code that holds a result look alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rsft.atomic import atomic_write_text, read_jsonl

_PASS_AT = re.compile(r"pass@(\d+)")
_DISTINCT = re.compile(r"distinct_(\d+)")


class _Record(Mapping):
    """A read-only mapping over the keys a record has in its JSON file."""

    def _items(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self._items()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON values, as its file holds it."""
        return {k: _plain(v) for k, v in self._items().items()}

    def write(self, path: Path) -> None:
        """Write the record atomically (a killed run never leaves half a file)."""
        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_json()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _read(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@dataclass(eq=False)
class HeldOutEval(_Record):
    """One model on the held-out prompts: greedy pass@1 and, with ``eval.k`` > 0, the
    sampled pass@1 and pass@k (unbiased) and maj@k (where the verifier reads an answer),
    the distinct-n of the answers, and greedy pass@1 per group (``data.group_column``)."""

    prompts: int
    pass_at_1: float
    failed: int
    timeouts: int
    mean_length: float
    distinct_n: int  # n of distinct-n
    distinct: float  # distinct-n of the sampled answers (the greedy ones when k = 0)
    k: int = 0
    pass_at_1_sampled: float | None = None
    pass_at_k: float | None = None
    maj_at_k: float | None = None
    groups: dict[str, float] | None = None  # greedy pass@1 per group of prompts

    def _items(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompts": self.prompts,
            "pass@1": self.pass_at_1,
            "failed": self.failed,
            "timeouts": self.timeouts,
            "mean_length": self.mean_length,
        }
        if self.k > 0:
            out["pass@1_sampled"] = self.pass_at_1_sampled
            out[f"pass@{self.k}"] = self.pass_at_k
            if self.maj_at_k is not None:
                out[f"maj@{self.k}"] = self.maj_at_k
        out[f"distinct_{self.distinct_n}"] = self.distinct
        if self.groups is not None:
            out["pass@1_by_group"] = self.groups
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HeldOutEval:
        ks = [int(m[1]) for key in data if (m := _PASS_AT.fullmatch(key)) and m[1] != "1"]
        ns = [int(m[1]) for key in data if (m := _DISTINCT.fullmatch(key))]
        k, n = (ks[0] if ks else 0), ns[0]
        return cls(
            prompts=data["prompts"],
            pass_at_1=data["pass@1"],
            failed=data["failed"],
            timeouts=data.get("timeouts", 0),
            mean_length=data["mean_length"],
            distinct_n=n,
            distinct=data[f"distinct_{n}"],
            k=k,
            pass_at_1_sampled=data.get("pass@1_sampled"),
            pass_at_k=data.get(f"pass@{k}") if k else None,
            maj_at_k=data.get(f"maj@{k}") if k else None,
            groups=data.get("pass@1_by_group"),
        )

    @classmethod
    def read(cls, path: Path) -> HeldOutEval:
        return cls.from_json(_read(path))

    def line(self) -> str:
        """``pass@1 31.2% on 64 held-out prompts``: what the log says of an evaluation."""
        return f"pass@1 {100 * self.pass_at_1:.1f}% on {self.prompts} held-out prompts"


@dataclass(eq=False)
class RoundSelection(_Record):
    """What one round's scoring and acceptance did (``selection.json``)."""

    candidates: int
    prompts: int
    failed: int
    timeouts: int
    failures: str  # the scoring failures, summarised (empty when none)
    accepted: int  # by the rule
    kept: int  # after deduplication and the per-prompt cap: the fine-tuning set
    prompts_kept: int
    distinct: float  # distinct-n of all the round's candidates
    rule: dict[str, Any]  # the rule's own statistics (:class:`~.selection.Selection`)
    control: int | None = None  # the random control's size, when it ran

    def _items(self) -> dict[str, Any]:
        out = {
            "candidates": self.candidates,
            "prompts": self.prompts,
            "failed": self.failed,
            "timeouts": self.timeouts,
            "failures": self.failures,
            "accepted": self.accepted,
            "kept": self.kept,
            "prompts_kept": self.prompts_kept,
            "distinct_n": self.distinct,
            "rule": self.rule,
        }
        if self.control is not None:
            out["control"] = self.control
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoundSelection:
        return cls(
            candidates=data["candidates"],
            prompts=data["prompts"],
            failed=data["failed"],
            timeouts=data.get("timeouts", 0),
            failures=data.get("failures", ""),
            accepted=data["accepted"],
            kept=data["kept"],
            prompts_kept=data["prompts_kept"],
            distinct=data["distinct_n"],
            rule=data["rule"],
            control=data.get("control"),
        )

    @classmethod
    def read(cls, path: Path) -> RoundSelection:
        return cls.from_json(_read(path))

    def line(self) -> str:
        """``kept 23 of 512 candidates`` (``trained on 128 reference solutions``)."""
        if self.rule.get("rule") == "reference":
            return f"trained on {self.kept} reference solutions"
        return f"kept {self.kept} of {self.candidates} candidates"


@dataclass(eq=False)
class RoundResult(_Record):
    """One round: its selection, the held-out evaluation before and after its fine-tuning,
    and the random control's evaluation when it ran."""

    round: int
    selection: RoundSelection
    before: HeldOutEval
    after: HeldOutEval
    control_eval: HeldOutEval | None = None

    def _items(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "round": self.round,
            **self.selection._items(),
            "before": self.before,
            "after": self.after,
        }
        if self.control_eval is not None:
            out["control_eval"] = self.control_eval
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoundResult:
        control = data.get("control_eval")
        return cls(
            round=data["round"],
            selection=RoundSelection.from_json(data),
            before=HeldOutEval.from_json(data["before"]),
            after=HeldOutEval.from_json(data["after"]),
            control_eval=HeldOutEval.from_json(control) if control else None,
        )


@dataclass(eq=False)
class EngineSummary(_Record):
    """Which backend generated, and what its engines cost."""

    backend: str  # vllm or transformers
    starts_s: list[float] = field(default_factory=list)
    adapter_loads_s: list[float] = field(default_factory=list)
    model_reload: str = "restart"  # lora: each round's model an adapter on running engines

    @classmethod
    def of(cls, pool: Any) -> EngineSummary:
        """What an :class:`~rsft.generation.engines.pool.EnginePool` did in a run."""
        return cls(
            backend="vllm" if pool.vllm else "transformers",
            starts_s=pool.starts,
            adapter_loads_s=pool.adapter_loads,
            model_reload="lora" if pool.lora else "restart",
        )

    def _items(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "starts_s": self.starts_s,
            "adapter_loads_s": self.adapter_loads_s,
            "model_reload": self.model_reload,
        }


@dataclass(eq=False)
class RFTResult(_Record):
    """A whole run (``results.json``); ``table`` (the summary printed and saved as
    summary.md) is returned by the pipeline but not written into the file."""

    rsft_version: str
    base_model: str
    base_eval: HeldOutEval
    rounds: list[RoundResult]
    final_model: str
    timings: dict[str, float]
    engine: EngineSummary
    table: str | None = None

    def _items(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rsft_version": self.rsft_version,
            "base_model": self.base_model,
            "base_eval": self.base_eval,
            "rounds": self.rounds,
            "final_model": self.final_model,
            "timings": self.timings,
            "engine": self.engine,
        }
        if self.table is not None:
            out["table"] = self.table
        return out

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out.pop("table", None)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RFTResult:
        engine = data.get("engine") or {"backend": "transformers"}
        return cls(
            rsft_version=data["rsft_version"],
            base_model=data["base_model"],
            base_eval=HeldOutEval.from_json(data["base_eval"]),
            rounds=[RoundResult.from_json(r) for r in data["rounds"]],
            final_model=data["final_model"],
            timings=dict(data.get("timings", {})),
            engine=EngineSummary(**engine),
        )

    @classmethod
    def read(cls, path: Path) -> RFTResult:
        return cls.from_json(_read(path))


@dataclass(eq=False)
class HeldOutOutcomes:
    """Per held-out prompt, in the prompts' order: what a comparison pairs two arms on.

    Read from a model's ``eval_generations.jsonl``: the greedy answer's correctness, and
    with ``eval.k`` > 0 how many of the ``samples`` sampled answers were right and whether
    the majority answer was (None where the verifier reads no answer); the prompt's group
    where ``data.group_column`` names one.
    """

    prompt_ids: list[str]
    correct: list[bool]
    samples: int = 0
    sampled_correct: list[int] | None = None
    majority_correct: list[bool] | None = None
    groups: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def read(cls, path: Path) -> HeldOutOutcomes:
        rows = read_jsonl(path)
        first = rows[0] if rows else {}

        def column(key: str) -> list | None:
            return [r[key] for r in rows] if key in first else None

        return cls(
            prompt_ids=[r["prompt_id"] for r in rows],
            correct=[bool(r["correct"]) for r in rows],
            samples=int(first.get("sampled", 0)),
            sampled_correct=column("sampled_correct"),
            majority_correct=column("majority_correct"),
            groups=column("group"),
        )


def final_eval_file(run_dir: Path, rounds: int) -> Path:
    """The per-prompt file of a run's final model: the last round's, or the base model's."""
    return Path(run_dir) / f"round_{rounds}" / "eval_generations.jsonl"
