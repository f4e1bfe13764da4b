"""What :class:`~rsft.generation.pipeline.RFTPipeline` takes besides its config: the model,
the prompts and the reward, as paths or as Python objects.

- ``model``: a model folder or hub name (``model.path``), or a transformers model object with
  its ``tokenizer``, written to ``<output_dir>/inputs/model``;
- ``train`` / ``eval``: a prompt file (``data.train`` / ``data.eval``), or a
  ``datasets.Dataset`` or a list of rows, written to ``<output_dir>/inputs/<split>.parquet``
  (or ``.jsonl``);
- ``reward``: a Python callable instead of ``verifier.kind`` (rsft's per-sample signature or
  TRL's reward functions: :mod:`rsft.generation.scoring.callables`).

The config the run goes on with names those paths (:func:`rsft.config.replace`, the config
given is not changed), so state.json, resuming and the run's identity see what they see for
a config file (:mod:`rsft.inputs`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rsft.config import replace
from rsft.generation.config import RFTConfig
from rsft.generation.scoring.callables import describe
from rsft.inputs import model_input, table_inputs


def with_inputs(
    cfg: RFTConfig,
    *,
    model: Any = None,
    tokenizer: Any = None,
    train: Any = None,
    eval: Any = None,
    reward: Callable | None = None,
) -> RFTConfig:
    """``cfg`` with the inputs given in Python in place of its paths (objects written first)."""
    m, d, v = cfg.model, cfg.data, cfg.verifier
    if model is not None:
        m = replace(m, path=model_input(cfg.output_dir, model, tokenizer, needs_processor=True))
    paths = table_inputs(cfg.output_dir, {"train": train, "eval": eval})
    if paths:
        d = replace(d, **paths)
    if reward is not None:
        v = replace(v, kind="function", function=describe(reward))
    if (m, d, v) == (cfg.model, cfg.data, cfg.verifier):
        return cfg
    return replace(cfg, model=m, data=d, verifier=v)
