"""The fine-tuning stage on several processes: a child command under ``accelerate launch``.

The pipeline writes a job spec (JSON: paths, the ``sft`` options, seed, dtype, device; no
pickle, nothing the child reads can run code), then runs::

    python -m rsft.generation.sft.worker launch --config_file CFG --num_processes N \\
        --main_process_port PORT -m rsft.generation.sft.worker train out/sft_job.json

The first ``worker`` only arms the parent-death signal and hands its arguments to
accelerate's own launcher (torchrun underneath); every process it starts runs the same
:func:`rsft.generation.sft.train.sft_train` as a one-process run. The child's output (stdout and
stderr, every rank) goes to ``out/sft.log``; a failure raises :class:`SFTLaunchError` with the
log's tail, except a divergence: the processes report it (``out/sft_diverged.txt``) and it is
raised here as the same :class:`~rsft.generation.sft.guard.SFTDivergenceError`. The child
never outlives the stage: an error or Ctrl-C in the pipeline kills it, and a SIGKILLed
pipeline takes it down through ``PR_SET_PDEATHSIG`` (Linux).
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import yaml

import rsft
from rsft.atomic import atomic_write_text
from rsft.config import to_dict
from rsft.generation.sft.config import SFTSection, check_sft_launch
from rsft.generation.sft.guard import (
    REPORT_FILE,
    STAGE,
    SFTDivergenceError,
    reported_divergence,
)
from rsft.generation.sft.job import PARENT_PID_ENV, write_job
from rsft.models.devices import resolve_device
from rsft.processes import free_port, kill_group
from rsft.progress import Progress, say, says_lines

TAIL_LINES = 40


class SFTLaunchError(RuntimeError):
    """The fine-tuning child command failed; the message ends with its log's tail."""


def default_accelerate_config(path: Path, processes: int) -> Path:
    """DDP on one machine. Written, not left to accelerate's defaults, so that a user's
    ``~/.cache/huggingface/accelerate/default_config.yaml`` cannot change the launch."""
    options = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU",  # DDP; on CPU (ACCELERATE_USE_CPU) with gloo
        "num_machines": 1,
        "num_processes": processes,
        "machine_rank": 0,
        "mixed_precision": "no",  # precision follows model.dtype (the Trainer's bf16 flag)
        "dynamo_config": {},
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
        "debug": False,
    }
    atomic_write_text(path, yaml.safe_dump(options, sort_keys=False))
    return path


def launch_command(job: Path, cfg: SFTSection, config_file: Path, port: int) -> list[str]:
    """accelerate's launcher, through the shim that arms the parent-death signal."""
    return [
        sys.executable,
        "-m",
        "rsft.generation.sft.worker",
        "launch",
        "--config_file",
        str(config_file),
        "--num_processes",
        str(cfg.processes),
        "--num_machines",
        "1",
        "--main_process_port",
        str(port),
        "-m",
        "rsft.generation.sft.worker",
        "train",
        str(job),
    ]


def child_env(cfg: SFTSection, cpu: bool) -> dict[str, str]:
    """The pipeline's environment, plus what the child needs to import this same rsft and to
    share the machine's cores."""
    env = dict(os.environ)
    src = str(Path(rsft.__file__).resolve().parents[1])  # this rsft, not another install
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # lines reach sft.log as they are printed
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env[PARENT_PID_ENV] = str(os.getpid())
    if cpu:
        env["ACCELERATE_USE_CPU"] = "true"
        # torchrun would give each process 1 thread; share the cores instead.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // cfg.processes)))
    return env


def _stream(proc: subprocess.Popen, log: IO[str], echo: bool) -> collections.deque[str]:
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        log.flush()
        tail.append(line.rstrip("\n"))
        if echo:
            sys.stderr.write(line)
            sys.stderr.flush()
    proc.wait()
    return tail


ERROR_LINE = re.compile(r"^(?:\[rank(\d+)\]: )?((?:\w+\.)*\w*(?:Error|Exception)): (.+)$")


def first_error(log_path: Path, start: int = 0) -> str | None:
    """The first exception a launched process raised (``ValueError: ...`` on rank 0) after
    byte ``start`` (this launch's part of the log), not the launcher's ``ChildFailedError``."""
    with log_path.open(encoding="utf-8", errors="replace") as f:
        f.seek(start)
        for line in f:
            m = ERROR_LINE.match(line.rstrip("\n"))
            if m and not m.group(2).endswith("ChildFailedError"):
                rank = f" (rank {m.group(1)})" if m.group(1) else ""
                return f"{m.group(2)}: {m.group(3)}{rank}"
    return None


def launch_sft(
    base: str | Path,
    records: list[str | Path],
    out: str | Path,
    cfg: SFTSection,
    *,
    seed: int,
    dtype: str = "auto",
    device: str = "auto",
    progress: Progress = True,
    trust_remote_code: bool = False,
    stage: str = STAGE,
    report_to: Sequence[str] = (),
) -> Path:
    """Run :func:`rsft.generation.sft.train.sft_train` on ``cfg.processes`` processes.

    ``records`` are the JSONL files of chat records (``accepted.jsonl``), read in order.
    Returns ``out/model``. A finished stage is not launched again; a killed one resumes from
    TRL's last checkpoint in ``out/trainer``.
    """
    out = Path(out)
    final = out / "model"
    if final.is_dir():
        return final
    check_sft_launch(cfg, device)
    out.mkdir(parents=True, exist_ok=True)
    cpu = resolve_device(device) == "cpu"
    job = out / "sft_job.json"
    write_job(
        job,
        base=base,
        records=records,
        out=out,
        sft=to_dict(cfg),
        seed=seed,
        dtype=dtype,
        device=device,
        trust_remote_code=trust_remote_code,
        stage=stage,
        report_to=report_to,
    )
    (out / REPORT_FILE).unlink(missing_ok=True)  # an earlier launch's
    if cfg.accelerate_config is not None:
        config_file = Path(cfg.accelerate_config).expanduser().resolve()
    else:
        config_file = default_accelerate_config(out / "accelerate.yaml", cfg.processes)
    cmd = launch_command(job, cfg, config_file, free_port())
    log_path = out / "sft.log"
    if says_lines(progress):
        say(f"fine-tuning on {cfg.processes} process(es) under accelerate launch; log: {log_path}")
    t0 = time.perf_counter()
    with log_path.open("a", encoding="utf-8") as log:
        start = log.tell()  # a resumed stage appends: its errors are read from here
        log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=child_env(cfg, cpu),
            start_new_session=True,  # its own process group: killed as one, spared Ctrl-C
        )
        try:
            tail = _stream(proc, log, echo=progress is True)
        except BaseException:  # KeyboardInterrupt included: never leave the workers running
            kill_group(proc)
            raise
        finally:
            if proc.poll() is None:
                kill_group(proc)
        log.write(f"# exit {proc.returncode} after {time.perf_counter() - t0:.1f} s\n")
    diverged = reported_divergence(out) if proc.returncode != 0 else None
    if diverged is not None:
        raise SFTDivergenceError(f"{diverged} (The processes' log: {log_path}.)")
    if proc.returncode != 0:
        shown = "\n".join(f"  | {line}" for line in tail)
        cause = first_error(log_path, start)
        raise SFTLaunchError(
            f"the fine-tuning child command failed (exit {proc.returncode})"
            + (f": {cause}" if cause else "")
            + f". Its log is {log_path}; the last lines:\n{shown}"
        )
    if not final.is_dir():
        raise SFTLaunchError(f"the fine-tuning child command ended without saving {final}.")
    return final
