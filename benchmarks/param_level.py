"""The parameter level: peak memory against inference, and acceptance against d.

Run from the repository root:

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python benchmarks/param_level.py

(``--quick`` is a smoke mode: a smaller transformer, fewer proposals, one seed, results written
to a temporary folder unless ``--out`` / ``--plot`` are given. ``--seeds``, ``--threads``,
``--out`` and ``--plot`` change the defaults.)

Claims under test:

1. Memory (MeZO's claim, and :mod:`rsft.param_level`'s "in the memory of inference"): a
   zeroth-order step (``zo_sgd``) and a Metropolis step need about the memory of one inference
   pass (Metropolis with ``restore: exact`` holds 1 more byte per tuned parameter), while a
   gradient step needs weights + gradients + optimizer state + stored activations: about 2x
   the weights for plain SGD, 3x with momentum and 4x for Adam when the weights dominate.
   Criterion printed: peak total / inference total <= 1.25 for zo_sgd and Metropolis.
2. Acceptance against the number of tuned parameters d: at a fixed proposal scale σ the
   acceptance rate of the random walk falls as d grows (ΔL grows with |Δθ| = σ·sqrt(d)).
3. With σ adapted towards an acceptance of 0.234, σ settles about as 1/sqrt(d) (so
   σ·sqrt(d) stays roughly constant): the slope of log σ against log d is about -0.5.

Part A (peak memory of a training step against an inference pass), CPU, full-parameter tuning,
two models: the digits CNN (``rsft.tasks.digits.DigitsNet(width=32)``, a batch of 32 random
64-float inputs; activations dominate) and a randomly initialised transformers
``BertForSequenceClassification`` (MiniLM-L6 size: hidden 384, 6 layers, 12 heads, intermediate
1536, vocab 30522, ~22.7M parameters, dropout 0, 2 labels) on 8 x 128 random token ids (weights
dominate). For each method a fresh model (seed 0) is built; one no-grad eval forward is run
unmeasured (warm-up), then :class:`rsft.memory.PeakMemory` (the torch profiler's allocation
records: the largest running sum of bytes allocated and freed, above what was held on entry)
measures (a) one no-grad eval forward: the inference reference, once per model, and (b) the
first two training steps in one block, so the peak is the larger of the two steps' with the
optimizer state the first step creates still counted in the second. Gradient methods (sgd,
sgd + momentum 0.9, adam; train mode): forward, ``loss.backward()``, ``optimizer.step()``,
``zero_grad(set_to_none=True)``. Parameter-level methods (eval mode, as rsft runs them):
``ZerothOrderSGD(eps=1e-3)``, ``Metropolis(sigma=1e-3, restore=exact | subtract)`` and
``Metropolis(proposal="mala")``, each ``.step(closure)`` with a closure that computes the
batch's cross-entropy (no ``no_grad`` in it: the methods handle that; MALA differentiates it).
For Metropolis and MALA the second step's proposed loss is raised by 1e6 after its forward, so
the second step is always a rejection and the undo path is inside the measured block (the
first step's decision is as drawn and is reported). Reported per method: weights MB, peak
above start MB, peak total = weights + peak, the ratio to the inference total (weights +
inference peak) and to the weights. The bytes an exact Metropolis step holds to undo:
one ``InPlaceStep(exact=True, scale=1e-3)`` applied to all parameters, ``fix_bytes() / numel``,
then undone (and the weights checked bit for bit against a copy).

Part B (acceptance rate against d). The embedded digits task (``data/digits``, built with
``rsft.tasks.embedded.prepare_digits`` when missing): the pretrained ``data/digits/pretrained``
model in eval mode, the 697-row ``pool.parquet``; loss = mean cross-entropy of a batch of 64
rows drawn without replacement from the pool, a new batch each step (the same batch for L(θ)
and L(θ + Δθ)), T = 1e-3 (about 1/N). Subsets by name pattern, sorted by size: biases
(``*.bias``), head (``classifier.*``), head + biases, last hidden layer + head (``blocks.2.*``,
``classifier.*``), all parameters. For every subset and seed, from the pretrained weights
(restored from a copy of the state_dict before each run): (i) fixed σ = 1e-2
(``target_acceptance=None``): the acceptance rate over 200 proposals, and what it is made
of: the mean and sd of ΔL / T = (L(θ + Δθ) - L(θ)) / T and the fraction with ΔL < 0; (ii)
adaptive σ (target 0.234, ``adapt_every`` 20, start 1e-2, gain 1): the σ after 300 proposals,
the acceptance over the last 100 and the mean batch loss L(θ) over the first 20 and the last 20
steps. The batch sequence depends only on the seed, so every subset sees the same batches.
Means over seeds are printed (each seed's values are in the JSON). σ's adapter moves log σ down
by at most gain · target / sqrt(k) in window k (when nothing is accepted), so in 300 proposals
it can shrink σ by at most a known factor: that floor is printed and drawn. The plot
(``docs/images/param_acceptance.png``): left, acceptance at fixed σ against d (log x); right,
the adapted σ against d (log-log) with a 1/sqrt(d) reference line through the smallest subset.
"""

