"""Wall time of the fine-tuning stage of ``rsft rft`` on 1 and on N processes.

Run from the repository root (after ``rsft prepare arithmetic --out /tmp/arith``):

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python benchmarks/sft_processes.py \\
        --model /tmp/arith/model --prompts /tmp/arith/train.jsonl

(``--records``, ``--epochs``, ``--batch-size``, ``--processes``, ``--repeats``, ``--out`` change
the defaults, ``--wait-quiet`` and ``--retries`` are below; ``--tiny`` swaps in the tests'
2-layer Llama, whose numbers say only what the launch itself costs.)

The records stand in for an ``accepted.jsonl``: the first ``--records`` training prompts with
their correct answers, in the chat format the pipeline writes. Each mode runs the stage as
``RFTPipeline.train`` does, from the model folder to the saved ``out/model``, and is timed
around that call (loading, training, saving; the libraries are already imported, as they are
in the pipeline):

- ``in_process``: ``sft_train`` in this process (``sft.processes: 1``), torch on every core;
- ``launched_1``: ``launch_sft`` with 1 process under ``accelerate launch`` (the shipped
  ``configs/accelerate/ddp.yaml``): the cost of the child command alone;
- ``launched_N``: ``launch_sft`` with ``--processes`` processes (DDP, gloo on CPU), each on
  cores / N threads, with the same global batch.

Modes run round-robin, the order rotating each round; the median of ``--repeats`` rounds is
reported, with the per-step losses of the last round of each mode (the same global batch:
they agree up to float rounding) and the trainer's own ``train_runtime``. Each run also
records its own CPU seconds (this process and its waited-for descendants) and the CPU
seconds the rest of the machine used meanwhile (``/proc/stat`` busy time less its own): on a
shared machine a run with other work beside it is slower, and says so. The medians are given
over all runs and over the quiet ones (others used at most 10% of the run's own CPU time);
``--wait-quiet S`` waits up to S seconds for an idle machine before each run, and
``--retries K`` runs a mode again (up to K times) when its run had company; every attempt is
kept in the results.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

from bench_common import command_line, machine_info  # noqa: E402

from rsft.generation.config import SFTSection  # noqa: E402
from rsft.generation.sft.launch import launch_sft  # noqa: E402
from rsft.generation.sft.train import sft_train  # noqa: E402


def make_records(prompts: Path, n: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in prompts.read_text().splitlines()[:n]]
    return [
        {
            "messages": [
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": str(r["answer"])},
            ]
        }
        for r in rows
    ]


# A run is "quiet" when the rest of the machine used at most this share of its own CPU time.
QUIET = 0.1


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and of every descendant it (or they) waited for: the
    launcher and its workers count here once the launcher has exited."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def wait_until_quiet(limit_s: float, window_s: float = 5.0) -> float:
    """Wait (at most ``limit_s``) for a ``window_s`` in which other work on the machine used
    under a tenth of a core; return the seconds waited."""
    t0 = time.perf_counter()
    while True:
        busy0, own0 = busy_cpu_s(), own_cpu_s()
        time.sleep(window_s)
        other = busy_cpu_s() - busy0 - (own_cpu_s() - own0)
        waited = time.perf_counter() - t0
        if other < 0.1 * window_s or waited >= limit_s:
            return waited


def run_mode(mode: str, args: argparse.Namespace, model: str, data: Path, work: Path) -> dict:
    out = work / mode
    shutil.rmtree(out, ignore_errors=True)
    busy0, own0 = busy_cpu_s(), own_cpu_s()
    common = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": 5e-5, "save_steps": 5}
    t0 = time.perf_counter()
    if mode == "in_process":
        records = [json.loads(line) for line in data.read_text().splitlines()]
        sft_train(model, records, out, SFTSection(**common), seed=0, device="cpu", progress=False)
    else:
        n = 1 if mode == "launched_1" else args.processes
        cfg = SFTSection(
            **common, processes=n, accelerate_config=str(ROOT / "configs/accelerate/ddp.yaml")
        )
        launch_sft(model, [data], out, cfg, seed=0, device="cpu", progress="quiet")
    wall = time.perf_counter() - t0
    own = own_cpu_s() - own0
    other = busy_cpu_s() - busy0 - own  # other work on the machine skews the times
    history = json.loads((out / "sft_history.json").read_text())
    return {
        "wall_s": wall,
        "own_cpu_s": own,
        "other_cpu_s": other,
        "train_runtime_s": history["summary"].get("train_runtime"),
        "losses": [s["loss"] for s in history["steps"]],
        "processes": history["processes"],
        "per_process_batch": history["per_process_batch"],
        "global_batch": history["global_batch"],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="/tmp/arith/model")
    p.add_argument("--prompts", default="/tmp/arith/train.jsonl")
    p.add_argument("--records", type=int, default=128)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each run, wait up to this many seconds for the machine to be idle",
    )
    p.add_argument("--retries", type=int, default=0, help="rerun a run that had company")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/sft_processes.json"))
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="sft_processes_"))
    model = args.model
    if args.tiny:
        sys.path.insert(0, str(ROOT / "tests/generation"))
        from conftest import save_tiny_causal_lm

        model = save_tiny_causal_lm(work / "tiny_lm")
    data = work / "accepted.jsonl"
    records = make_records(Path(args.prompts), args.records)
    data.write_text("".join(json.dumps(r) + "\n" for r in records))

    modes = ["in_process", "launched_1", f"launched_{args.processes}"]
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    started = time.perf_counter()
    for r in range(args.repeats):
        order = modes[r % len(modes) :] + modes[: r % len(modes)]
        for mode in order:
            for _attempt in range(1 + args.retries):  # a run beside other work is run again
                waited = wait_until_quiet(args.wait_quiet) if args.wait_quiet > 0 else 0.0
                result = run_mode(mode, args, model, data, work)
                result["waited_for_quiet_s"] = waited
                runs[mode].append(result)
                if result["other_cpu_s"] <= QUIET * result["own_cpu_s"]:
                    break
            print(
                f"round {r}: {mode}: {result['wall_s']:.1f} s wall, {result['own_cpu_s']:.0f} s "
                f"CPU, other work on the machine {result['other_cpu_s']:.0f} CPU s",
                flush=True,
            )
    summary = {}
    for mode, results in runs.items():
        quiet = [x for x in results if x["other_cpu_s"] <= QUIET * x["own_cpu_s"]]
        summary[mode] = {
            "wall_s_median": statistics.median(x["wall_s"] for x in results),
            "quiet_runs": len(quiet),
            "wall_s_median_quiet": statistics.median(x["wall_s"] for x in quiet) if quiet else None,
            "wall_s": [round(x["wall_s"], 2) for x in results],
            "own_cpu_s": [round(x["own_cpu_s"], 1) for x in results],
            "other_cpu_s": [round(x["other_cpu_s"], 1) for x in results],
            "train_runtime_s_median": statistics.median(x["train_runtime_s"] for x in results),
            "processes": results[-1]["processes"],
            "per_process_batch": results[-1]["per_process_batch"],
            "global_batch": results[-1]["global_batch"],
            "losses": results[-1]["losses"],
        }
    ref = summary["in_process"]["losses"]
    for mode in modes[1:]:
        other = summary[mode]["losses"]
        summary[mode]["max_rel_loss_diff_vs_in_process"] = max(
            abs(a - b) / abs(a) for a, b in zip(ref, other)
        )
    result = {
        "modes": summary,
        "settings": {
            "model": "tiny 2-layer Llama (tests)" if args.tiny else args.model,
            "records": args.records,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "processes": args.processes,
            "repeats": args.repeats,
            "wait_quiet_s": args.wait_quiet,
            "retries": args.retries,
        },
        "machine": machine_info(),
        "total_seconds": time.perf_counter() - started,
        "command": command_line("sft_processes.py", argv),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for mode in modes:
        s = summary[mode]
        quiet = s["wall_s_median_quiet"]
        print(
            f"{mode:>12}: {s['wall_s_median']:6.1f} s wall, quiet runs "
            f"{'-' if quiet is None else f'{quiet:.1f} s'} ({s['quiet_runs']}) "
            f"(train {s['train_runtime_s_median']:.1f} s),"
            f" {s['processes']} x {s['per_process_batch']} per step"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
