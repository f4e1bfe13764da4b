"""Throughput of the LLM rejection-sampling fine-tuning pipeline (``rsft rft``).

Run from the repository root:

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/rft_throughput.py

(``--n-prompts``, ``--pipeline-prompts``, ``--k``, ``--max-new-tokens``, ``--batch-size``,
``--repeats``, ``--threads``, ``--device``, ``--backend``, ``--model``, ``--prompts``, ``--out``
change the defaults; ``--per-sequence`` adds the one-sequence-at-a-time mode; ``--tiny`` swaps in
a tiny random Llama for a smoke run of the script itself, whose numbers mean nothing.)

Claims under test:

1. Generation throughput. Accepted samples per second when the generator batches many
   prompts into one ``generate`` call, against one prompt at a time. The same
   :class:`rsft.generation.engines.local.TransformersGenerator` (``--batch-size`` sequences per
   forward batch, loaded once; loading is not timed here) samples ``k`` completions for each of
   the first ``--n-prompts`` training prompts in three ways:

   - ``batched``: one ``generate(convs, k)`` call for every prompt, as the pipeline does
     (``batch_size // k`` prompts per forward batch, prompts sorted by length);
   - ``per_prompt``: one ``generate([conv], k)`` call per prompt, i.e. one forward batch of the
     prompt's ``k`` sequences (``num_return_sequences=k``);
   - ``per_sequence`` (only with ``--per-sequence``: about k times the cost of ``per_prompt``):
     ``k`` calls of ``generate([conv], 1)`` per prompt, one sequence at a time.

   Completions are scored by the numeric verifier and accepted by the ``correct`` rule
   (reward >= 1); accepted/s = accepted / generation wall time. Sampling draws differ between
   modes (different seeds per call, different padding), so the accepted counts differ a
   little, and with few accepted samples accepted/s is noisy; sequences/s and tokens/s
   (non-pad generated tokens) compare the work alone.
   Modes run round-robin, the order rotating each round, after one untimed warm-up call;
   each mode's median over ``--repeats`` rounds is reported, wall and process CPU time.

2. Overhead share. One full round of :class:`rsft.generation.RFTPipeline` (base evaluation,
   generation, scoring, selection, SFT with TRL, evaluation) on ``--pipeline-prompts``
   training and as many held-out prompts, ``k``, ``max_new_tokens`` as above, 1 SFT epoch, no
   random control, greedy evaluation only. From the pipeline's own stage timings
   (``results["timings"]``) and the wall time around ``run()``:
   ``outside share = (wall - generate - evaluate - train) / wall``. Goal: under 5%.
   ``generate`` and ``evaluate`` are generation (evaluate times its generate calls, not its
   scoring), ``train`` is the SFT stage. Each of the three includes loading its model from
   disk (and ``train`` saving the fine-tuned one): that is counted as generation/training, not
   overhead. Outside is everything else: scoring, selection and deduplication, writing the
   JSONL files, the summary table and plot.

3. Engines (``--parts engines``): the same workload (``--engine-prompts`` prompts x k) on
   transformers' ``generate`` in float32 and bfloat16 and on a vLLM server
   (:class:`~rsft.generation.engines.server.VLLMServer`) in float32 and bfloat16, one engine after
   the other, each started once, one warm-up call, median of ``--repeats``: start time,
   tokens/s, sequences/s, accepted/s and the ratios to transformers.

Torch runs on ``--threads`` (default 1) intra-op threads, like the other benchmarks: on a small
shared machine more threads make timings erratic. On one CPU thread the forward pass is
compute-bound, so batching saves mainly the per-call and per-step overhead; on a GPU (or with
more threads) the gain from batching is larger.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from bench_common import (  # noqa: E402
    command_line,
    interleaved_rounds,
    machine_info,
    write_report,
)

from rsft.config import from_dict  # noqa: E402
from rsft.data.datasets_io import quiet  # noqa: E402
from rsft.generation import RFTConfig, RFTPipeline  # noqa: E402
from rsft.generation.engines.client import EngineGenerator, Replica  # noqa: E402
from rsft.generation.engines.local import (  # noqa: E402
    Sampling,
    TransformersGenerator,
    resolve_device,
)
from rsft.generation.engines.server import (  # noqa: E402
    SERVED_NAME,
    EngineOptions,
    VLLMServer,
    find_vllm_python,
)
from rsft.generation.prompts import Prompts, chat_messages, load_prompts  # noqa: E402
from rsft.generation.scoring.verifiers import make_verifier, score  # noqa: E402
from rsft.generation.selection import select  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "rft_throughput.json"
TINY_OUT = Path(tempfile.gettempdir()) / "rsft_rft_throughput_tiny.json"
DEFAULT_DATA = Path("data/arithmetic")
GOAL_SHARE = 0.05
TEMPERATURE = 1.0
SEED = 0
BATCHED, PER_PROMPT, PER_SEQUENCE = "batched", "per_prompt", "per_sequence"


# --- the model and prompts --------------------------------------------------------------


def tiny_setup(folder: Path, n_train: int, n_eval: int) -> tuple[Path, Path, Path]:
    """A tiny random Llama (the test suite's builder, imported by path) and addition prompts."""
    from rsft.tasks.arithmetic import prepare_arithmetic

    spec = importlib.util.spec_from_file_location(
        "rsft_bench_tiny_lm", ROOT / "tests" / "generation" / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    model = Path(conftest.save_tiny_causal_lm(folder / "tiny_lm"))
    paths = prepare_arithmetic(folder / "data", n_train=n_train, n_eval=n_eval, with_model=False)
    return model, Path(paths["train"]), Path(paths["eval"])


def real_setup(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The embedded SmolLM2-135M-Instruct and its addition prompts (made once if missing)."""
    model = args.model or DEFAULT_DATA / "model"
    train = args.prompts or DEFAULT_DATA / "train.jsonl"
    held_out = args.eval_prompts or train.parent / "eval.jsonl"
    missing = [p for p in (model / "config.json", train, held_out) if not p.is_file()]
    defaults = args.model is None and args.prompts is None and args.eval_prompts is None
    if missing and defaults:
        from rsft.tasks.arithmetic import prepare_arithmetic

        print(f"preparing {DEFAULT_DATA} (converts the GGUF model once, ~1 min)", flush=True)
        prepare_arithmetic(DEFAULT_DATA)
    elif missing:
        raise SystemExit(f"missing: {', '.join(map(str, missing))}")
    return model, train, held_out


# --- part 1: generation throughput --------------------------------------------------------


def accepted_count(verifier: Any, prompts: Prompts, outs: list[list[str]], threshold: float):
    """Score every completion and accept by the ``correct`` rule: (accepted, failed)."""
    texts = [t for i, o in enumerate(outs) for t in [prompts.texts[i]] * len(o)]
    refs = [r for i, o in enumerate(outs) for r in [prompts.references[i]] * len(o)]
    groups = [i for i, o in enumerate(outs) for _ in o]
    completions = [c for o in outs for c in o]
    result = score(verifier, texts, completions, refs, workers=1)
    chosen = select("correct", result.rewards, groups, threshold=threshold)
    return sum(chosen.accepted), result.n_failed


def run_mode(gen: Any, mode: str, convs: list, k: int, max_new: int, seed: int) -> list[list[str]]:
    """One pass over every prompt in ``mode``; the completions per prompt."""

    def sampling(n: int, seed: int) -> Sampling:
        return Sampling(n, TEMPERATURE, 1.0, max_new, seed=seed)

    if mode == BATCHED:
        return gen.generate(convs, sampling(k, seed))
    if mode == PER_PROMPT:
        return [gen.generate([c], sampling(k, seed + i))[0] for i, c in enumerate(convs)]
    return [
        [gen.generate([c], sampling(1, seed + i * k + j))[0][0] for j in range(k)]
        for i, c in enumerate(convs)
    ]


def timed_pass(gen, mode, convs, k, max_new, seed, verifier, prompts, threshold) -> dict:
    tokens0 = gen.generated_tokens
    w0, c0 = time.perf_counter(), time.process_time()
    outs = run_mode(gen, mode, convs, k, max_new, seed)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    accepted, failed = accepted_count(verifier, prompts, outs, threshold)
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "sequences": sum(len(o) for o in outs),
        "tokens": gen.generated_tokens - tokens0,
        "accepted": accepted,
        "failed": failed,
    }


def summarize(runs: list[dict]) -> dict[str, Any]:
    """Medians of one mode's timed rounds, and the rates they give."""
    med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    seconds, cpu = med["seconds"], med["cpu_seconds"]
    return {
        "seconds_median": seconds,
        "cpu_seconds_median": cpu,
        "accepted_median": med["accepted"],
        "acceptance_rate": sum(r["accepted"] for r in runs) / sum(r["sequences"] for r in runs),
        # rates per round, then their median: robust to one slow round
        "accepted_per_s": statistics.median(r["accepted"] / r["seconds"] for r in runs),
        "sequences_per_s": statistics.median(r["sequences"] / r["seconds"] for r in runs),
        "tokens_per_s": statistics.median(r["tokens"] / r["seconds"] for r in runs),
        "sequences_per_cpu_s": statistics.median(r["sequences"] / r["cpu_seconds"] for r in runs),
        "rounds": runs,
    }


def ratios(a: dict, b: dict) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in ("accepted_per_s", "sequences_per_s", "tokens_per_s", "sequences_per_cpu_s"):
        out[key] = a[key] / b[key] if b[key] else None
    return out


def compare_modes(
    runners: dict[str, tuple[Any, str]],
    prompts: Prompts,
    args: argparse.Namespace,
    threshold: float,
    label: str,
) -> dict[str, dict]:
    """Round-robin timing of ``runners`` (name -> (generator, mode)), one warm-up call each."""
    verifier = make_verifier("numeric")
    convs = [chat_messages(t, None) for t in prompts.texts]
    names = list(runners)
    for gen, _ in runners.values():  # warm-up: first-call allocations, lazy imports, caches
        run_mode(gen, BATCHED, convs[:2], args.k, args.max_new_tokens, seed=10_000)

    def measure(name: str, r: int) -> dict:
        gen, mode = runners[name]
        last = timed_pass(
            gen,
            mode,
            convs,
            args.k,
            args.max_new_tokens,
            SEED + 1000 * r,
            verifier,
            prompts,
            threshold,
        )
        print(
            f"  {label} {name:<12} {last['seconds']:7.2f} s, "
            f"{last['accepted']}/{last['sequences']} accepted",
            flush=True,
        )
        return last

    runs = interleaved_rounds(names, measure, args.repeats, warmup=0, label=f"{label} ")
    return {name: summarize(runs[name]) for name in names}


def part_generation(
    model: Path, prompts: Prompts, args: argparse.Namespace, device: str, threshold: float
) -> dict[str, Any]:
    print(
        f"[1/3] generation throughput: {len(prompts)} prompts x k={args.k}, "
        f"max_new_tokens {args.max_new_tokens}, on {device}",
        flush=True,
    )
    t0 = time.perf_counter()
    gen = TransformersGenerator(model, device=device, batch_size=args.batch_size)
    load = time.perf_counter() - t0
    modes = [BATCHED, PER_PROMPT] + ([PER_SEQUENCE] if args.per_sequence else [])
    results = compare_modes({m: (gen, m) for m in modes}, prompts, args, threshold, "gen")
    gen.close()
    out: dict[str, Any] = {"model_load_seconds": load, "modes": results, "ratios": {}}
    for other in modes[1:]:
        out["ratios"][f"{BATCHED}_over_{other}"] = ratios(results[BATCHED], results[other])
    return out


# --- part 2: overhead share ---------------------------------------------------------------


def pipeline_config(
    model: Path,
    train: Path,
    held_out: Path,
    out_dir: Path,
    args: argparse.Namespace,
    device: str,
    threshold: float,
) -> dict[str, Any]:
    return {
        "model": {"path": str(model), "device": device},
        "data": {
            "train": str(train),
            "eval": str(held_out),
            "max_train_prompts": args.pipeline_prompts,
            "max_eval_prompts": args.pipeline_prompts,
        },
        "generation": {
            "k": args.k,
            "temperature": TEMPERATURE,
            "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
            "backend": args.backend,
            "dtype": args.pipeline_dtype,
        },
        "engine": {"vllm_python": args.vllm_python, "max_model_len": args.max_model_len},
        "verifier": {"kind": "numeric", "workers": 4},
        "selection": {
            "rule": "correct",
            "threshold": threshold,
            "dedup": "normalized",
            "max_per_prompt": args.k,
            "control": "none",
        },
        "sft": {"epochs": 1, "lr": 5e-5, "batch_size": 16},
        "eval": {"k": 0},
        "rounds": 1,
        "seed": SEED,
        "output_dir": str(out_dir),
        "resume": "never",
        "progress": "quiet",
    }


def part_overhead(raw: dict[str, Any]) -> dict[str, Any]:
    print(
        f"[2/3] overhead share: one RFTPipeline round, {raw['data']['max_train_prompts']} "
        f"train + {raw['data']['max_eval_prompts']} held-out prompts",
        flush=True,
    )
    t0 = time.perf_counter()
    pipe = RFTPipeline(from_dict(RFTConfig, raw))
    setup = time.perf_counter() - t0
    w0 = time.perf_counter()
    try:
        result = pipe.run()
    except RuntimeError as e:  # e.g. nothing accepted: nothing to fine-tune on
        print(f"  pipeline failed: {e}", flush=True)
        return {"error": str(e), "timings": pipe.timings}
    wall = time.perf_counter() - w0
    timings = dict(result["timings"])
    generation = timings.get("generate", 0.0) + timings.get("evaluate", 0.0)
    train = timings.get("train", 0.0)
    outside = wall - generation - train
    share = outside / wall
    rnd = result["rounds"][0]
    print(f"  done in {wall:.1f} s: outside share {share:.1%}", flush=True)
    return {
        "wall_seconds": wall,
        "pipeline_init_seconds": setup,
        "timings": timings,
        "generation_seconds": generation,
        "train_seconds": train,
        "outside_seconds": outside,
        "outside_share": share,
        "goal": GOAL_SHARE,
        "met": share < GOAL_SHARE,
        "outside_breakdown": {
            "score": timings.get("score", 0.0),
            "select_dedup_write": timings.get("select", 0.0),
            "summary_table_and_plot": timings.get("report", 0.0),
            "other": outside
            - timings.get("score", 0.0)
            - timings.get("select", 0.0)
            - timings.get("report", 0.0),
        },
        "engine_start_seconds": timings.get("engine_start", 0.0),  # inside generate/evaluate
        "generated_tokens": getattr(pipe, "generated_tokens", None),
        "candidates": rnd["candidates"],
        "accepted": rnd["accepted"],
        "kept": rnd["kept"],
        "pass@1_before": rnd["before"]["pass@1"],
        "pass@1_after": rnd["after"]["pass@1"],
    }


# --- part 3: engines side by side --------------------------------------------------------


ENGINES = ("transformers/float32", "transformers/bfloat16", "vllm/float32", "vllm/bfloat16")


def start_engine(name: str, model: Path, args: argparse.Namespace, log_dir: Path):
    """(generator, start seconds, stop function) for one engine of :data:`ENGINES`."""
    backend, dtype = name.split("/")
    t0 = time.perf_counter()
    if backend == "transformers":
        gen = TransformersGenerator(model, dtype=dtype, batch_size=args.batch_size)
        return gen, time.perf_counter() - t0, gen.close
    options = EngineOptions(
        vllm_python=args.vllm_python, dtype=dtype, seed=SEED, max_model_len=args.max_model_len
    )
    server = VLLMServer(model, options, log_dir / f"{backend}-{dtype}.log").start()
    gen = EngineGenerator(model, [Replica(server.url, SERVED_NAME, server)])
    return gen, server.start_seconds, server.stop


def part_engines(model: Path, prompts: Prompts, args: argparse.Namespace, threshold: float):
    """Each engine started, warmed up once, then timed on the same batched workload."""
    try:
        find_vllm_python(args.vllm_python)
        names = list(ENGINES)
        skipped = None
    except Exception as err:  # no vLLM environment: transformers only, and say why
        names = [n for n in ENGINES if n.startswith("transformers")]
        skipped = f"vLLM engines skipped: {err}"
    print(
        f"[3/3] engines: {len(prompts)} prompts x k={args.k}, max_new_tokens "
        f"{args.max_new_tokens}, {', '.join(names)}; transformers on {args.engine_threads} "
        "torch thread(s)",
        flush=True,
    )
    verifier = make_verifier("numeric")
    convs = [chat_messages(t, None) for t in prompts.texts]
    threads = torch.get_num_threads()
    torch.set_num_threads(args.engine_threads)
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="rsft-engines-") as logs:
            for name in names:
                gen, start_s, stop = start_engine(name, model, args, Path(logs))
                try:
                    run_mode(gen, BATCHED, convs[:2], args.k, args.max_new_tokens, seed=10_000)
                    runs = []
                    for r in range(args.repeats):
                        runs.append(
                            timed_pass(
                                gen,
                                BATCHED,
                                convs,
                                args.k,
                                args.max_new_tokens,
                                SEED + 1000 * r,
                                verifier,
                                prompts,
                                threshold,
                            )
                        )
                        print(
                            f"  {name:<22} {runs[-1]['seconds']:7.2f} s "
                            f"({runs[-1]['tokens'] / runs[-1]['seconds']:.0f} tokens/s)",
                            flush=True,
                        )
                finally:
                    stop()
                results[name] = {"start_s": start_s, **summarize(runs)}
    finally:
        torch.set_num_threads(threads)
    base = results["transformers/float32"]
    out: dict[str, Any] = {"engines": results, "baseline": "transformers/float32"}
    for name, r in results.items():
        r["tokens_per_s_vs_transformers_float32"] = r["tokens_per_s"] / base["tokens_per_s"]
        same = results.get(f"transformers/{name.split('/')[1]}")
        r["tokens_per_s_vs_transformers_same_dtype"] = (
            r["tokens_per_s"] / same["tokens_per_s"] if same else None
        )
    if skipped:
        out["skipped"] = skipped
    return out


# --- report -------------------------------------------------------------------------------


def print_modes(title: str, modes: dict[str, dict]) -> None:
    print(title)
    header = (
        f"{'mode':<14} | {'wall s':>7} | {'cpu s':>7} | {'accepted':>8} | {'acc/s':>7} | "
        f"{'seq/s':>7} | {'tok/s':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, m in modes.items():
        print(
            f"{name:<14} | {m['seconds_median']:>7.2f} | {m['cpu_seconds_median']:>7.2f} | "
            f"{m['accepted_median']:>8g} | {m['accepted_per_s']:>7.2f} | "
            f"{m['sequences_per_s']:>7.2f} | {m['tokens_per_s']:>8.1f}"
        )


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    s = report["settings"]
    gen = report["generation"] or {"model_load_seconds": 0.0, "modes": {}, "ratios": {}}
    print()
    print_modes(
        f"Generation: {s['n_prompts']} prompts x k={s['k']}, max_new_tokens "
        f"{s['max_new_tokens']}, batch_size {s['batch_size']}, {s['device']}, "
        f"{s['torch_threads']} torch thread(s); median of {s['repeats']} rounds "
        f"(model load {gen['model_load_seconds']:.1f} s, not timed)",
        gen["modes"],
    )
    for name, r in gen["ratios"].items():
        print(
            f"{name}: accepted/s {fmt_ratio(r['accepted_per_s'])}, sequences/s "
            f"{fmt_ratio(r['sequences_per_s'])}, tokens/s {fmt_ratio(r['tokens_per_s'])}, "
            f"sequences/cpu-s {fmt_ratio(r['sequences_per_cpu_s'])}"
        )
    o = report["overhead"]
    print()
    if "error" in o:
        print(f"Overhead share: pipeline failed ({o['error']})")
    else:
        t = o["timings"]
        b = o["outside_breakdown"]
        print(
            f"Overhead share of one RFTPipeline round ({s['pipeline_prompts']} train + "
            f"{s['pipeline_prompts']} held-out prompts, k={s['k']}, 1 SFT epoch):"
        )
        print(
            f"  wall {o['wall_seconds']:.2f} s = generate {t.get('generate', 0):.2f} + "
            f"evaluate {t.get('evaluate', 0):.2f} + train {t.get('train', 0):.2f} + outside "
            f"{o['outside_seconds']:.2f} s"
        )
        print(
            f"  outside: score {b['score']:.2f}, select/dedup/write "
            f"{b['select_dedup_write']:.2f}, table+plot {b['summary_table_and_plot']:.2f}, "
            f"other {b['other']:.2f} s   (config/prompt checks before run(): "
            f"{o['pipeline_init_seconds']:.2f} s, not counted)"
        )
        verdict = "met" if o["met"] else "MISSED"
        print(f"  outside share {o['outside_share']:.1%} (goal < {GOAL_SHARE:.0%}): {verdict}")
        print("  (generate/evaluate/train include loading their model; train includes saving)")
        print(
            f"  accepted {o['accepted']}/{o['candidates']} (kept {o['kept']}); pass@1 "
            f"{o['pass@1_before']:.3f} -> {o['pass@1_after']:.3f}"
        )
    e = report["engines"] or {"engines": {}, "skipped": "engines: not run"}
    print()
    print(
        f"Engines ({s['engine_prompts']} prompts x k={s['k']}, max_new_tokens "
        f"{s['max_new_tokens']}, median of {s['repeats']} rounds after one warm-up call; "
        f"engines one after another):"
    )
    header = (
        f"{'engine':<22} | {'start s':>7} | {'tok/s':>7} | {'seq/s':>6} | {'acc/s':>6} | "
        f"{'x tf fp32':>9} | {'x tf same dtype':>15}"
    )
    print(header)
    print("-" * len(header))
    for name, r in e["engines"].items():
        same = r["tokens_per_s_vs_transformers_same_dtype"]
        print(
            f"{name:<22} | {r['start_s']:>7.1f} | {r['tokens_per_s']:>7.0f} | "
            f"{r['sequences_per_s']:>6.1f} | {r['accepted_per_s']:>6.2f} | "
            f"{r['tokens_per_s_vs_transformers_float32']:>8.2f}x | "
            f"{fmt_ratio(same):>15}"
        )
    if "skipped" in e:
        print(e["skipped"])
    m = report["machine"]
    print()
    print(
        f"load average {m['loadavg_before'][0]:.2f} -> {m['loadavg_after'][0]:.2f} on "
        f"{m['cpu_count']} CPUs; total {report['total_seconds']:.0f} s"
    )
    if args.tiny:
        print(
            "NOTE: --tiny: a random 2-layer model, every completion accepted (threshold 0); "
            "a smoke run of the script, not a measurement."
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        type=Path,
        help="transformers causal-LM folder "
        "(default data/arithmetic/model, made by `rsft prepare arithmetic`)",
    )
    p.add_argument(
        "--prompts",
        type=Path,
        help="training prompts JSONL with prompt/answer "
        "columns (default data/arithmetic/train.jsonl)",
    )
    p.add_argument(
        "--eval-prompts",
        type=Path,
        help="held-out prompts for part 2 (default: eval.jsonl beside --prompts)",
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="smoke run on a tiny random Llama (numbers mean nothing)",
    )
    p.add_argument("--n-prompts", type=int, default=32, help="prompts timed in parts 1 and 3")
    p.add_argument(
        "--pipeline-prompts",
        type=int,
        default=32,
        help="training and held-out prompts of the part-2 pipeline round",
    )
    p.add_argument("--k", type=int, default=4, help="samples per prompt")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64, help="sequences per forward batch")
    p.add_argument("--repeats", type=int, default=2, help="timed rounds per mode")
    p.add_argument(
        "--per-sequence",
        action="store_true",
        help="also time one sequence at a time (about k times the per-prompt cost)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--backend",
        choices=("auto", "transformers", "vllm"),
        default="auto",
        help="generation backend of the part-2 pipeline",
    )
    p.add_argument("--skip-pipeline", action="store_true", help="skip part 2")
    p.add_argument(
        "--parts",
        nargs="+",
        choices=("generation", "pipeline", "engines"),
        default=["generation", "pipeline", "engines"],
        help="parts to run; the others keep their figures from the --out file",
    )
    p.add_argument("--engine-prompts", type=int, default=64, help="prompts timed in part 3")
    p.add_argument(
        "--pipeline-dtype",
        default="model",
        help="generation.dtype of the part-2 pipeline (model, auto, float32, bfloat16)",
    )
    p.add_argument(
        "--engine-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads of the transformers engines in part 3 (vLLM binds its own)",
    )
    p.add_argument("--vllm-python", default="auto", help="the vLLM environment's python")
    p.add_argument("--max-model-len", type=int, default=512, help="vLLM engines' context")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument(
        "--out",
        type=Path,
        help="results JSON (default benchmarks/results/rft_throughput.json; "
        "with --tiny, a file in the temp folder, so a smoke run never replaces it)",
    )
    args = p.parse_args(argv)
    if args.out is None:
        args.out = TINY_OUT if args.tiny else DEFAULT_OUT
    if (
        min(
            args.n_prompts,
            args.pipeline_prompts,
            args.k,
            args.max_new_tokens,
            args.batch_size,
            args.repeats,
            args.threads,
        )
        < 1
    ):
        p.error("counts, sizes and --threads must be >= 1")
    return args


def read_earlier(path: Path) -> dict[str, Any]:
    """The figures of the parts not run now, from the last results file (none: empty)."""
    import json

    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    with quiet():  # no per-load progress bars from transformers and datasets: one line per phase
        return run(argv)


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    # The tiny random model never answers right: accept everything so every stage has work.
    threshold = 0.0 if args.tiny else 1.0
    with tempfile.TemporaryDirectory(prefix="rsft-rft-throughput-") as tmp:
        tmp_dir = Path(tmp)
        if args.tiny:
            n = max(args.n_prompts, args.pipeline_prompts)
            model, train, held_out = tiny_setup(tmp_dir, n_train=n, n_eval=n)
        else:
            model, train, held_out = real_setup(args)
        prompts = load_prompts(train, "prompt", "answer", limit=args.n_prompts)
        earlier = read_earlier(args.out)
        if "generation" in args.parts:
            generation = part_generation(model, prompts, args, device, threshold)
        else:
            generation = earlier.get("generation")
        if "pipeline" not in args.parts:
            overhead: dict[str, Any] = earlier.get("overhead", {"error": "not run"})
        elif args.skip_pipeline:
            print("[2/3] overhead share: skipped (--skip-pipeline)", flush=True)
            overhead = {"error": "skipped (--skip-pipeline)"}
        else:
            raw = pipeline_config(model, train, held_out, tmp_dir / "run", args, device, threshold)
            overhead = part_overhead(raw)
        if "engines" in args.parts:
            engine_prompts = load_prompts(train, "prompt", "answer", limit=args.engine_prompts)
            engines = part_engines(model, engine_prompts, args, threshold)
        else:
            engines = earlier.get("engines")
    load_after = os.getloadavg()
    machine = {
        **machine_info(),
        "device": device,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    if device == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(0)
    report = {
        "accepted_per_s_ratio": (
            generation["ratios"][f"{BATCHED}_over_{PER_PROMPT}"]["accepted_per_s"]
            if generation
            else None
        ),
        "outside_share": overhead.get("outside_share"),
        "outside_share_goal": f"< {GOAL_SHARE}",
        "outside_share_met": overhead.get("met"),
        "generation": generation,
        "overhead": overhead,
        "engines": engines,
        "settings": {
            "model": "tiny random Llama (--tiny)" if args.tiny else str(model),
            "prompts": "generated addition prompts (--tiny)" if args.tiny else str(train),
            "n_prompts": len(prompts),
            "pipeline_prompts": args.pipeline_prompts,
            "k": args.k,
            "max_new_tokens": args.max_new_tokens,
            "temperature": TEMPERATURE,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "device": device,
            "torch_threads": args.threads,
            "verifier": "numeric",
            "rule": f"correct (threshold {threshold})",
            "pipeline_backend": args.backend,
            "engine_prompts": args.engine_prompts,
            "engine_threads": args.engine_threads,
            "parts_run": args.parts,
            "tiny": args.tiny,
            "modes": list(generation["modes"]) if generation else [],
            "timed": "part 1: wall (perf_counter) and process CPU time of the generate calls "
            "only (model loaded once beforehand, one warm-up call); accepted/s etc. are the "
            "median over rounds of per-round rates. part 2: wall around RFTPipeline.run(); "
            "outside share = (wall - timings[generate] - timings[evaluate] - timings[train]) "
            "/ wall, model loading counted inside those stages.",
        },
        "machine": machine,
        "total_seconds": time.perf_counter() - t_start,
        "command": command_line("rft_throughput.py", argv),
    }
    print_report(report, args)
    write_report(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