from __future__ import annotations

import argparse
import copy
import gc
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from bench_common import command_line, machine_info, write_report  # noqa: E402
from torch import nn  # noqa: E402

from rsft.memory import PeakMemory, parameter_bytes  # noqa: E402
from rsft.param_level import InPlaceStep, Metropolis, ZerothOrderSGD, select_parameters  # noqa: E402
from rsft.param_level.perturb import CHUNK

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_OUT = BENCH_DIR / "results" / "param_level.json"
DEFAULT_PLOT = REPO / "docs" / "images" / "param_acceptance.png"
DIGITS = Path("data/digits")
MB = 1e6

# Part A
METHODS = (
    "sgd",
    "sgd_momentum",
    "adam",
    "zo_sgd",
    "metropolis_exact",
    "metropolis_subtract",
    "mala",
)
GRADIENT_METHODS = ("sgd", "sgd_momentum", "adam")
PARAM_LEVEL_SIGMA = 1e-3
FORCED_REJECTION = 1e6  # added to the second step's proposed loss (Metropolis, MALA)
INFERENCE_CRITERION = 1.25  # claim 1: peak total / inference total for zo_sgd and Metropolis
BERT_FULL = {"hidden": 384, "layers": 6, "heads": 12, "intermediate": 1536, "vocab": 30522}
BERT_QUICK = {"hidden": 128, "layers": 2, "heads": 2, "intermediate": 512, "vocab": 30522}

# Part B
TEMPERATURE = 1e-3
BATCH_B = 64
FIXED_SIGMA = 1e-2
TARGET_ACCEPTANCE = 0.234
ADAPT_EVERY = 20
ADAPT_GAIN = 1.0
LOSS_WINDOW = 20
LAST_WINDOW = 100
SUBSETS: dict[str, list[str]] = {
    "biases": ["*.bias"],
    "head": ["classifier.*"],
    "head+biases": ["classifier.*", "*.bias"],
    "last hidden+head": ["blocks.2.*", "classifier.*"],
    "all": ["*"],
}


# --------------------------------------------------------------------------- part A: models


class Workload:
    """A model factory, one batch, and the batch's loss."""

    def __init__(
        self,
        name: str,
        build: Callable[[], nn.Module],
        batch: dict[str, torch.Tensor],
        loss: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor],
        description: str,
    ) -> None:
        self.name, self.build, self.batch, self.loss = name, build, batch, loss
        self.description = description


