"""The table of a language-model comparison: per arm greedy pass@1, sampled pass@k and
maj@k with their intervals, the paired difference from the baseline, pass@1 per group of
prompts, and under it the design (prompts, seeds, the interval's kind), the smallest
difference it resolves and a warning for differences below it."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rsft.compare.arms import GREEDY, ArmSummary, Estimate, smallest_resolvable
from rsft.compare.paired import ITEMS_ONLY, POWER, Difference


def _cell(e: Estimate | Difference | None, signed: bool = False) -> str:
    if e is None or math.isnan(e.mean):
        return "-"
    f = "{:+.1f}" if signed else "{:.1f}"
    return f"{f.format(100 * e.mean)} [{f.format(100 * e.low)}, {f.format(100 * e.high)}]"


def format_arm_table(summaries: Sequence[ArmSummary], baseline: str) -> str:
    """The markdown table and its notes."""
    first = summaries[0]
    sampled = [m for m in first.metrics if m not in (GREEDY, "pass@1 sampled")]
    groups = sorted({g for s in summaries for g in s.groups})
    head = ["arm", "greedy pass@1", f"Δ pass@1 vs {baseline}"]
    head += [f"{m}" for m in sampled] + [f"Δ {m}" for m in sampled]
    head += [f"pass@1 {g}" for g in groups] + ["trained on"]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for s in summaries:
        cells = [s.arm, _cell(s.metrics.get(GREEDY)), _cell(s.deltas.get(GREEDY), True)]
        cells += [_cell(s.metrics.get(m)) for m in sampled]
        cells += [_cell(s.deltas.get(m), True) for m in sampled]
        cells += [_cell(s.groups.get(g)) for g in groups]
        size = s.extra.get("trained_on")
        cells.append("-" if not size else f"{size:,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + design_notes(summaries, baseline, groups)


def design_notes(summaries: Sequence[ArmSummary], baseline: str, groups: Sequence[str]) -> str:
    """What the intervals cover, the smallest resolvable difference, and the warnings."""
    first = summaries[0]
    seeds, prompts = first.seeds, first.prompts
    kind = next((d.kind for s in summaries for d in s.deltas.values()), ITEMS_ONLY)
    cover = (
        "over the held-out prompts only: with one seed, another seed's runs may differ by more"
        if kind == ITEMS_ONLY
        else "over seeds and held-out prompts"
    )
    notes = [
        f"{prompts} held-out prompts × {seeds} seed(s); values in percent, 95% intervals "
        f"{cover}; Δ is paired by prompt against {baseline}.",
    ]
    res = smallest_resolvable(summaries)
    if not math.isnan(res):
        notes.append(
            f"Smallest difference in greedy pass@1 this design resolves ({POWER:.0%} power): "
            f"{100 * res:.1f} points."
        )
    for s in summaries:
        d = s.deltas.get(GREEDY)
        if d is not None and d.below_resolution:
            notes.append(
                f"Warning: {s.arm} differs from {baseline} by {100 * d.mean:+.1f} points, "
                f"below the {100 * d.resolvable:.1f} this design resolves: these arms are not "
                "told apart here (more held-out prompts or seeds would)."
            )
    if groups:
        notes.append(
            "pass@1 per group: greedy pass@1 on the held-out prompts of each value of "
            "data.group_column."
        )
    notes.append("trained on: the size of the last round's fine-tuning set (mean over seeds).")
    return "\n".join(notes)
