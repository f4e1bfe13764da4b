"""The SFT stage's report_to: TRL's arguments, transformers' trackers' folders, the job spec."""

from __future__ import annotations

import inspect
import json
import os

import pytest

from rsft.config import from_dict, to_dict
from rsft.generation.config import RFTConfig, SFTSection
from rsft.generation.sft.arguments import trl_arguments
from rsft.generation.sft.job import read_job, write_job
from rsft.generation.sft.launch import launch_sft
from rsft.generation.sft.train import sft_train
from rsft.tracking.transformers_env import tracker_defaults, tracker_environment

RFT = {"model": {"path": "m"}, "data": {"train": "t.jsonl", "eval": "e.jsonl"}}


def _args(cfg: SFTSection, **tracking) -> dict:
    return trl_arguments(cfg, output_dir="o", seed=3, bf16=False, cpu=True, bars=False, **tracking)


def test_the_runs_trackers_reach_trls_arguments():
    args = _args(SFTSection(), report_to=["tensorboard", "trackio"], run_name="rft/round_1/sft")
    assert args["report_to"] == ["tensorboard", "trackio"]
    assert (args["project"], args["run_name"]) == ("rsft", "rft/round_1/sft")
    assert args["trackio_static_space_id"] is False  # no Space made after training
    assert _args(SFTSection())["report_to"] == "none"  # none asked for: none

    from trl import SFTConfig

    built = SFTConfig(**{**args, "output_dir": "/tmp/rsft-trl-report-to"})
    assert built.report_to == ["tensorboard", "trackio"] and built.project == "rsft"


def test_sft_trl_report_to_still_decides_for_the_stage():
    cfg = from_dict(RFTConfig, {**RFT, "report_to": "wandb", "sft": {"trl": {"report_to": "none"}}})
    assert cfg.report_to == ["wandb"]
    assert _args(cfg.sft, report_to=cfg.report_to)["report_to"] == "none"


def test_transformers_trackers_write_into_the_stage_unless_the_user_said_where(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_MODE", "online")
    env = tracker_defaults(["tensorboard", "wandb", "mlflow"], tmp_path / "trackers")
    assert env["TENSORBOARD_LOGGING_DIR"] == str(tmp_path.resolve() / "trackers" / "tensorboard")
    assert "WANDB_MODE" not in env and env["WANDB_DIR"].endswith("trackers/wandb")
    assert env["MLFLOW_TRACKING_URI"].startswith("sqlite:///") and env["WANDB_PROJECT"] == "rsft"
    assert tracker_defaults([], tmp_path) == {}
    with tracker_environment(["tensorboard", "wandb"], tmp_path / "trackers"):
        assert os.environ["TENSORBOARD_LOGGING_DIR"].endswith("trackers/tensorboard")
        assert (tmp_path / "trackers" / "wandb").is_dir()
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ and os.environ["WANDB_MODE"] == "online"


def test_the_launched_stage_gets_the_same_trackers(tmp_path):
    job = write_job(
        tmp_path / "job.json",
        base="model",
        records=["a.jsonl"],
        out=tmp_path / "sft",
        sft=to_dict(SFTSection()),
        seed=7,
        dtype="auto",
        device="cpu",
        trust_remote_code=False,
        stage="the fine-tuning",
        report_to=["tensorboard"],
    )
    assert read_job(tmp_path / "job.json")["report_to"] == ["tensorboard"] == job["report_to"]
    (tmp_path / "bad.json").write_text(json.dumps(dict(job, report_to="tensorboard")))
    with pytest.raises(ValueError, match="'report_to' must be list"):
        read_job(tmp_path / "bad.json")


def test_the_launched_and_the_in_process_stage_take_the_same_keywords():
    def keywords(fn) -> set[str]:
        params = inspect.signature(fn).parameters.values()
        return {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}

    assert keywords(launch_sft) == keywords(sft_train) and "report_to" in keywords(sft_train)