def digits_workload() -> Workload:
    from rsft.tasks.digits import DigitsNet

    def build() -> nn.Module:
        torch.manual_seed(0)
        return DigitsNet(width=32)

    gen = torch.Generator().manual_seed(0)
    batch = {
        "x": torch.randn(32, 64, generator=gen),
        "y": torch.randint(0, 10, (32,), generator=gen),
    }

    def loss(model: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(model(b["x"]), b["y"])

    return Workload("digits_cnn", build, batch, loss, "DigitsNet(width=32), batch 32 x 64 floats")


def bert_workload(size: dict[str, int], batch_size: int, seq_len: int) -> Workload:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=size["vocab"],
        hidden_size=size["hidden"],
        num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"],
        intermediate_size=size["intermediate"],
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=2,
    )

    def build() -> nn.Module:
        torch.manual_seed(0)
        return BertForSequenceClassification(config)

    gen = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(0, size["vocab"], (batch_size, seq_len), generator=gen),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
        "labels": torch.randint(0, 2, (batch_size,), generator=gen),
    }

    def loss(model: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
        out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        return F.cross_entropy(out.logits, b["labels"])

    desc = (
        f"BertForSequenceClassification (random init, hidden {size['hidden']}, "
        f"{size['layers']} layers, {size['heads']} heads, intermediate {size['intermediate']}, "
        f"vocab {size['vocab']}, dropout 0), batch {batch_size} x {seq_len} token ids"
    )
    return Workload("bert", build, batch, loss, desc)


# --------------------------------------------------------------------------- part A: measure


def peak_of(fn: Callable[[], Any]) -> tuple[int, Any]:
    gc.collect()
    with PeakMemory("cpu") as m:
        out = fn()
    assert m.peak_bytes is not None
    return m.peak_bytes, out


def inference_peak(work: Workload) -> int:
    model = work.build().eval()
    with torch.no_grad():
        work.loss(model, work.batch)  # warm-up, unmeasured

    def forward() -> None:
        with torch.no_grad():
            work.loss(model, work.batch)

    peak, _ = peak_of(forward)
    return peak


def fix_bytes_per_param(work: Workload) -> dict[str, Any]:
    """Bytes one exact InPlaceStep holds to undo, per parameter; and whether undo is exact."""
    model = work.build()
    params = [p for p in model.parameters()]
    before = [p.detach().clone() for p in params]
    step = InPlaceStep(params, seed=123, scale=PARAM_LEVEL_SIGMA, exact=True)
    step.apply()
    held = step.fix_bytes()
    fallback = sum(f.index.numel() for f in step._fixes or [])
    step.undo()
    numel = sum(p.numel() for p in params)
    exact = all(
        torch.equal(a.view(torch.int32), b.detach().view(torch.int32))
        for a, b in zip(before, params)
    )
    return {
        "fix_bytes": held,
        "numel": numel,
        "fix_bytes_per_param": held / numel,
        "fallback_elements": fallback,
        "restored_bit_for_bit": exact,
    }


def training_peak(work: Workload, method: str) -> dict[str, Any]:
    """Peak over the first two training steps of ``method`` (one PeakMemory block)."""
    model = work.build()
    gradient = method in GRADIENT_METHODS
    model.train(gradient)
    with torch.no_grad():
        work.loss(model, work.batch)  # warm-up forward, unmeasured
    batch = work.batch
    decisions: list[str] = []

    if gradient:
        if method == "adam":
            opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        else:
            momentum = 0.9 if method == "sgd_momentum" else 0.0
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=momentum)

        def one_step(step: int) -> None:
            loss = work.loss(model, batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    elif method == "zo_sgd":
        zo = ZerothOrderSGD(model, lr=1e-6, eps=PARAM_LEVEL_SIGMA, seed=0)

        def one_step(step: int) -> None:
            zo.step(lambda: work.loss(model, batch))

    else:
        mh = Metropolis(
            model,
            sigma=PARAM_LEVEL_SIGMA,
            temperature=1.0,
            proposal="mala" if method == "mala" else "random_walk",
            target_acceptance=None,
            restore="subtract" if method == "metropolis_subtract" else "exact",
            seed=0,
        )

        def one_step(step: int) -> None:
            calls = [0]

            def closure() -> torch.Tensor:
                calls[0] += 1
                loss = work.loss(model, batch)
                if step == 1 and calls[0] == 2:  # the second step's proposal: force a rejection
                    loss = loss + FORCED_REJECTION
                return loss

            res = mh.step(closure)
            decisions.append("accept" if res.accepted else "reject")

    for p in model.parameters():  # as rsft: no graph for the forward-only methods
        p.requires_grad_(gradient or method == "mala")

    def two_steps() -> None:
        one_step(0)
        one_step(1)

    t0 = time.perf_counter()
    peak, _ = peak_of(two_steps)
    seconds = time.perf_counter() - t0
    return {
        "method": method,
        "mode": "train" if gradient else "eval",
        "weights_bytes": parameter_bytes(model),
        "peak_bytes": peak,
        "decisions": decisions,
        "profiled_seconds": seconds,
    }


def part_a(work: Workload) -> dict[str, Any]:
    t0 = time.perf_counter()
    inf_peak = inference_peak(work)
    rows = []
    for method in METHODS:
        row = training_peak(work, method)
        weights = row["weights_bytes"]
        inf_total = weights + inf_peak
        row["total_bytes"] = weights + row["peak_bytes"]
        row["ratio_to_inference"] = row["total_bytes"] / inf_total
        row["ratio_to_weights"] = row["total_bytes"] / weights
        rows.append(row)
        print(f"  [{work.name}] {method}: {time.perf_counter() - t0:.0f} s", flush=True)
    fix = fix_bytes_per_param(work)
    model = work.build()
    weights = parameter_bytes(model)
    numel = sum(p.numel() for p in model.parameters())
    largest = max(p.numel() for p in model.parameters())
    del model
    return {
        "model": work.name,
        "description": work.description,
        "parameters": numel,
        "largest_tensor_numel": largest,
        "weights_bytes": weights,
        "inference_peak_bytes": inf_peak,
        "inference_total_bytes": weights + inf_peak,
        "methods": rows,
        "exact_restore": fix,
        "seconds": time.perf_counter() - t0,
    }


def print_part_a(res: dict[str, Any]) -> None:
    w, inf = res["weights_bytes"], res["inference_peak_bytes"]
    print()
    print(f"Part A - {res['model']}: {res['description']}")
    print(
        f"  {res['parameters'] / 1e6:.2f}M parameters ({w / MB:.1f} MB fp32; largest tensor "
        f"{res['largest_tensor_numel'] / 1e6:.2f}M elements). Inference (no-grad eval forward): "
        f"peak {inf / MB:.2f} MB above the weights, total {(w + inf) / MB:.1f} MB "
        f"({(w + inf) / w:.2f}x weights)."
    )
    head = (
        f"  {'method':<20} {'mode':<5} {'weights MB':>10} {'peak MB':>9} {'total MB':>9} "
        f"{'x inference':>11} {'x weights':>9}  decisions"
    )
    print(head)
    print("  " + "-" * (len(head) - 2))
    for r in res["methods"]:
        print(
            f"  {r['method']:<20} {r['mode']:<5} {r['weights_bytes'] / MB:>10.1f} "
            f"{r['peak_bytes'] / MB:>9.2f} {r['total_bytes'] / MB:>9.1f} "
            f"{r['ratio_to_inference']:>11.2f} {r['ratio_to_weights']:>9.2f}  "
            f"{', '.join(r['decisions']) or '-'}"
        )
    largest = min(res["largest_tensor_numel"], CHUNK)
    print(
        f"  (Steps regenerate the noise in chunks of at most {CHUNK:,} elements: "
        f"{4 * largest / MB:.1f} MB of fp32 noise at a time.)"
    )
    fix = res["exact_restore"]
    print(
        f"  Exact restore: one InPlaceStep(exact=True) holds {fix['fix_bytes'] / MB:.2f} MB = "
        f"{fix['fix_bytes_per_param']:.4f} bytes per tuned parameter "
        f"({fix['fallback_elements']} elements kept whole); undone bit for bit: "
        f"{'yes' if fix['restored_bit_for_bit'] else 'NO'}."
    )


# --------------------------------------------------------------------------- part B


def load_digits() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    from rsft.models import load_classifier
    from rsft.tasks.embedded import prepare_digits

    prepare_digits(DIGITS)  # the splits and the pretrained model, as `rsft prepare digits`
    clf = load_classifier(str(DIGITS / "pretrained"), 10, classes=[str(i) for i in range(10)])
    table = pq.read_table(DIGITS / "pool.parquet")
    x = torch.tensor(np.stack(table.column("pixels").to_numpy(zero_copy_only=False)))
    y = torch.tensor(table.column("label").to_numpy(), dtype=torch.long)
    model = clf.model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, x.float(), y


def chain(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    patterns: list[str],
    steps: int,
    seed: int,
    adaptive: bool,
) -> dict[str, Any]:
    mh = Metropolis(
        model,
        patterns=patterns,
        sigma=FIXED_SIGMA,
        temperature=TEMPERATURE,
        target_acceptance=TARGET_ACCEPTANCE if adaptive else None,
        adapt_every=ADAPT_EVERY,
        adapt_gain=ADAPT_GAIN,
        seed=seed,
    )
    batches = torch.Generator().manual_seed(10_000 + seed)
    n = len(y)
    results = []
    sigmas = [mh.sigma]
    for _ in range(steps):
        idx = torch.randperm(n, generator=batches)[:BATCH_B]
        xb, yb = x[idx], y[idx]
        results.append(mh.step(lambda xb=xb, yb=yb: F.cross_entropy(model(xb), yb)))
        if mh.t % ADAPT_EVERY == 0:
            sigmas.append(mh.sigma)
    accepted = [r.accepted for r in results]
    losses = [r.loss for r in results]
    dl = [(r.proposed_loss - r.loss) / TEMPERATURE for r in results]
    window = min(LOSS_WINDOW, steps)
    last = min(LAST_WINDOW, steps)
    return {
        "acceptance": mh.acceptance_rate,
        "last_window_acceptance": sum(accepted[-last:]) / last,
        "sigma_final": mh.sigma,
        "sigma_per_window": sigmas,
        "loss_first": statistics.fmean(losses[:window]),
        "loss_last": statistics.fmean(losses[-window:]),
        "delta_over_t_mean": statistics.fmean(dl),
        "delta_over_t_sd": statistics.pstdev(dl),
        "delta_negative": sum(x < 0 for x in dl) / len(dl),
    }


def adapter_floor(steps: int) -> float:
    """The smallest σ the adapter can reach from FIXED_SIGMA in ``steps`` proposals."""
    windows = steps // ADAPT_EVERY
    shrink = sum(ADAPT_GAIN * TARGET_ACCEPTANCE / math.sqrt(k) for k in range(1, windows + 1))
    return FIXED_SIGMA * math.exp(-shrink)


def part_b(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    model, x, y = load_digits()
    initial = copy.deepcopy(model.state_dict())
    sizes = {
        name: sum(p.numel() for p in select_parameters(model, pats)[1])
        for name, pats in SUBSETS.items()
    }
    order = sorted(SUBSETS, key=lambda name: sizes[name])
    rows = []
    for name in order:
        runs: dict[str, list[dict[str, Any]]] = {"fixed": [], "adaptive": []}
        for seed in args.seeds:
            for kind, steps in (("fixed", args.fixed_steps), ("adaptive", args.adapt_steps)):
                model.load_state_dict(initial)
                runs[kind].append(
                    chain(model, x, y, SUBSETS[name], steps, seed, adaptive=kind == "adaptive")
                )
        model.load_state_dict(initial)
        fixed, adapt = runs["fixed"], runs["adaptive"]
        sigma = math.exp(statistics.fmean(math.log(r["sigma_final"]) for r in adapt))
        rows.append(
            {
                "subset": name,
                "patterns": SUBSETS[name],
                "d": sizes[name],
                "fixed_acceptance": statistics.fmean(r["acceptance"] for r in fixed),
                "fixed_loss_first": statistics.fmean(r["loss_first"] for r in fixed),
                "fixed_loss_last": statistics.fmean(r["loss_last"] for r in fixed),
                "fixed_delta_over_t_mean": statistics.fmean(r["delta_over_t_mean"] for r in fixed),
                "fixed_delta_over_t_sd": statistics.fmean(r["delta_over_t_sd"] for r in fixed),
                "fixed_delta_negative": statistics.fmean(r["delta_negative"] for r in fixed),
                "adapted_sigma": sigma,  # geometric mean over seeds
                "sigma_sqrt_d": sigma * math.sqrt(sizes[name]),
                "last_window_acceptance": statistics.fmean(
                    r["last_window_acceptance"] for r in adapt
                ),
                "loss_first": statistics.fmean(r["loss_first"] for r in adapt),
                "loss_last": statistics.fmean(r["loss_last"] for r in adapt),
                "runs": runs,
            }
        )
        print(f"  [digits] {name} (d = {sizes[name]}): {time.perf_counter() - t0:.0f} s")
    log_d = [math.log(r["d"]) for r in rows]
    log_s = [math.log(r["adapted_sigma"]) for r in rows]
    slope = float(np.polyfit(log_d, log_s, 1)[0]) if len(rows) > 1 else math.nan
    acc = [r["fixed_acceptance"] for r in rows]
    return {
        "rows": rows,
        "sigma_slope_vs_d": slope,
        "fixed_acceptance_nonincreasing": all(a >= b for a, b in zip(acc, acc[1:])),
        "adapter_floor_sigma": adapter_floor(args.adapt_steps),
        "settings": {
            "temperature": TEMPERATURE,
            "batch_size": BATCH_B,
            "pool_rows": len(y),
            "fixed_sigma": FIXED_SIGMA,
            "fixed_steps": args.fixed_steps,
            "adapt_steps": args.adapt_steps,
            "target_acceptance": TARGET_ACCEPTANCE,
            "adapt_every": ADAPT_EVERY,
            "adapt_gain": ADAPT_GAIN,
            "seeds": args.seeds,
        },
        "seconds": time.perf_counter() - t0,
    }


def print_part_b(res: dict[str, Any]) -> None:
    s = res["settings"]
    print()
    print(
        f"Part B - acceptance against tuned parameters d: pretrained digits model, eval mode, "
        f"T = {s['temperature']:g}, batch {s['batch_size']} of the {s['pool_rows']}-row pool, "
        f"seeds {s['seeds']} (means)"
    )
    print(
        f"  fixed: sigma = {s['fixed_sigma']:g}, {s['fixed_steps']} proposals; adaptive: start "
        f"{s['fixed_sigma']:g}, target {s['target_acceptance']}, every {s['adapt_every']}, "
        f"{s['adapt_steps']} proposals (last-window acceptance over the last "
        f"{min(LAST_WINDOW, s['adapt_steps'])}; loss = mean L(theta) of the first / last "
        f"{min(LOSS_WINDOW, s['adapt_steps'])} steps)"
    )
    head = (
        f"  {'subset':<18} {'d':>7} {'acc@fixed':>9} {'adapted sigma':>13} "
        f"{'sigma*sqrt(d)':>13} {'acc last':>8}  {'loss first -> last':>18}"
    )
    print(head)
    print("  " + "-" * (len(head) - 2))
    for r in res["rows"]:
        print(
            f"  {r['subset']:<18} {r['d']:>7} {r['fixed_acceptance']:>9.3f} "
            f"{r['adapted_sigma']:>13.2e} {r['sigma_sqrt_d']:>13.3f} "
            f"{r['last_window_acceptance']:>8.3f}  "
            f"{r['loss_first']:>8.4f} -> {r['loss_last']:.4f}"
        )
    print(
        "  At fixed sigma, dL = L(theta + dtheta) - L(theta) on the step's batch, in units of T "
        "(means over seeds of each chain's mean and sd):"
    )
    for r in res["rows"]:
        print(
            f"    {r['subset']:<18} mean {r['fixed_delta_over_t_mean']:>+8.2f}  "
            f"sd {r['fixed_delta_over_t_sd']:>7.2f}  P(dL < 0) {r['fixed_delta_negative']:.3f}"
        )
    print(
        f"  Fitted slope of log(adapted sigma) against log(d): {res['sigma_slope_vs_d']:+.3f} "
        "(1/sqrt(d) would be -0.5)."
    )
    print(
        f"  The adapter can lower sigma to at most {res['adapter_floor_sigma']:.2e} in "
        f"{s['adapt_steps']} proposals (every window rejecting everything)."
    )


def plot(res: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    rows = res["rows"]
    d = np.array([r["d"] for r in rows], dtype=float)
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    for r in rows:  # each seed, faint
        seeds_fixed = [run["acceptance"] for run in r["runs"]["fixed"]]
        left.plot([r["d"]] * len(seeds_fixed), seeds_fixed, ".", color="C0", alpha=0.3)
        seeds_sigma = [run["sigma_final"] for run in r["runs"]["adaptive"]]
        right.plot([r["d"]] * len(seeds_sigma), seeds_sigma, ".", color="C1", alpha=0.3)
    left.plot(d, [r["fixed_acceptance"] for r in rows], "o-", color="C0", label="mean over seeds")
    left.legend(fontsize=8, loc="lower left")
    for r in rows:
        left.annotate(r["subset"], (r["d"], r["fixed_acceptance"]), fontsize=8,
                      xytext=(4, 4), textcoords="offset points")  # fmt: skip
    left.set_xscale("log")
    left.set_ylim(bottom=0)
    left.set_xlabel("tuned parameters d")
    left.set_ylabel("acceptance rate")
    left.set_title(f"fixed sigma = {FIXED_SIGMA:g}, T = {TEMPERATURE:g}")
    left.grid(True, which="both", alpha=0.3)

    sig = np.array([r["adapted_sigma"] for r in rows])
    right.loglog(d, sig, "o-", color="C1", label="adapted sigma (geometric mean)")
    grid = np.geomspace(d.min(), d.max(), 50)
    right.loglog(grid, sig[0] * np.sqrt(d[0] / grid), "k--", lw=1, label="1/sqrt(d) reference")
    right.axhline(FIXED_SIGMA, color="grey", lw=0.8, ls=":", label="start sigma")
    right.axhline(res["adapter_floor_sigma"], color="C3", lw=0.8, ls="-.", label="adapter's reach")
    right.set_xlabel("tuned parameters d")
    right.set_ylabel("sigma")
    steps = res["settings"]["adapt_steps"]
    right.set_title(f"sigma after {steps} proposals (target {TARGET_ACCEPTANCE})")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


# --------------------------------------------------------------------------- main


def claims(a_results: list[dict[str, Any]], b: dict[str, Any]) -> list[str]:
    lines = []
    for res in a_results:
        by = {r["method"]: r for r in res["methods"]}
        forward_only = ("zo_sgd", "metropolis_exact", "metropolis_subtract")
        within = {m: by[m]["ratio_to_inference"] <= INFERENCE_CRITERION for m in forward_only}
        lines.append(
            f"{res['model']}: peak total / inference total: "
            + ", ".join(
                f"{m} {by[m]['ratio_to_inference']:.2f} ({'ok' if within[m] else 'NOT within'})"
                for m in forward_only
            )
            + f" [criterion <= {INFERENCE_CRITERION}]; adam {by['adam']['ratio_to_inference']:.2f}"
            f" ({by['adam']['ratio_to_weights']:.2f}x weights), sgd "
            f"{by['sgd']['ratio_to_weights']:.2f}x weights, mala "
            f"{by['mala']['ratio_to_weights']:.2f}x weights."
        )
    lines.append(
        "acceptance at fixed sigma non-increasing in d: "
        f"{'yes' if b['fixed_acceptance_nonincreasing'] else 'NO'} ("
        + ", ".join(f"{r['d']}: {r['fixed_acceptance']:.3f}" for r in b["rows"])
        + ")."
    )
    lines.append(
        f"adapted sigma against d: slope {b['sigma_slope_vs_d']:+.3f} on log-log (1/sqrt(d): -0.5)."
    )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke mode: small and fast")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="B: seeds (0 1 2)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--out", type=Path, default=None, help="results JSON")
    p.add_argument("--plot", type=Path, default=None, help="acceptance plot (PNG)")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.fixed_steps = 40 if args.quick else 200
    args.adapt_steps = 60 if args.quick else 300
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    quick_dir = Path(tempfile.mkdtemp(prefix="rsft-param-level-")) if args.quick else None
    out = args.out or (quick_dir / "param_level.json" if quick_dir else DEFAULT_OUT)
    png = args.plot or (quick_dir / "param_acceptance.png" if quick_dir else DEFAULT_PLOT)
    load_before = os.getloadavg()
    t_start = time.perf_counter()

    print("Part A: peak memory of two training steps against one inference pass", flush=True)
    bert = bert_workload(BERT_QUICK if args.quick else BERT_FULL, 8, 64 if args.quick else 128)
    a_results = [part_a(digits_workload()), part_a(bert)]
    print("Part B: acceptance against the number of tuned parameters", flush=True)
    b_res = part_b(args)
    plot(b_res, png)
    load_after = os.getloadavg()

    for res in a_results:
        print_part_a(res)
    print_part_b(b_res)
    print()
    print("Claims:")
    claim_lines = claims(a_results, b_res)
    for line in claim_lines:
        print(f"  - {line}")

    report = {
        "memory": {res["model"]: res for res in a_results},
        "acceptance": b_res,
        "claims": claim_lines,
        "settings": {
            "quick": args.quick,
            "param_level_sigma": PARAM_LEVEL_SIGMA,
            "forced_rejection_offset": FORCED_REJECTION,
            "inference_criterion": INFERENCE_CRITERION,
            "torch_threads": args.threads,
            "plot": str(png),
        },
        "machine": {**machine_info(), "loadavg_before": load_before, "loadavg_after": load_after},
        "total_seconds": time.perf_counter() - t_start,
        "command": command_line("param_level.py", argv),
    }
    write_report(out, report)
    print(f"wrote {out} and {png} ({report['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
