"""Which checkpoint a run may resume, and what it must match: the config and the data.

Every checkpoint records the run's identity (its config less the options that may change
between a run and its resumption: :data:`rsft.same_run.NOT_IDENTITY`) and a digest of the
data it names (``rsft.same_run``: a table's SHA-256, a folder's listing). Resuming with
another config or edited data would mix two runs in one result, so it is refused with a
message naming what changed; so is starting over in an ``output_dir`` that holds a finished
run's ``results.json`` (with ``resume: auto`` and no checkpoint to resume, the results would
be silently replaced).

The data digest covers ``data.train``, ``data.eval``, ``data.test``,
``rejection.target_unlabelled`` and a local ``model.path`` (how a file and a folder are
digested, links included: ``rsft.same_run.path_digest``). Not covered: the code an import
path names (a model class, a weight or verifier function).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rsft import same_run
from rsft.config import ConfigError
from rsft.same_run import path_digest  # noqa: F401 (re-exported: where callers found it)
from rsft.training import checkpoint as ckpt

# The config fields that name data, as written in a config file.
DATA_FIELDS = (
    "data.train",
    "data.eval",
    "data.test",
    "rejection.target_unlabelled",
    "model.path",
)


def fingerprint(config: Any) -> dict:
    """The config a checkpoint must have been written with, for this run to resume it: the
    run's identity (:func:`rsft.same_run.run_identity`)."""
    return same_run.run_identity(config)


def data_digest(config: Any) -> dict[str, dict]:
    """A digest of each local file or folder the config names (see the module docstring)."""
    return same_run.data_digest(config, DATA_FIELDS)


def find_resumable(config: Any, digest: dict[str, dict]) -> Path | None:
    """The checkpoint this run continues from (None: start from step 0), checked to be this
    run's: the same config and the same data. Raises ConfigError naming what differs."""
    out = Path(config.output_dir)
    if config.resume == "never":
        return None
    path = ckpt.checkpoint_to_resume(out)
    if path is None:
        if (out / "results.json").is_file():
            raise ConfigError(
                f"{out} holds a finished run's results.json but no checkpoint to resume from, "
                "and starting over would replace those results. Use a new output_dir, or set "
                "resume: never to start over and replace them."
            )
        return None
    saved = json.loads((path / "trainer_state.json").read_text())
    now = same_run.as_saved(fingerprint(config))
    if saved.get("config") != now:
        changes = same_run.describe_changes(saved.get("config") or {}, now)
        raise ConfigError(
            f"{out} holds a checkpoint of a run with a different config ({changes}). Use a "
            "new output_dir, delete the old one, or set resume: never to start over."
        )
    same_run.check_same_data(saved.get("data", {}), digest, f"the checkpoint {path} was written")
    return path
