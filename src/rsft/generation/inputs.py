"""What :class:`~rsft.generation.pipeline.RFTPipeline` takes besides its config: the model,
the prompts and the reward, as paths or as Python objects.

- ``model``: a model folder or hub name (``model.path``), or a transformers model object with
  its ``tokenizer``, written to ``<output_dir>/inputs/model``;
- ``train`` / ``eval``: a prompt file (``data.train`` / ``data.eval``), or a
  ``datasets.Dataset`` or a list of rows, written to ``<output_dir>/inputs/<split>.parquet``
  (or ``.jsonl``);
- ``reward``: a Python callable instead of ``verifier.kind`` (rsft's per-sample signature or
  TRL's reward functions: :mod:`rsft.generation.scoring.callables`).

A ``model.path`` named by Hub name (``org/name``, :mod:`rsft.hub`) is resolved here too, once,
to its snapshot folder in the Hugging Face cache: every later stage reads a local folder, and
state.json records the commit. The options that apply only to Hub names (``model.revision``,
``data.subset``, ``data.revision``, ``data.train_split``, ``data.eval_split``) are refused
here when nothing is named by Hub name.

The config the run goes on with names those paths (:func:`rsft.config.replace`, the config
given is not changed), so state.json, resuming and the run's identity see what they see for
a config file (:mod:`rsft.inputs`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rsft.config import ConfigError, options_given, replace
from rsft.generation.config import LMConfig, PromptDataConfig, RFTConfig
from rsft.generation.scoring.callables import describe
from rsft.hub import is_hub_name, resolve_model
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
    check_hub_options(m, d)
    e = cfg.engine
    if is_hub_name(m.path):
        if e.endpoints and e.served_model is None:  # servers started on it serve its Hub name
            e = replace(e, served_model=m.path)
        m = replace(m, path=str(resolve_model(m.path, m.revision)))
    if (m, d, v, e) == (cfg.model, cfg.data, cfg.verifier, cfg.engine):
        return cfg
    return replace(cfg, model=m, data=d, verifier=v, engine=e)


def check_hub_options(m: LMConfig, d: PromptDataConfig) -> None:
    """Refuse an option for Hub names set where its path is local: it would change nothing."""
    if m.revision is not None and m.path and not is_hub_name(m.path):
        raise ConfigError(
            f"model.revision applies to a model named by Hub name (org/name); model.path "
            f"{m.path!r} is a local folder. Drop model.revision."
        )
    hub = {"data.train": is_hub_name(d.train), "data.eval": is_hub_name(d.eval)}
    given = options_given(d)
    needs = {
        "train_split": ("data.train",) if "train_split" in given else (),
        "eval_split": ("data.eval",) if "eval_split" in given else (),
        "subset": ("data.train", "data.eval") if d.subset is not None else (),
        "revision": ("data.train", "data.eval") if d.revision is not None else (),
    }
    for option, fields in needs.items():
        if fields and not any(hub[f] for f in fields):
            raise ConfigError(
                f"data.{option} applies to a dataset named by Hub name (org/name), and "
                f"{' and '.join(f'{f} ({getattr(d, f[5:])!r})' for f in fields)} "
                f"{'is a local path' if len(fields) == 1 else 'are local paths'}. Drop "
                f"data.{option}."
            )
