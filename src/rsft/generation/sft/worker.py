"""The child side of :mod:`rsft.generation.sft.launch`.

``python -m rsft.generation.sft.worker launch ARGS...`` arms the parent-death signal and
runs accelerate's launcher with ARGS; ``python -m rsft.generation.sft.worker train JOB`` is
what every launched process runs: it reads the JSON job spec and calls ``sft_train``.
"""

from __future__ import annotations

import os
import signal
import sys

from rsft.atomic import read_jsonl
from rsft.generation.sft.job import PARENT_PID_ENV, read_job
from rsft.processes import die_with_parent


def _expected_parent() -> int | None:
    value = os.environ.get(PARENT_PID_ENV, "")
    return int(value) if value.isdigit() else None


def train(job_path: str) -> int:
    """One launched process: the same ``sft_train`` as a one-process run."""
    die_with_parent(signal.SIGKILL, _expected_parent())
    job = read_job(job_path)
    from rsft.config import from_dict
    from rsft.generation.sft.config import SFTSection
    from rsft.generation.sft.guard import SFTDivergenceError, report_divergence
    from rsft.generation.sft.train import sft_train

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
            report_to=job["report_to"],
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
        "usage: python -m rsft.generation.sft.worker (launch ACCELERATE-ARGS... | train JOB)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
