"""report_to: wandb in its offline mode: the run file under output_dir holds what was logged."""

from __future__ import annotations

import json
import struct

import pytest

from rsft.config import from_dict
from rsft.training import FineTuner, TrainConfig

pytest.importorskip("wandb")

BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of chunks
HEADER = 7  # a chunk's CRC (4 bytes), length (2) and type (1: whole, 2-4: first/middle/last)


def records(path) -> list:
    """The protobuf records of an offline run's ``run-<id>.wandb`` file."""
    from wandb.proto import wandb_internal_pb2

    data, pos, out, part = path.read_bytes(), HEADER, [], b""  # the file starts with a header
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a chunk is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        part += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(part)
            out.append(record)
            part = b""
    return out


def test_an_offline_wandb_run_holds_the_runs_losses_and_config(tiny_run, tmp_path):
    tiny_run["report_to"] = ["wandb"]
    result = FineTuner(from_dict(TrainConfig, tiny_run)).train()
    (path,) = (tmp_path / "run" / "trackers" / "wandb").glob("wandb/offline-run-*/run-*.wandb")
    history: dict[str, list[tuple[int, float]]] = {}
    config: dict[str, object] = {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                history.setdefault(key, []).append(
                    (record.history.step.num, json.loads(item.value_json))
                )
        elif kind == "run":
            config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
    steps = range(1, result.global_step + 1)
    assert history["train/loss"] == list(zip(steps, result.step_losses))
    assert history["epoch/train_loss"] == [(h["step"], h["train_loss"]) for h in result.history]
    assert config["model"]["path"] == "rsft.tasks.mlp:MLP" and config["epochs"] == 2
