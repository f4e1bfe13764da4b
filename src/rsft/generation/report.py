"""The per-round summary of an RFT run: a table a person can read (its plot:
:mod:`rsft.plots.rounds`)."""

from __future__ import annotations

from rsft.generation.results import RFTResult


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def format_rounds(results: RFTResult) -> str:
    """One row per round: candidates, accepted, kept (unique), pass@1 before → after, pass@k,
    distinct-n of the held-out answers, and the random control's pass@1 when it ran."""
    rounds, base = results.rounds, results.base_eval
    control = any(r.control_eval is not None for r in rounds)
    head = [
        "round",
        "candidates",
        "accepted",
        "kept (unique)",
        "prompts kept",
        "pass@1 before → after",
    ]
    if base.k:
        head.append(f"pass@{base.k} after")
    head.append(f"distinct-{base.distinct_n} after")
    if control:
        head.append("random control pass@1")
    lines = [
        f"held-out prompts: {base.prompts}; base model pass@1 {_pct(base.pass_at_1)}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---:" for _ in head) + "|",
    ]
    for r in rounds:
        s, a = r.selection, r.after
        cells = [
            str(r.round),
            str(s.candidates),
            f"{s.accepted} ({s.accepted / max(1, s.candidates):.0%})",
            str(s.kept),
            f"{s.prompts_kept}/{s.prompts}",
            f"{_pct(r.before.pass_at_1)} → {_pct(a.pass_at_1)}",
        ]
        if base.k:
            cells.append(_pct(a.pass_at_k))
        cells.append(f"{a.distinct:.2f}")
        if control:
            cells.append(_pct(r.control_eval.pass_at_1) if r.control_eval else "-")
        lines.append("| " + " | ".join(cells) + " |")
    failed = sum(r.selection.failed for r in rounds)
    timeouts = sum(r.selection.timeouts for r in rounds)
    if failed:
        timed = f", {timeouts} of them past verifier.timeout" if timeouts else ""
        lines.append(f"\n{failed} candidate(s) failed to score{timed} (counted, never accepted).")
    return "\n".join(lines)
