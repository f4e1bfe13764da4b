"""What ``rsft rft`` logs per round, from its typed results: the selection's counts, the
rule's own statistics (ESS, violations, expected acceptance where the rule has them) and
the held-out evaluations before and after the round's fine-tuning.

Read through the records' file keys (``pass@1``, ``pass@4``, ``distinct_2``), so a figure
added to a results file is logged without a change here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rsft.tracking.base import numbers

if TYPE_CHECKING:
    from rsft.generation.results import HeldOutEval, RoundResult

# The selection's figures of a round (selection.json's keys), logged as selection/<key>.
SELECTION_KEYS = (
    "candidates",
    "prompts",
    "failed",
    "timeouts",
    "accepted",
    "kept",
    "prompts_kept",
    "distinct_n",
    "control",
)


def held_out_metrics_of(evaluation: HeldOutEval, prefix: str) -> dict[str, float]:
    """``<prefix>/pass@1``, ``<prefix>/pass@<k>``, ``<prefix>/distinct_<n>``, ... of one
    held-out evaluation; pass@1 per group as ``<prefix>/pass@1_by_group/<group>``."""
    out = {f"{prefix}/{k}": v for k, v in numbers(evaluation).items()}
    for key, value in evaluation.items():
        if isinstance(value, Mapping):
            out.update({f"{prefix}/{key}/{g}": v for g, v in numbers(value).items()})
    return out


def rft_round_metrics(round_result: RoundResult) -> dict[str, float]:
    """One round's figures, to log at step = the round's number: ``selection/*`` (candidates,
    accepted, kept, prompts_kept, acceptance_rate = accepted / candidates, ...), ``rule/*``
    (the rule's statistics: ess, violations, expected_acceptance, mean_reward, ...),
    ``before/*`` and ``after/*`` (pass@1, pass@k, distinct-n of the model before and after
    the round's fine-tuning) and ``control/*`` (the random control's, when it ran)."""
    r = round_result
    selection = {k: r[k] for k in SELECTION_KEYS if k in r}
    if r["candidates"]:
        selection["acceptance_rate"] = r["accepted"] / r["candidates"]
    out: dict[str, Any] = {f"selection/{k}": v for k, v in numbers(selection).items()}
    out.update({f"rule/{k}": v for k, v in numbers(r["rule"]).items()})
    out.update(held_out_metrics_of(r.before, "before"))
    out.update(held_out_metrics_of(r.after, "after"))
    if r.control_eval is not None:
        out.update(held_out_metrics_of(r.control_eval, "control"))
    return out
