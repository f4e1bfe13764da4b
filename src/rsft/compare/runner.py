"""``rsft compare``: every method on the same data, splits, seeds and epochs, side by side.

Seeds 000 and 001 ask whether RSFT beats plain fine-tuning; this answers it with measurements.
All run configs are built and validated before the first run starts. Each run writes its own
results.json; a compare that was killed picks up finished runs instead of redoing them, and
an interrupted run resumes from its checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from accelerate import Accelerator

from rsft import __version__
from rsft.compare.files import write_results
from rsft.compare.plot import plot_results
from rsft.compare.summary import ACCURACY_KEY, DEFAULT_METRICS, summarize
from rsft.compare.table import format_table, metric_note
from rsft.config import (
    ConfigError,
    check_output_dir,
    deep_merge,
    from_dict,
    opt,
    replace,
    section,
    to_dict,
)
from rsft.output_lock import output_lock
from rsft.portable import kernel_settings
from rsft.progress import progress_bar
from rsft.same_run import identity_of, run_identity
from rsft.training import FineTuner, TrainConfig
from rsft.training.config import preflight
from rsft.training.results import RunResult, result_fields
from rsft.training.resume import data_digest

RECORD_KEYS = result_fields(
    ACCURACY_KEY,
    "initial_test_accuracy",
    *(m for m in DEFAULT_METRICS if m != "domain_auc"),
    "envelope",
    "history",
    "diverged",
    "divergence",
    "test_correct",
    "test_size",
)
"""The fields of a run's results.json that a compare record keeps: the accuracy, the metrics
the summary averages (``domain_auc`` is taken from the run's ``weights``), and what the table
and plot read besides. ``test_correct`` (1/0 per test item, or a custom task.metric's score
per item, in test-set order) lets the intervals cover the test set's sampling error."""


def _record(method: str, seed: int, result: dict[str, Any]) -> dict[str, Any]:
    """One compare record: the method, the seed and the fields the summary reads."""
    weights = result.get("weights") or {}
    return {
        "method": method,
        "seed": seed,
        **{k: result.get(k) for k in RECORD_KEYS},
        "domain_auc": weights.get("domain_auc"),
    }


GENERATION_ONLY = frozenset(
    {"generation", "engine", "verifier", "selection", "sft", "rounds", "train_on", "start_from"}
)
"""Top-level keys only an ``rsft rft`` config has: a base with one makes RFT arms."""


@section("")
@dataclass
class CompareConfig:
    base: dict[str, Any] = opt(
        factory=dict,
        help="The config shared by every method: the options of rsft train, or of rsft rft "
        "(then every method is an RFT arm: see level).",
    )
    methods: dict[str, Any] = opt(
        factory=dict,
        help="Method name -> overrides of base, e.g. "
        "{plain: {}, rsft: {rejection: {weights: balance}}}.",
    )
    seeds: list[int] = opt(factory=lambda: [0, 1, 2], help="Every method runs once per seed.")
    baseline: str = opt("plain", help="The method the others are compared against.")
    output_dir: str = opt("runs/compare", help="Results, table, plot, and one folder per run.")
    level: Literal["auto", "training", "generation"] = opt(
        "auto",
        help="training: methods are rsft train configs; generation: rsft rft configs (arms "
        "such as base, sft-reference, rft, random); auto: generation when base has a section "
        "only rsft rft has (generation, selection, sft, verifier, engine, rounds, train_on).",
    )

    @property
    def generation(self) -> bool:
        """Whether the methods are RFT arms (``rsft rft`` configs)."""
        if self.level != "auto":
            return self.level == "generation"
        return bool(set(self.base) & GENERATION_ONLY)

    def __post_init__(self) -> None:
        if not self.methods:
            raise ConfigError("compare needs at least one method under 'methods'.")
        if not self.seeds:
            raise ConfigError("compare needs at least one seed under 'seeds'.")
        for name, over in self.methods.items():
            # Each method's runs go to output_dir/<name>/seed-<seed>: the name is a folder.
            if not isinstance(name, str) or name in ("", ".", "..") or "/" in name:
                raise ConfigError(
                    f"methods: {name!r} cannot name a method: its runs are saved in "
                    "output_dir/<method>, so a method name is a folder name (not empty, no "
                    "'/', not '.' or '..'). Rename it, e.g. rsft-balance."
                )
            if not isinstance(over, dict) and over is not None:
                raise ConfigError(f"methods.{name} must be a mapping of overrides (or {{}}).")


def build_runs(cfg: CompareConfig) -> list[tuple[str, int, TrainConfig]]:
    """Every (method, seed, config), validated up front so a typo fails before any training."""
    runs = []
    for method, over in cfg.methods.items():
        merged = deep_merge(cfg.base, over or {})
        for seed in cfg.seeds:
            d = deep_merge(
                merged,
                {
                    "seed": seed,
                    "output_dir": str(Path(cfg.output_dir) / method / f"seed-{seed}"),
                },
            )
            try:
                run_cfg = from_dict(TrainConfig, d)
                preflight(run_cfg)
                runs.append((method, seed, run_cfg))
            except ConfigError as err:
                raise ConfigError(f"method {method!r}: {err}") from err
    return runs


def _finished(run_cfg: TrainConfig) -> RunResult | None:
    """The run's results if it already finished as this same run: the same identity
    (:func:`rsft.same_run.run_identity`), data, rsft version and kernels.

    A run that finished with other options, version, data (a file edited in place) or
    kernels (other kernels give other bits) is stale: the caller runs it again from the
    start (its old checkpoints would otherwise be refused as belonging to another config or
    data). Options outside the identity (progress, output paths, ...) do not make it stale.
    """
    path = Path(run_cfg.output_dir) / "results.json"
    if not path.is_file():
        return None
    try:
        result = RunResult.read(path)
    except (TypeError, ValueError):  # unreadable, or written by another version: run again
        return None
    same = (
        identity_of(result.get("config") or {}, "TrainConfig") == run_identity(run_cfg)
        and result.get("rsft_version") == __version__
        and result.get("kernels") == kernel_settings()  # other kernels give other bits
    )
    if same and result.get("data") == data_digest(run_cfg):
        return result
    return None


def _to_run(run_cfg: TrainConfig) -> TrainConfig:
    """The config a run of the grid trains with: quiet (the grid has its own bar), and from
    the start when its folder holds a stale run's results.json (nothing there to resume).
    ``run_cfg`` itself is left as it is: what a run records is the config it was given."""
    stale = (Path(run_cfg.output_dir) / "results.json").is_file()
    return replace(run_cfg, progress="quiet", resume="never" if stale else run_cfg.resume)


def _run_summary(method: str, seed: int, result: dict[str, Any], reused: bool) -> str:
    """``plain seed 0: test accuracy 84.0%, 3.2 s`` (``reused`` for a run finished earlier)."""
    parts = [f"{method} seed {seed}"]
    if result.get("test_accuracy") is not None:
        parts.append(f"test accuracy {100 * result['test_accuracy']:.1f}%")
    if reused:
        parts.append("reused")
    elif result.get("wall_time") is not None:
        parts.append(f"{result['wall_time']:.1f} s")
    return f"{parts[0]}: {', '.join(parts[1:])}" if len(parts) > 1 else parts[0]


def run_compare(cfg: CompareConfig, accelerator: Accelerator | None = None) -> dict[str, Any]:
    """Run the grid, then write results.json/csv, summary.csv, compare.png and print the
    table; ``output_dir`` is locked meanwhile (:mod:`rsft.output_lock`). RFT arms
    (:attr:`CompareConfig.generation`) run in :mod:`rsft.compare.rft_runner`."""
    if cfg.generation:
        from rsft.compare.rft_runner import run_rft_compare

        return run_rft_compare(cfg)
    runs = build_runs(cfg)
    accelerator = accelerator or Accelerator()
    main = accelerator.is_main_process
    for path in [cfg.output_dir, *(run_cfg.output_dir for _, _, run_cfg in runs)]:
        check_output_dir(path, main_process=main)
    with output_lock(cfg.output_dir, "rsft compare", accelerator):
        return _run_grid(cfg, runs, accelerator)


def _run_grid(
    cfg: CompareConfig, runs: list[tuple[str, int, TrainConfig]], accelerator: Accelerator
) -> dict[str, Any]:
    """Every run (each locks its own folder), then the files of the comparison."""
    records = []
    # On a terminal a bar over the runs; in a log, one line per finished run.
    bar = progress_bar(
        runs,
        desc="compare",
        unit="runs",
        show=accelerator.is_local_main_process,
        per_item=True,
        leave=True,
    )
    for method, seed, run_cfg in bar:
        bar.set_postfix_str(f"{method} seed {seed}")
        reused = _finished(run_cfg)
        result = reused or FineTuner(_to_run(run_cfg), accelerator).train()
        bar.set_postfix_str(_run_summary(method, seed, result, reused is not None))
        records.append(_record(method, seed, result))
    rows = summarize(records, baseline=cfg.baseline)
    out = Path(cfg.output_dir)
    files: dict[str, Any] = {}
    table = format_table(rows)
    before = [
        r["initial_test_accuracy"] for r in records if r.get("initial_test_accuracy") is not None
    ]
    if before:
        table += (
            f"\n\nBefore fine-tuning, the pretrained model's target accuracy: "
            f"{100 * sum(before) / len(before):.1f}% (mean over runs)."
        )
    table += metric_note(run_cfg.task.metric for _, _, run_cfg in runs)
    if accelerator.is_main_process:
        meta = {"config": to_dict(cfg), "seeds": cfg.seeds}
        files = write_results(records, rows, out, meta=meta, table=table)
        files["plot"] = plot_results(records, rows, out / "compare.png")
    return {"records": records, "summary": rows, "table": table, "files": files}
