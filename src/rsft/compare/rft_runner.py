"""``rsft compare`` at the generation level: RFT arms (the base model, plain fine-tuning on
reference solutions, rejection sampling by each rule, a random selection) on the same
prompts, held-out set, generation and fine-tuning budgets and seeds, side by side.

Each arm × seed is an ``rsft rft`` run in ``output_dir/<arm>/seed-<seed>``: a killed compare
resumes it, a finished one is reused when it is the same run
(:func:`rsft.generation.run_state.finished_as`), one of other options starts over. Within a
seed, an arm copies the base model's evaluation and round 1's candidates from an earlier arm
that computed them from the same inputs (:mod:`rsft.generation.shared_stages`), so those are
computed once per seed and the arms differ only in what they do with the same candidates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsft.atomic import read_jsonl
from rsft.compare.arms import per_prompt, summarize_arms
from rsft.compare.arms_table import format_arm_table
from rsft.compare.files import write_results
from rsft.config import ConfigError, check_output_dir, deep_merge, from_dict, replace, to_dict
from rsft.generation.config import RFTConfig, preflight
from rsft.generation.results import HeldOutOutcomes, RFTResult, final_eval_file
from rsft.generation.run_state import DATA_FIELDS, check_same_run, finished_as
from rsft.output_lock import output_lock
from rsft.plots.held_out import plot_coverage, plot_solve_rates
from rsft.progress import say
from rsft.same_run import data_digest, run_identity


@dataclass
class Arm:
    method: str
    seed: int
    cfg: RFTConfig


def _generates(run_cfg: RFTConfig) -> bool:
    return run_cfg.rounds > 0 and run_cfg.train_on != "reference"


def build_rft_runs(cfg: Any) -> list[Arm]:
    """Every (arm, seed) config, validated before any run starts, in the order they run:
    seeds outer, and within a seed the arms that generate first, so the first one evaluates
    the base model and draws the candidates on one engine and the others copy both."""
    runs = []
    for seed in cfg.seeds:
        for method, over in cfg.methods.items():
            d = deep_merge(
                deep_merge(cfg.base, over or {}),
                {"seed": seed, "output_dir": str(Path(cfg.output_dir) / method / f"seed-{seed}")},
            )
            try:
                run_cfg = from_dict(RFTConfig, d)
                preflight(run_cfg)
            except ConfigError as err:
                raise ConfigError(f"method {method!r}: {err}") from err
            runs.append(Arm(method, seed, run_cfg))
    return sorted(runs, key=lambda a: (cfg.seeds.index(a.seed), not _generates(a.cfg)))


def _resumes(run_cfg: RFTConfig) -> bool:
    """Whether the run's folder is empty or holds this same run (killed, to resume); a
    folder holding another run's state is started over."""
    state = Path(run_cfg.output_dir) / "state.json"
    if not state.is_file():
        return True
    try:
        options = run_identity(run_cfg)
        digest = data_digest(run_cfg, DATA_FIELDS)
        check_same_run(json.loads(state.read_text()), options, digest, state.parent)
    except (ConfigError, ValueError, KeyError):
        return False
    return True


def _trained_on(arm: Arm) -> int:
    """How many records the last round fine-tuned on (its accepted.jsonl: the kept
    candidates, the references, or both)."""
    path = Path(arm.cfg.output_dir) / f"round_{arm.cfg.rounds}" / "accepted.jsonl"
    return len(read_jsonl(path)) if arm.cfg.rounds and path.is_file() else 0


def _record(arm: Arm, result: RFTResult, outcomes: HeldOutOutcomes, reused: bool) -> dict:
    means = {name: sum(v) / len(v) for name, v in per_prompt(outcomes).items()}
    return {
        "method": arm.method,
        "seed": arm.seed,
        **means,
        "trained_on": _trained_on(arm),
        "candidates": sum(r.selection.candidates for r in result.rounds),
        "wall_time": sum(result.timings.values()),
        "reused": reused,
        "outcomes": outcomes.to_json(),
    }


def run_rft_compare(cfg: Any) -> dict[str, Any]:
    """Run every arm × seed, then write the table, results and figures of the comparison."""
    if cfg.baseline not in cfg.methods:
        raise ConfigError(
            f"baseline: {cfg.baseline!r} is not one of the methods ({', '.join(cfg.methods)}): "
            "name the arm the others are compared against, e.g. baseline: sft-reference."
        )
    runs = build_rft_runs(cfg)
    for path in [cfg.output_dir, *(a.cfg.output_dir for a in runs)]:
        check_output_dir(path)
    with output_lock(cfg.output_dir, "rsft compare"):
        return _run_arms(cfg, runs)


def _run_arms(cfg: Any, runs: list[Arm]) -> dict[str, Any]:
    from rsft.generation.pipeline import RFTPipeline

    records, outcomes = [], {}
    donors: dict[int, list[Path]] = {}
    for i, arm in enumerate(runs, 1):
        out = Path(arm.cfg.output_dir)
        reused = finished_as(arm.cfg, out)
        say(f"compare {i}/{len(runs)}: {arm.method} seed {arm.seed}" + (" (reused)" * reused))
        if not reused:
            run_cfg = arm.cfg if _resumes(arm.cfg) else replace(arm.cfg, resume="never")
            RFTPipeline(run_cfg, donors=donors.get(arm.seed, [])).run()
        donors.setdefault(arm.seed, []).append(out)
        result = RFTResult.read(out / "results.json")
        o = HeldOutOutcomes.read(final_eval_file(out, arm.cfg.rounds))
        outcomes.setdefault(arm.method, []).append(o)
        records.append(_record(arm, result, o, reused))
        say(f"  {arm.method} seed {arm.seed}: greedy pass@1 {100 * records[-1]['pass@1']:.1f}%")
    outcomes = {m: outcomes[m] for m in cfg.methods}  # the table in the config's order
    summaries = summarize_arms(outcomes, cfg.baseline)
    sizes = {m: [r["trained_on"] for r in records if r["method"] == m] for m in outcomes}
    for s in summaries:
        s.extra["trained_on"] = sum(sizes[s.arm]) / len(sizes[s.arm])
    table = format_arm_table(summaries, cfg.baseline)
    out = Path(cfg.output_dir)
    meta = {"level": "generation", "config": to_dict(cfg), "seeds": cfg.seeds}
    rows = [s.to_row() for s in summaries]
    files = write_results(records, rows, out, meta=meta, table=table)
    files["coverage"] = plot_coverage(outcomes, out / "coverage.png")
    files["solve_rates"] = plot_solve_rates(outcomes, out / "solve_rates.png")
    return {"records": records, "summary": rows, "table": table, "files": files}
