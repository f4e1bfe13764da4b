"""One run identity: which options make a run another run, for every command that asks."""

from __future__ import annotations

import dataclasses

import pytest

from rsft.config import describe, from_dict
from rsft.generation.config import RFTConfig
from rsft.same_run import NOT_IDENTITY, identity_of, run_identity
from rsft.training.config import TrainConfig

RFT = {"model": {"path": "m"}, "data": {"train": "t.jsonl", "eval": "e.jsonl"}}
TRAIN = {"model": {"path": "rsft.tasks.mlp:MLP"}, "data": {"train": "t.csv"}}
CLASSES = {"RFTConfig": (RFTConfig, RFT), "TrainConfig": (TrainConfig, TRAIN)}


@pytest.mark.parametrize("kind", sorted(NOT_IDENTITY))
def test_every_option_declared_outside_the_identity_exists(kind):
    cls, _ = CLASSES[kind]
    options = {name for name, *_ in describe(cls)}
    sections = {name.split(".")[0] for name in options if "." in name}
    for name in NOT_IDENTITY[kind]:
        assert name in options or name in sections, name


@pytest.mark.parametrize(
    ("kind", "change", "same"),
    [
        ("RFTConfig", {"progress": False, "output_dir": "elsewhere", "rounds": 5}, True),
        ("RFTConfig", {"sft": {"processes": 2, "batch_size": 8}}, True),
        ("RFTConfig", {"engine": {"replicas": 3}}, True),
        ("RFTConfig", {"generation": {"template_timeout": 1.0}}, True),
        ("RFTConfig", {"seed": 1}, False),
        ("RFTConfig", {"sft": {"lr": 1e-4}}, False),
        ("TrainConfig", {"resume": "never", "num_workers": 2, "eval_batch_size": 8}, True),
        ("TrainConfig", {"on_divergence": "stop", "divergence_factor": 5.0}, True),
        ("TrainConfig", {"optim": {"lr": 0.5}}, False),
        ("TrainConfig", {"epochs": 1}, False),
    ],
)
def test_an_option_outside_the_identity_keeps_the_run_the_same(kind, change, same):
    cls, options = CLASSES[kind]
    base = from_dict(cls, options)
    merged = {**options, **change}
    for key, value in change.items():
        if isinstance(value, dict):
            merged[key] = {**options.get(key, {}), **value}
    other = from_dict(cls, merged)
    assert (run_identity(base) == run_identity(other)) is same


def test_a_recorded_config_has_the_identity_of_the_config_it_was():
    cfg = from_dict(TrainConfig, TRAIN)
    recorded = dataclasses.asdict(dataclasses.replace(cfg, resume="never", progress="quiet"))
    assert identity_of(recorded, "TrainConfig") == run_identity(cfg)
    assert "resume" not in run_identity(cfg) and "optim" in run_identity(cfg)
