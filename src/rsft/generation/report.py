"""The per-round summary of an RFT run: a table a person can read (its plot:
:mod:`rsft.plots.rounds`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def format_rounds(results: Mapping[str, Any]) -> str:
    """One row per round: candidates, accepted, kept (unique), pass@1 before → after, pass@k,
    distinct-n of the held-out answers, and the random control's pass@1 when it ran."""
    rounds = results["rounds"]
    base = results["base_eval"]
    k_key = next(
        (k for k in base if k.startswith("pass@") and k[5:].isdigit() and k != "pass@1"), None
    )
    d_key = next(k for k in base if k.startswith("distinct_"))
    control = any("control_eval" in r for r in rounds)
    head = [
        "round",
        "candidates",
        "accepted",
        "kept (unique)",
        "prompts kept",
        "pass@1 before → after",
    ]
    if k_key:
        head.append(f"{k_key} after")
    head.append(f"{d_key.replace('_', '-')} after")
    if control:
        head.append("random control pass@1")
    lines = [
        f"held-out prompts: {base['prompts']}; base model pass@1 {_pct(base['pass@1'])}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---:" for _ in head) + "|",
    ]
    for r in rounds:
        b, a = r["before"], r["after"]
        cells = [
            str(r["round"]),
            str(r["candidates"]),
            f"{r['accepted']} ({r['accepted'] / max(1, r['candidates']):.0%})",
            str(r["kept"]),
            f"{r['prompts_kept']}/{r['prompts']}",
            f"{_pct(b['pass@1'])} → {_pct(a['pass@1'])}",
        ]
        if k_key:
            cells.append(_pct(a.get(k_key)))
        cells.append(f"{a[d_key]:.2f}")
        if control:
            c = r.get("control_eval")
            cells.append(_pct(c["pass@1"]) if c else "-")
        lines.append("| " + " | ".join(cells) + " |")
    failed = sum(r["failed"] for r in rounds)
    timeouts = sum(r.get("timeouts", 0) for r in rounds)
    if failed:
        timed = f", {timeouts} of them past verifier.timeout" if timeouts else ""
        lines.append(f"\n{failed} candidate(s) failed to score{timed} (counted, never accepted).")
    return "\n".join(lines)
