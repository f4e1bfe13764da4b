"""Does the embedded demo give the same numbers on another x86 CPU? Emulate CPUs and compare.

Run from the repository root:

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python benchmarks/cross_cpu.py

(``--machines``, ``--knobs``, ``--modes``, ``--methods``, ``--seeds``, ``--epochs``,
``--repeats`` and ``--out`` change the defaults; ``--quick`` runs one fine-tuning epoch and
one seed.) The defaults take about 10 minutes on 2 cores.

Every (emulated machine, mode) pair runs in a fresh subprocess, since the libraries choose
their kernels from the environment when they start: ``rsft.tasks.embedded.prepare_digits``
builds the splits and pretrains DigitsNet, then each method of
``configs/digits_compare.yaml`` named in ``--methods`` fine-tunes it, once per seed.

An emulated machine is what a CPU lets the libraries use: ATen's vectorised kernels
(``ATEN_CPU_CAPABILITY``: avx512, avx2 or default), oneDNN's convolutions
(``ONEDNN_MAX_CPU_ISA``), OpenBLAS's kernels in numpy, scipy and scikit-learn
(``OPENBLAS_CORETYPE``), numpy's SIMD loops (``NPY_DISABLE_CPU_FEATURES``) and the thread
count its cores give (``torch.set_num_threads``). MKL picks its kernels by CPU vendor and
cannot be steered to another vendor's here, so it is varied only through its
reproducibility mode (``MKL_CBWR``); single knobs (``--knobs``) vary one library at a time.
A mode is what is pinned on every machine: ``default`` nothing (rsft as it runs without
settings), ``portable`` :data:`rsft.portable.PORTABLE_ENV` (what ``make demo`` runs under;
``rsft.portable`` refuses CPUs without AVX2, so the emulated SSE machine has no portable run).

Printed per setting, against the first setting of the same mode: whether the data splits,
the pretrained weights, the density-ratio weights (the domain classifier on the pretrained
model's features) and each fine-tuned model are bitwise equal (with the largest weight
difference), the pretrained and fine-tuned target test accuracies (the mean over seeds), and
the median wall and CPU time of one fine-tuning run and of the preparation over
``--repeats`` rounds (interleaved, so that noise from other processes hits all settings
alike). Results go to ``benchmarks/results/cross_cpu.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

NPY_AVX512 = "X86_V4 AVX512_ICL AVX512_SPR"
AVX2_ONLY = {"OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": NPY_AVX512}

# Emulated machines: what each library may use, and the thread count.
MACHINES: dict[str, dict[str, Any]] = {
    "avx512-2t": {"aten": "avx512", "onednn": "ALL", "threads": 2},
    "avx512-1t": {"aten": "avx512", "onednn": "ALL", "threads": 1},
    "avx2-2t": {"aten": "avx2", "onednn": "AVX2", "threads": 2, "env": AVX2_ONLY},
    "avx2-4t": {"aten": "avx2", "onednn": "AVX2", "threads": 4, "env": AVX2_ONLY},
    "sse-2t": {
        "aten": "default",
        "onednn": "SSE41",
        "threads": 2,
        "env": {"OPENBLAS_CORETYPE": "Nehalem", "NPY_DISABLE_CPU_FEATURES": "X86_V3 " + NPY_AVX512},
    },
}

# One library at a time on the first machine, to see which of them moves the results.
KNOBS: dict[str, dict[str, str]] = {
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "onednn-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "mkl-compatible": {"MKL_CBWR": "COMPATIBLE"},
    "openblas-haswell": {"OPENBLAS_CORETYPE": "Haswell"},
    "threads-1": {"OMP_NUM_THREADS": "1"},
}

METHODS = ("plain", "rsft-density-exact", "rsft-balance")

# Every variable a setting may set: the parent's own values of them are not passed on.
KEYS = {
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "OPENBLAS_CORETYPE",
    "NPY_DISABLE_CPU_FEATURES",
}


def setting_env(machine: str, mode: str) -> dict[str, str]:
    """The environment a run gets: the machine's limits, then the mode's pins."""
    from rsft.portable import PORTABLE_ENV

    spec = MACHINES.get(machine) or {**MACHINES["avx512-2t"], "env": KNOBS[machine]}
    env = {
        "ATEN_CPU_CAPABILITY": spec["aten"],
        "ONEDNN_MAX_CPU_ISA": spec["onednn"],
        "OMP_NUM_THREADS": str(spec["threads"]),
        **spec.get("env", {}),
    }
    return {**env, **PORTABLE_ENV} if mode == "portable" else env


def runs_in(machine: str, mode: str) -> bool:
    return mode != "portable" or MACHINES.get(machine, {}).get("aten") != "default"


# --------------------------------------------------------------------------- worker


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def worker(out: Path, methods: list[str], seeds: list[int], epochs: int | None) -> None:
    """In the subprocess: prepare the task, score the density ratio, fine-tune; write JSON."""
    import numpy as np
    import torch

    from rsft.compare.runner import CompareConfig, build_runs
    from rsft.config import from_dict, load_yaml
    from rsft.tasks.embedded import prepare_digits
    from rsft.training import FineTuner

    # OMP_NUM_THREADS above the core count is clamped when torch starts: set it as asked.
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    data = out / "digits"
    t0, c0 = time.perf_counter(), time.process_time()
    paths = prepare_digits(data, force=True)
    prepare = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}

    text = json.dumps(load_yaml(ROOT / "configs/digits_compare.yaml"))
    raw = json.loads(text.replace("data/digits/", f"{data}/"))
    raw.update(
        methods={m: raw["methods"][m] for m in methods}, seeds=seeds, output_dir=str(out / "runs")
    )
    raw["base"].update(progress=False, resume="never")
    if epochs is not None:
        raw["base"]["epochs"] = epochs
    runs = {}
    for method, seed, cfg in build_runs(from_dict(CompareConfig, raw)):
        t0, c0 = time.perf_counter(), time.process_time()
        tuner = FineTuner(cfg)
        result = tuner.train()
        runs[f"{method}/{seed}"] = {
            "model": str(Path(cfg.output_dir) / "model" / "model.safetensors"),
            "test_accuracy": result["test_accuracy"],
            "test_correct": result["test_correct"],  # for compare's paired intervals
            "initial_test_accuracy": result["initial_test_accuracy"],
            "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0,
        }
        if cfg.rejection.weights == "density_ratio" and not (out / "density.npy").exists():
            np.save(out / "density.npy", tuner.weights)  # scored on the pretrained features
    facts = {
        "aten": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "data": {s: _sha(Path(paths[s])) for s in ("pretrain", "pool", "target_test")},
        "pretrained": str(Path(paths["pretrained"]) / "model.safetensors"),
        "density": str(out / "density.npy") if (out / "density.npy").exists() else None,
        "prepare": prepare,
        "runs": runs,
    }
    (out / "facts.json").write_text(json.dumps(facts, indent=2))


# --------------------------------------------------------------------------- driver


def run_setting(machine: str, mode: str, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in KEYS}
    env.update(setting_env(machine, mode))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, __file__, "--worker", str(out), "--methods", *args.methods]
    cmd += ["--seeds", *map(str, args.seeds)]
    if args.epochs is not None:
        cmd += ["--epochs", str(args.epochs)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{machine}/{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads((out / "facts.json").read_text())


def _same_weights(a: str, b: str) -> tuple[bool, float]:
    from safetensors.torch import load_file

    x, y = load_file(a), load_file(b)
    return all(bool((x[k] == y[k]).all()) for k in x), max(
        float((x[k] - y[k]).abs().max()) for k in x
    )


def summarize(names: list[str], facts: dict[str, list[dict]]) -> list[dict[str, Any]]:
    """One row per setting, compared with the first one (its first round)."""
    import numpy as np

    ref = facts[names[0]][0]
    rows = []
    for name in names:
        f = facts[name][0]
        same, diff = _same_weights(ref["pretrained"], f["pretrained"])
        row: dict[str, Any] = {
            "setting": name,
            "aten": f["aten"],
            "threads": f["threads"],
            "data_same": f["data"] == ref["data"],
            "pretrained_same": same,
            "pretrained_maxdiff": diff,
            "pretrained_acc": next(iter(f["runs"].values()))["initial_test_accuracy"],
            "prepare_wall_s": statistics.median(r["prepare"]["wall_s"] for r in facts[name]),
            "prepare_cpu_s": statistics.median(r["prepare"]["cpu_s"] for r in facts[name]),
        }
        if f["density"] and ref["density"]:
            a, b = np.load(ref["density"]), np.load(f["density"])
            row["density_same"] = bool(np.array_equal(a, b))
            row["density_maxrel"] = float(np.max(np.abs(a - b) / np.abs(a)))
        for method in dict.fromkeys(k.split("/")[0] for k in f["runs"]):
            keys = [k for k in f["runs"] if k.split("/")[0] == method]
            every = [r["runs"][k] for r in facts[name] for k in keys]
            row[method] = {
                "acc": [f["runs"][k]["test_accuracy"] for k in keys],
                "same": [
                    _same_weights(ref["runs"][k]["model"], f["runs"][k]["model"])[0] for k in keys
                ],
                "wall_s": statistics.median(run["wall_s"] for run in every),
                "cpu_s": statistics.median(run["cpu_s"] for run in every),
            }
        rows.append(row)
    return rows


def deltas(name: str, facts: dict[str, list[dict]], baseline: str) -> dict[str, Any]:
    """Compare's own summary (intervals over seeds and test items) of one setting's runs."""
    from rsft.compare.summary import summarize as compare_summary

    runs = facts[name][0]["runs"]
    records = [
        {"method": key.split("/")[0], "seed": int(key.split("/")[1]), **r}
        for key, r in runs.items()
    ]
    rows = compare_summary(records, metrics=(), baseline=baseline)
    return {
        r["method"]: [
            r["delta_vs_baseline_mean"],
            r["delta_vs_baseline_ci_low"],
            r["delta_vs_baseline_ci_high"],
        ]
        for r in rows
        if r["method"] != baseline
    }


def print_deltas(table: dict[str, dict[str, list[float]]], baseline: str) -> None:
    """Δ vs the baseline [95% interval] per method (rows) and setting (columns), in points,
    and whether the interval excludes 0 on the same side in every setting."""
    names = list(table)
    methods = list(dict.fromkeys(m for d in table.values() for m in d))
    print(f"\nΔ vs {baseline} [95% CI], points, per setting (rsft compare's intervals):")
    print(f"{'method':24} " + " ".join(f"{n:>22}" for n in names) + "  verdict")
    for m in methods:
        cells = [table[n].get(m) for n in names]
        signs = {(c[1] > 0) - (c[2] < 0) for c in cells if c}
        verdict = {1: "above 0 everywhere", -1: "below 0 everywhere"}.get(
            signs.pop() if len(signs) == 1 else 0, "not settled"
        )
        text = [f"{100 * c[0]:+.1f} [{100 * c[1]:+.1f}, {100 * c[2]:+.1f}]" for c in cells if c]
        print(f"{m:24} " + " ".join(f"{t:>22}" for t in text) + f"  {verdict}")


def print_table(rows: list[dict[str, Any]], methods: list[str]) -> None:
    print(
        f"{'setting':26} {'aten':7} {'thr':>3} {'data':>4} {'pretrained':>12} {'acc':>6} "
        f"{'density w':>13} {'prep s':>9} "
        + " ".join(f"{m + ' acc, same, s (cpu s)':>40}" for m in methods)
    )
    for r in rows:
        pre = "same" if r["pretrained_same"] else f"Δ {r['pretrained_maxdiff']:.1e}"
        dw = "-"
        if "density_same" in r:
            dw = "same" if r["density_same"] else f"rel {r['density_maxrel']:.0e}"
        cells = []
        for m in methods:
            c = r[m]
            cells.append(
                f"{statistics.mean(c['acc']) * 100:5.1f}% {sum(c['same'])}/{len(c['same'])} "
                f"{c['wall_s']:5.2f} ({c['cpu_s']:5.2f})"
            )
        data = "same" if r["data_same"] else "DIFF"
        print(
            f"{r['setting']:26} {r['aten']:7} {r['threads']:>3} "
            f"{data:>4} {pre:>12} {r['pretrained_acc'] * 100:5.1f}% "
            f"{dw:>13} {r['prepare_wall_s']:4.1f}({r['prepare_cpu_s']:4.1f}) "
            + " ".join(f"{c:>40}" for c in cells)
        )


def main(argv: list[str] | None = None) -> int:
    from bench_common import command_line, machine_info, write_report

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--machines", nargs="+", default=list(MACHINES), choices=list(MACHINES))
    p.add_argument("--knobs", nargs="*", default=list(KNOBS), choices=list(KNOBS))
    p.add_argument("--modes", nargs="+", default=["default", "portable"])
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (config's)")
    p.add_argument("--repeats", type=int, default=1, help="rounds, for the time medians")
    p.add_argument("--quick", action="store_true", help="one fine-tuning epoch, one round")
    p.add_argument("--baseline", default="plain", help="the method Δ is paired against")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cross_cpu.json")
    args = p.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.methods, args.seeds, args.epochs)
        return 0
    if args.quick:
        args.epochs, args.repeats, args.seeds = 1, 1, args.seeds[:1]

    groups: dict[str, list[str]] = {}
    for mode in args.modes:
        machines = args.machines + (args.knobs if mode == "default" else [])
        groups[mode] = [f"{m}/{mode}" for m in machines if runs_in(m, mode)]
    names = [n for group in groups.values() for n in group]
    facts: dict[str, list[dict]] = {n: [] for n in names}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                out = Path(tmp) / f"{name.replace('/', '_')}-{r}"
                facts[name].append(run_setting(*name.split("/"), out, args))
                print(f"  round {r + 1}: {name} ({time.perf_counter() - t0:.0f} s)", flush=True)
        rows = [row for group in groups.values() for row in summarize(group, facts)]
    delta_table = {}
    if args.baseline in args.methods and len(args.seeds) > 1:
        delta_table = {n: deltas(n, facts, args.baseline) for n in names}
    print()
    print_table(rows, args.methods)
    if delta_table:
        print_deltas(delta_table, args.baseline)
    write_report(
        args.out,
        {
            "command": command_line("cross_cpu.py", argv),
            "machine": machine_info(),
            "settings": {n: setting_env(*n.split("/")) for n in names},
            "rows": rows,
            "deltas": delta_table,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
