"""MLflow: a local SQLite store under ``output_dir/trackers/mlflow`` unless
MLFLOW_TRACKING_URI names another (a server, a database); experiment ``rsft`` unless
MLFLOW_EXPERIMENT_NAME is set. ``mlflow ui --backend-store-uri sqlite:///<that>/mlflow.db``
shows it.

Written through ``MlflowClient`` with its own tracking URI, so no process-wide MLflow state
is changed (runs of a comparison each keep their store). MLflow's names allow letters,
digits and ``_ - . / :`` and space: ``pass@4`` is logged as ``pass_at_4``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rsft.tracking.base import PROJECT, flatten

MAX_PARAM_VALUE = 6000  # MLflow's limit on a parameter's value (characters)
BATCH = 100  # MLflow takes at most 100 parameters per call
_NOT_ALLOWED = re.compile(r"[^\w\-./: ]")


def mlflow_name(key: str) -> str:
    """``key`` in the characters MLflow accepts in a metric or parameter name."""
    return _NOT_ALLOWED.sub("_", key.replace("@", "_at_"))


def tracking_uri(folder: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else a SQLite store in ``folder``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{folder.resolve() / 'mlflow.db'}"


class MlflowTracker:
    name = "mlflow"

    def __init__(self, folder: Path, run_name: str, config: Mapping[str, Any]) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        own_store = not os.environ.get("MLFLOW_TRACKING_URI")
        if own_store:
            folder.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=tracking_uri(folder))
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or PROJECT
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:  # artifacts beside the store, not in the working directory
            location = (folder.resolve() / "artifacts").as_uri() if own_store else None
            experiment_id = self.client.create_experiment(name, artifact_location=location)
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        params = [
            Param(mlflow_name(k), str(v)[:MAX_PARAM_VALUE]) for k, v in flatten(config).items()
        ]
        for i in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + BATCH])

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(mlflow_name(k), v, now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def close(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")
