"""What :class:`~rsft.training.FineTuner` takes besides its config: the model and the data,
as paths or as Python objects.

- ``model``: a model folder, hub name or import path (``model.path``), or a transformers
  model object (with its ``processor``: the tokenizer or image processor, else the one saved
  beside the folder it came from), written to ``<output_dir>/inputs/model``;
- ``train`` / ``eval`` / ``test`` / ``target``: a file or folder (``data.train``,
  ``data.eval``, ``data.test``, ``rejection.target_unlabelled``), or a ``datasets.Dataset``
  (written as parquet, its features kept: images, lists) or a list of rows (JSON Lines).

The config the run goes on with names those paths (:func:`rsft.config.replace`, the config
given is not changed), so results.json, resuming and the run's identity see what they see
for a config file (:mod:`rsft.inputs`). Under accelerate every process builds the same
config; the main process writes the objects, the others wait for it. A ``model.path`` named
by Hub name (``org/name``: :mod:`rsft.hub`) goes on as its snapshot folder in the Hugging
Face cache, downloaded there first by the main process when it is missing.
"""

from __future__ import annotations

from typing import Any

from accelerate import Accelerator

from rsft.config import ConfigError, replace
from rsft.hub import is_hub_name, resolve_model
from rsft.inputs import model_input, table_inputs
from rsft.training.config import TrainConfig, preflight


def with_inputs(
    cfg: TrainConfig,
    accelerator: Accelerator,
    *,
    model: Any = None,
    processor: Any = None,
    train: Any = None,
    eval: Any = None,
    test: Any = None,
    target: Any = None,
) -> TrainConfig:
    """``cfg`` with the inputs given in Python in place of its paths (objects written first,
    once the inputs are known to be all there: :func:`~rsft.training.config.preflight`)."""
    preflight(cfg, given={"model.path": model, "data.train": train})
    m, d, r = cfg.model, cfg.data, cfg.rejection
    with accelerator.main_process_first():
        write = accelerator.is_main_process
        if model is not None:
            path = model_input(cfg.output_dir, model, processor, needs_processor=False, write=write)
            m = replace(m, path=path)
        if is_hub_name(m.path):
            m = replace(m, path=str(resolve_model(m.path, m.revision)))
        elif m.revision is not None:
            raise ConfigError(
                f"model.revision applies to a model named by Hub name (org/name); model.path "
                f"{m.path!r} is not one. Drop model.revision."
            )
        paths = table_inputs(
            cfg.output_dir,
            {"train": train, "eval": eval, "test": test, "target": target},
            write=write,
        )
    if "target" in paths:
        r = replace(r, target_unlabelled=paths.pop("target"))
    if paths:
        d = replace(d, **paths)
    changed = {
        k: v for k, v in (("model", m), ("data", d), ("rejection", r)) if v != getattr(cfg, k)
    }
    return replace(cfg, **changed) if changed else cfg
