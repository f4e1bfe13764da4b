"""report_to: mlflow: a local SQLite store under output_dir holds what was logged."""

from __future__ import annotations

import pytest

from rsft.tracking import open_trackers

pytest.importorskip("mlflow")


def test_mlflows_store_holds_the_metrics_and_the_flattened_config(tmp_path):
    from mlflow import MlflowClient

    config = {"optim": {"lr": 0.05}, "report_to": ["mlflow"]}
    with open_trackers(["mlflow"], tmp_path / "run", "a/run", config) as trackers:
        for step, loss in enumerate([1.0, 0.5, 0.25], start=1):
            trackers.log({"train/loss": loss, "after/pass@4": loss / 2}, step)
        run_id = trackers.trackers[0].run_id
    store = tmp_path / "run" / "trackers" / "mlflow" / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    history = client.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, 0.25)]
    assert [m.value for m in client.get_metric_history(run_id, "after/pass_at_4")][-1] == 0.125
    run = client.get_run(run_id)
    assert run.data.params["optim.lr"] == "0.05" and run.info.status == "FINISHED"
    assert run.info.run_name == "a/run"
