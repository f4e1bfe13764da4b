"""The fine-tuning job one process hands to the processes ``accelerate launch`` starts.

Both sides of the launch read this module: the pipeline writes the spec
(:mod:`.launch`), every launched process reads it (:mod:`.worker`). It is plain JSON (paths,
the ``sft`` options, seed, dtype, device, the trackers; no pickle), so reading it runs no
code.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsft.atomic import atomic_write_text

PARENT_PID_ENV = "RSFT_SFT_PARENT_PID"  # the pipeline's pid, then the launcher's
JOB_VERSION = 3  # 2: the stage's name ("stage"), which its errors start with; 3: report_to


@dataclass(frozen=True)
class SFTJob:
    """What :func:`rsft.generation.sft.train.sft_train` needs, as JSON values."""

    version: int
    base: str
    records: list
    out: str
    sft: dict
    seed: int
    dtype: str
    device: str
    trust_remote_code: bool
    stage: str
    report_to: list  # the run's trackers (names)


JOB_KEYS: dict[str, type] = {
    name: typing.get_origin(tp) or tp for name, tp in typing.get_type_hints(SFTJob).items()
}


def write_job(
    path: Path,
    *,
    base: str | Path,
    records: list[str | Path],
    out: str | Path,
    sft: dict[str, Any],
    seed: int,
    dtype: str,
    device: str,
    trust_remote_code: bool,
    stage: str,
    report_to: Sequence[str] = (),
) -> dict[str, Any]:
    """Write the job spec, absolute paths, atomically; returns it as written."""
    job = dataclasses.asdict(
        SFTJob(
            version=JOB_VERSION,
            base=str(Path(base).resolve()),
            records=[str(Path(r).resolve()) for r in records],
            out=str(Path(out).resolve()),
            sft=sft,
            seed=int(seed),
            dtype=dtype,
            device=device,
            trust_remote_code=bool(trust_remote_code),
            stage=stage,
            report_to=list(report_to),
        )
    )
    atomic_write_text(path, json.dumps(job, indent=2) + "\n")
    return job


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
