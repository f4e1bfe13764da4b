"""rsft train with report_to: trackio, offline: trackio's local store holds what was logged."""

from __future__ import annotations

import pytest

from rsft.config import from_dict
from rsft.tracking import open_trackers, run_name_of
from rsft.training import FineTuner, TrainConfig


def stored(project: str, run: str) -> tuple[list[dict], dict]:
    """Every logged row of a trackio run, and its config, read from trackio's SQLite store."""
    from trackio.sqlite_storage import SQLiteStorage

    return SQLiteStorage.get_logs(project, run), SQLiteStorage.get_run_config(project, run)


def test_trackios_store_holds_the_runs_losses_epochs_and_config(tiny_run, tmp_path, trackio_dir):
    tiny_run["report_to"] = ["trackio"]
    result = FineTuner(from_dict(TrainConfig, tiny_run)).train()
    assert (trackio_dir / "rsft.db").is_file()  # the project rsft, in the store given
    rows, config = stored("rsft", run_name_of(tmp_path / "run"))
    losses = [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r]
    assert losses == list(zip(range(1, result.global_step + 1), result.step_losses))
    epochs = [(r["step"], r["epoch/eval_accuracy"]) for r in rows if "epoch/eval_accuracy" in r]
    assert epochs == [(h["step"], h["eval_accuracy"]) for h in result.history]
    assert config["model"]["path"] == "rsft.tasks.mlp:MLP" and config["report_to"] == ["trackio"]


def test_a_rerun_of_the_same_folder_continues_its_trackio_run(tmp_path, trackio_dir):
    for step in (1, 2):
        with open_trackers(["trackio"], tmp_path / "run", "a/run", {"seed": 0}) as trackers:
            trackers.log({"train/loss": 1.0 / step}, step)
    rows, _ = stored("rsft", "a/run")
    assert [(r["step"], r["train/loss"]) for r in rows] == [(1, 1.0), (2, pytest.approx(0.5))]
