"""The child side of :mod:`rsft.generation.sft_launch`.

``python -m rsft.generation.sft_worker launch ARGS...`` arms the parent-death signal and
runs accelerate's launcher with ARGS; ``python -m rsft.generation.sft_worker train JOB`` is
what every launched process runs: it reads the JSON job spec and calls ``sft_train``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from rsft.atomic import read_jsonl
from rsft.processes import die_with_parent

PARENT_PID_ENV = "RSFT_SFT_PARENT_PID"  # the pipeline's pid, then the launcher's
JOB_VERSION = 2  # 2: the stage's name ("stage"), which its errors start with
JOB_KEYS = {
    "version": int,
    "base": str,
    "records": list,
    "out": str,
    "sft": dict,
    "seed": int,
    "dtype": str,
    "device": str,
    "trust_remote_code": bool,
    "stage": str,
}


def _expected_parent() -> int | None:
    value = os.environ.get(PARENT_PID_ENV, "")
    return int(value) if value.isdigit() else None


def read_job(path: str | Path) -> dict[str, Any]:
    """The job spec, checked key by key (JSON only: reading it runs no code)."""
    job = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(job, dict):
        raise ValueError(f"{path}: a job spec is a JSON object.")
    for key, tp in JOB_KEYS.items():
        if not isinstance(job.get(key), tp):
            raise ValueError(f"{path}: {key!r} must be {tp.__name__}, got {job.get(key)!r}.")
    if job["version"] != JOB_VERSION:
        raise ValueError(f"{path}: job spec version {job['version']} is not {JOB_VERSION}.")
    return job


def train(job_path: str) -> int:
    """One launched process: the same ``sft_train`` as a one-process run."""
    die_with_parent(signal.SIGKILL, _expected_parent())
    job = read_job(job_path)
    from rsft.config import from_dict
    from rsft.generation.sft import sft_train
    from rsft.generation.sft_config import SFTSection
    from rsft.generation.sft_guard import SFTDivergenceError, report_divergence

    cfg = from_dict(SFTSection, job["sft"], "sft")
    try:
        sft_train(
            job["base"],
            [row for name in job["records"] for row in read_jsonl(name)],
            job["out"],
            cfg,
            seed=job["seed"],
            dtype=job["dtype"],
            device=job["device"],
            progress=True,  # not a terminal: transformers prints each logged step to the log
            trust_remote_code=job["trust_remote_code"],
            stage=job["stage"],
        )
    except SFTDivergenceError as err:  # the pipeline raises it again, not a launch failure
        report_divergence(job["out"], err)
        raise
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return 0


def launch(args: list[str]) -> int:
    """accelerate's own ``accelerate launch``, after arming the parent-death signal. Its
    workers learn this pid, so they can arm theirs against it."""
    die_with_parent(signal.SIGKILL, _expected_parent())
    os.environ[PARENT_PID_ENV] = str(os.getpid())
    from accelerate.commands.launch import launch_command, launch_command_parser

    launch_command(launch_command_parser().parse_args(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) >= 1 and argv[0] == "launch":
        return launch(argv[1:])
    if len(argv) == 2 and argv[0] == "train":
        # torchrun's error file: the launcher's summary then shows this process's traceback
        from torch.distributed.elastic.multiprocessing.errors import record

        return record(train)(argv[1])
    print(
        "usage: python -m rsft.generation.sft_worker (launch ACCELERATE-ARGS... | train JOB)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
