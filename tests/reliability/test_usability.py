"""Usability: what a newcomer sees in a log, and what the docs promise (issue 10, item 14).

Each row of ``CASES`` (at the end of the file) is one input and the behaviour that must hold;
the test below runs every row (``check`` names the function that does it). "A log" is output
that is not a terminal: a file, a pipe, pytest's capture. The recipe
docs/recipes/pretrain_then_finetune.md is run by tests/docs/test_recipes.py.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from rsft import progress
from rsft.cli.main import main
from rsft.config import ConfigError, from_dict
from rsft.data import DataConfig, DataError, default_image_processor, load_split
from rsft.data.images import SmallImagesWarning
from rsft.training import FineTuner, TrainConfig

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
N_ROWS, N_CLASSES = 48, 3
EPOCH_LINE = re.compile(r"^epoch \d+ \| train loss ", re.MULTILINE)


@dataclass
class Ctx:
    tmp_path: Path
    capsys: pytest.CaptureFixture
    monkeypatch: pytest.MonkeyPatch


@dataclass(frozen=True)
class Case:
    id: str
    input: str
    expected: str
    check: Callable[[Ctx], None]


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


# ------------------------------------------------------------------------------ fixtures


def _table(path: Path, n: int = N_ROWS, seed: int = 0) -> str:
    """Three well separated classes in a 64-value list column: trains in a few steps."""
    centres = np.random.default_rng(1234).normal(0.0, 1.0, (N_CLASSES, 64))
    labels = np.arange(n) % N_CLASSES
    pixels = centres[labels] + np.random.default_rng(seed).normal(0.0, 0.5, (n, 64))
    pd.DataFrame({"pixels": pixels.astype("float32").tolist(), "label": labels}).to_parquet(path)
    return str(path)


def _train_args(ctx: Ctx, **options: object) -> list[str]:
    table = _table(ctx.tmp_path / "train.parquet")
    args = {
        "model.path": "rsft.tasks.digits:DigitsNet",
        "model.kwargs": "{width: 4}",
        "data.train": table,
        "data.feature_columns": "[pixels]",
        "epochs": 2,
        "batch_size": 16,
        "output_dir": str(ctx.tmp_path / "run"),
        **options,
    }
    return ["train", *(f"{k}={v}" for k, v in args.items())]


def _run_main(ctx: Ctx, argv: list[str]) -> tuple[str, str]:
    """What ``rsft <argv>`` printed, and only that (the test's own setup, e.g. saving a tiny
    model with transformers' bars on, is read away first)."""
    ctx.capsys.readouterr()
    assert main(argv) == 0
    out = ctx.capsys.readouterr()
    return out.out, out.err


def _load_test_module(path: Path, name: str):
    """A helper module of another test folder (the suite imports tests by path)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- progress


def check_train_pipe(ctx: Ctx) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "rsft.cli.main", *_train_args(ctx)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one log, as with `> log 2>&1`
        env=env,
        cwd=ctx.tmp_path,
        timeout=300,
    )
    log = proc.stdout.decode()
    assert proc.returncode == 0, log
    assert "\r" not in log
    assert len(EPOCH_LINE.findall(log)) == 2, log


def check_train_log_long_epoch(ctx: Ctx) -> None:
    ctx.monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)  # every step is "a while"
    out, err = _run_main(ctx, _train_args(ctx))
    assert "\r" not in out + err
    steps = re.findall(r"^epoch 1/2 (\d+)/3 steps \(\d+%\): loss=", err, re.MULTILINE)
    assert steps == ["1", "2", "3"], err
    assert len(EPOCH_LINE.findall(out)) == 2


def check_train_progress_false(ctx: Ctx) -> None:
    ctx.monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    out, err = _run_main(ctx, _train_args(ctx, progress="false"))
    assert "\r" not in out + err and "steps (" not in err
    assert len(EPOCH_LINE.findall(out)) == 2


def check_train_progress_quiet(ctx: Ctx) -> None:
    ctx.monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    out, err = _run_main(ctx, _train_args(ctx, progress="quiet"))
    assert not EPOCH_LINE.search(out) and "epoch" not in err
    assert "results:" in out  # the command's own summary is still printed


def check_train_terminal(ctx: Ctx) -> None:
    terminal = Terminal()
    ctx.monkeypatch.setattr(sys, "stderr", terminal)
    out, _ = _run_main(ctx, _train_args(ctx))
    assert "\r" in terminal.getvalue() and "epoch 1/2" in terminal.getvalue()  # tqdm's bar
    assert len(EPOCH_LINE.findall(out)) == 2


def check_compare_log(ctx: Ctx) -> None:
    base = dict(a.split("=", 1) for a in _train_args(ctx)[1:])
    config = {
        "base": {
            "model": {"path": base["model.path"], "kwargs": {"width": 4}},
            "data": {"train": base["data.train"], "test": base["data.train"]},
            "epochs": 2,
            "batch_size": 16,
        },
        "methods": {"plain": {}, "balanced": {"rejection": {"weights": "balance"}}},
        "seeds": [0],
        "output_dir": str(ctx.tmp_path / "compare"),
    }
    config["base"]["data"]["feature_columns"] = ["pixels"]
    path = ctx.tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    out, err = _run_main(ctx, ["compare", "-c", str(path)])
    assert "\r" not in out + err
    lines = [line for line in err.splitlines() if line.startswith("compare ")]
    assert [line.split(": test accuracy")[0] for line in lines] == [
        "compare 1/2 runs (50%): plain seed 0",
        "compare 2/2 runs (100%): balanced seed 0",
    ], err
    assert not EPOCH_LINE.search(out), "the runs' own epoch lines are left out"


def check_rft_log(ctx: Ctx) -> None:
    from rsft.tasks.arithmetic import prepare_arithmetic

    conftest = _load_test_module(TESTS / "generation" / "conftest.py", "gen_conftest_usability")
    lm = conftest.save_tiny_causal_lm(ctx.tmp_path / "lm")
    ctx.monkeypatch.syspath_prepend(str(TESTS / "generation"))  # pipeline_rewards
    paths = prepare_arithmetic(ctx.tmp_path / "data", n_train=8, n_eval=4, with_model=False)
    config = {
        "model": {"path": lm},
        "data": {"train": paths["train"], "eval": paths["eval"]},
        "generation": {"k": 2, "max_new_tokens": 4, "chunk_prompts": 4, "batch_size": 16},
        "verifier": {"kind": "function", "function": "pipeline_rewards:digit_share"},
        "selection": {"rule": "top_fraction", "fraction": 0.5},
        "sft": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
        "eval": {"k": 0},
        "rounds": 1,
        "output_dir": str(ctx.tmp_path / "rft"),
    }
    path = ctx.tmp_path / "rft.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    out, err = _run_main(ctx, ["rft", "-c", str(path)])
    assert "\r" not in out + err
    assert re.search(r"^round 0 \(the base model\): pass@1 [\d.]+% on 4 held-out", out, re.M)
    assert re.search(r"^round 1: kept \d+ of 16 candidates; pass@1 ", out, re.M), out


def check_prepare_log(ctx: Ctx) -> None:
    from rsft.tasks import embedded

    ctx.monkeypatch.setitem(embedded.PRETRAIN, "epochs", 2)  # the log's shape, not the model
    out, err = _run_main(ctx, ["prepare", "digits", "--out", str(ctx.tmp_path / "digits")])
    assert "\r" not in out + err
    assert "pretraining DigitsNet on the source domain (2 epochs)" in out
    assert len(EPOCH_LINE.findall(out)) == 2
    assert "pretrained: " in out


# ----------------------------------------------------------------------------- images


def _image_folder(root: Path, side: int) -> Path:
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    return root


def _warnings_of(path: Path, cfg: DataConfig, processor: object = None) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_split(path, cfg, processor=processor)
    return [str(w.message) for w in caught if issubclass(w.category, SmallImagesWarning)]


def check_small_images(ctx: Ctx) -> None:
    (message,) = _warnings_of(_image_folder(ctx.tmp_path / "imgs", 8), DataConfig())
    for part in ("8 px", "data.resize is 256", "data.crop is 224", "data.resize=8 data.crop=8"):
        assert part in message, message
    table = ctx.tmp_path / "imgs.csv"  # an image column of a table: the same check
    files = sorted((ctx.tmp_path / "imgs").rglob("*.png"))
    labels = [f.parent.name for f in files]
    pd.DataFrame({"image": [str(f) for f in files], "label": labels}).to_csv(table, index=False)
    assert len(_warnings_of(table, DataConfig())) == 1


def check_small_images_own_size(ctx: Ctx) -> None:
    assert _warnings_of(_image_folder(ctx.tmp_path / "i", 8), DataConfig(resize=8, crop=8)) == []


def check_mid_size_images(ctx: Ctx) -> None:
    assert _warnings_of(_image_folder(ctx.tmp_path / "i", 96), DataConfig()) == []


def check_small_images_model_processor(ctx: Ctx) -> None:
    folder = _image_folder(ctx.tmp_path / "i", 8)
    own = default_image_processor(DataConfig(resize=8, crop=8))  # as a model folder holds one
    assert _warnings_of(folder, DataConfig(), processor=own) == []


# --------------------------------------------------------------------- feature columns


def _mixed_table(path: Path, extra: bool = False) -> str:
    rng = np.random.default_rng(0)
    n = 30
    table = {
        "x0": rng.normal(size=n),
        "x1": rng.integers(0, 5, n),
        "vec": [list(rng.normal(size=3)) for _ in range(n)],
        "note": ["some text"] * n,
        "label": np.arange(n) % 2,
        "grp": np.arange(n) % 3,
        "id": np.arange(n),
        "w": rng.random(n) + 0.1,
    }
    if extra:
        table["x_extra"] = rng.normal(size=n)
    pd.DataFrame(table).to_parquet(path)
    return str(path)


def _mixed_config(ctx: Ctx, **data: object) -> TrainConfig:
    return from_dict(
        TrainConfig,
        {
            "model": {"path": "rsft.tasks.mlp:MLP", "kwargs": {"in_features": 5}},
            "data": {
                "train": _mixed_table(ctx.tmp_path / "train.parquet"),
                "feature_columns": "all",
                "group_column": "grp",
                "exclude_columns": ["id"],
                **data,
            },
            "rejection": {"weights": "column", "column": "w"},
            "output_dir": str(ctx.tmp_path / "run"),
            "progress": "quiet",
        },
    )


def check_features_all(ctx: Ctx) -> None:
    cfg = _mixed_config(ctx)
    assert cfg.data.exclude_columns == ["id", "w"]  # rejection.column joins the exclusions
    split = load_split(cfg.data.train, cfg.data)
    assert split.feature_columns == ["x0", "x1", "vec"]
    table = pd.read_parquet(cfg.data.train)
    row = [table.x0[4], table.x1[4], *table.vec[4]]
    assert torch.allclose(split.dataset[4]["features"], torch.tensor(row, dtype=torch.float32))


def check_features_all_other_splits(ctx: Ctx) -> None:
    test = _mixed_table(ctx.tmp_path / "test.parquet", extra=True)
    tuner = FineTuner(_mixed_config(ctx, test=test))
    assert tuner.test_split is not None
    assert tuner.test_split.feature_columns == tuner.train_split.feature_columns
    assert tuner.test_split.dataset[0]["features"].shape == (5,)


def check_features_all_none_numeric(ctx: Ctx) -> None:
    path = ctx.tmp_path / "text.csv"
    pd.DataFrame({"note": ["a", "b"], "label": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"data.feature_columns is 'all', but .* no numeric"):
        load_split(path, DataConfig(feature_columns="all"))


def check_exclude_without_all(ctx: Ctx) -> None:
    with pytest.raises(ConfigError, match="exclude_columns applies to feature_columns: all"):
        from_dict(DataConfig, {"feature_columns": ["x0"], "exclude_columns": ["id"]})


# ------------------------------------------------------------- the import-path contract


def _recorder(ctx: Ctx):
    """The Recorder class that rsft imports by path (one module object, its calls cleared)."""
    ctx.monkeypatch.syspath_prepend(str(Path(__file__).parent))
    module = importlib.import_module("usability_models")
    ctx.monkeypatch.setattr(module.Recorder, "calls", [])
    return module.Recorder


def _contract_run(ctx: Ctx, path: str, data: dict, kwargs: dict, trust: bool = False) -> FineTuner:
    model = {"path": path, "kwargs": kwargs, "freeze": "none", "trust_remote_code": trust}
    cfg = {
        "model": model,
        "data": data,
        "epochs": 1,
        "batch_size": 4,
        "output_dir": str(ctx.tmp_path / "run"),
        "progress": "quiet",
    }
    tuner = FineTuner(from_dict(TrainConfig, cfg))
    tuner.train()
    return tuner


def check_contract_features(ctx: Ctx) -> None:
    table = _table(ctx.tmp_path / "t.parquet", n=12)
    data = {"train": table, "feature_columns": ["pixels"]}
    recorder = _recorder(ctx)
    tuner = _contract_run(ctx, "usability_models:Recorder", data, {"in_features": 64})
    assert recorder.built_with == {"in_features": 64, "vocab": 1}  # model.kwargs, no num_labels
    args, kwargs = recorder.calls[0]
    assert kwargs == {} and len(args) == 1
    assert args[0].dtype == torch.float32 and tuple(args[0].shape) == (4, 64)
    assert tuner.clf.head == "classifier"
    assert tuner.clf.model.classifier.out_features == N_CLASSES


def check_contract_images(ctx: Ctx) -> None:
    folder = _image_folder(ctx.tmp_path / "imgs", 8)
    data = {"train": str(folder), "resize": 8, "crop": 6}
    recorder = _recorder(ctx)
    _contract_run(ctx, "usability_models:Recorder", data, {"in_features": 3 * 6 * 6})
    args, kwargs = recorder.calls[0]
    assert kwargs == {} and len(args) == 1
    assert args[0].dtype == torch.float32 and tuple(args[0].shape) == (4, 3, 6, 6)


def check_contract_text(ctx: Ctx) -> None:
    from transformers import BertTokenizerFast

    from rsft.models import load_classifier, save_classifier

    recorder = _recorder(ctx)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]
    (ctx.tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizerFast(vocab=str(ctx.tmp_path / "vocab.txt"))
    folder = ctx.tmp_path / "textmodel"
    clf = load_classifier("usability_models:Recorder", 2, kwargs={"vocab": len(words)})
    save_classifier(clf, folder, ["neg", "pos"])
    tok.save_pretrained(folder)  # the tokenizer beside rsft_model.json
    texts = ctx.tmp_path / "t.csv"
    pd.DataFrame({"text": ["good film", "bad film"] * 4, "label": ["pos", "neg"] * 4}).to_csv(
        texts, index=False
    )
    # The saved folder names a class outside rsft: loading it again needs the opt-in.
    data = {"train": str(texts), "text_column": "text"}
    _contract_run(ctx, str(folder), data, {}, trust=True)
    args, kwargs = recorder.calls[0]
    assert args == () and set(kwargs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert kwargs["input_ids"].dtype == torch.long and kwargs["input_ids"].shape[0] == 4


# -------------------------------------------------------------------- docs and Python API


def check_hf_text_features(ctx: Ctx) -> None:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from rsft.data_level.weights import density_ratio_weights
    from rsft.integrations import text_features

    words = ["news", "report", "market", "omg", "lol", "fr", "the", "a", "today"]
    (ctx.tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + words))
    tok = BertTokenizerFast(vocab=str(ctx.tmp_path / "vocab.txt"))
    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=len(words) + 4,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=16,
            num_labels=2,
        )
    )
    rng = np.random.default_rng(0)

    def texts(style: list[str], n: int) -> list[str]:
        return [
            " ".join(rng.choice(style + ["the", "a", "today"], rng.integers(2, 6)))
            for _ in range(n)
        ]

    news, chat = ["news", "report", "market"], ["omg", "lol", "fr"]
    source = texts(news, 80) + texts(chat, 20)  # rows 80-99 look like the target
    target = texts(chat, 100)
    feats = text_features(model, tok, source, batch_size=7)
    assert feats.shape == (100, 16) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, text_features(model, tok, source, batch_size=64), atol=1e-5)
    ratio = density_ratio_weights(feats, text_features(model, tok, target), seed=0)
    assert ratio.weights[80:].mean() > 3 * ratio.weights[:80].mean()


def _readme_block(containing: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    (block,) = [b for b in blocks if containing in b]
    return block


def check_readme_envelope_quantile(ctx: Ctx) -> None:
    from rsft import Envelope, RejectionSampler

    weights = np.random.default_rng(0).lognormal(0.0, 1.5, 2000)
    scope = {"RejectionSampler": RejectionSampler, "Envelope": Envelope, "weights": weights}
    exec(_readme_block('Envelope("quantile", quantile='), scope)
    quantile = scope["sampler"].stats()
    exact = RejectionSampler(weights, Envelope("max"), seed=0).stats()
    assert quantile.violations > 0 and exact.violations == 0
    assert quantile.acceptance_rate > 2 * exact.acceptance_rate


def check_sampler_stats_last_epoch(ctx: Ctx) -> None:
    from rsft import Envelope, RejectionSampler

    sampler = RejectionSampler(np.linspace(0.1, 1.0, 500), Envelope("max"), seed=0)
    accepted = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        accepted.append(len(list(sampler)))
    assert sampler.stats().accepted == accepted[-1] == sampler.stats(2).accepted
    assert sampler.stats().n == 500  # one epoch's draw, not three
    assert "last epoch" in (sampler.stats.__doc__ or "") or "epoch last set" in (
        sampler.stats.__doc__ or ""
    )
    scope = {"sampler": sampler, "print": lambda *a: None}
    exec(_readme_block("total.merge(sampler.stats(epoch))"), scope)
    assert scope["total"].accepted == sum(accepted) and scope["total"].n == 1500


def check_docs_linked(ctx: Ctx) -> None:
    architecture = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    for target in ("docs/models.md", "docs/recipes/pretrain_then_finetune.md"):
        assert target in architecture and (ROOT / target).is_file(), target
    models = (ROOT / "docs" / "models.md").read_text()
    assert "num_labels" in models and "forward(pixel_values)" in models
    assert "text_features(" in (ROOT / "docs" / "recipes" / "hf_trainer.md").read_text()


CASES = [
    # progress output (train, compare, rft, prepare)
    Case(
        "train-pipe",
        "rsft train, stdout and stderr to one pipe (a real process)",
        "no carriage return; one 'epoch N | train loss ...' line per epoch",
        check_train_pipe,
    ),
    Case(
        "train-log-long-epoch",
        "rsft train into a log, every epoch longer than LINE_EVERY_S",
        "plain 'epoch 1/2 k/3 steps (p%): loss=...' lines on stderr, no carriage return",
        check_train_log_long_epoch,
    ),
    Case(
        "train-progress-false",
        "progress: false, into a log",
        "no bar and no periodic line; the per-epoch lines stay",
        check_train_progress_false,
    ),
    Case(
        "train-progress-quiet",
        "progress: quiet",
        "no per-epoch line and nothing on stderr; the command's summary stays",
        check_train_progress_quiet,
    ),
    Case(
        "train-terminal",
        "rsft train with stderr a terminal",
        "tqdm bars (carriage returns) on the terminal, and the per-epoch lines",
        check_train_terminal,
    ),
    Case(
        "compare-log",
        "rsft compare, 2 methods x 1 seed, into a log",
        "one 'compare i/2 runs' line per finished run (method, seed, accuracy); no run's "
        "epoch lines; no carriage return",
        check_compare_log,
    ),
    Case(
        "rft-log",
        "rsft rft, one round on a tiny LM, into a log",
        "a line for the base model and one per round; no carriage return",
        check_rft_log,
    ),
    Case(
        "prepare-log",
        "rsft prepare digits into a log",
        "a 'pretraining DigitsNet' line and one line per pretraining epoch; no carriage return",
        check_prepare_log,
    ),
    # image size against data.resize / data.crop
    Case(
        "small-images",
        "8x8 images (a folder, a table), data.resize 256 and data.crop 224 (the defaults)",
        "SmallImagesWarning naming data.resize, data.crop, the 8 px edge and the fix",
        check_small_images,
    ),
    Case(
        "small-images-own-size",
        "8x8 images, data.resize 8, data.crop 8",
        "no warning",
        check_small_images_own_size,
    ),
    Case(
        "mid-size-images",
        "96x96 images, the defaults (upscaled 2.7x)",
        "no warning",
        check_mid_size_images,
    ),
    Case(
        "small-images-model-processor",
        "8x8 images with the model folder's own image processor",
        "no warning: resize and crop are not used",
        check_small_images_model_processor,
    ),
    # data.feature_columns: all
    Case(
        "features-all",
        "feature_columns: all on x0, x1, a list column, text, label, group, id (excluded), "
        "w (rejection.column)",
        "features x0, x1 and the list, in table order; the rest left out",
        check_features_all,
    ),
    Case(
        "features-all-other-splits",
        "feature_columns: all; the test table has an extra numeric column",
        "the test split reads the training table's columns",
        check_features_all_other_splits,
    ),
    Case(
        "features-all-none-numeric",
        "feature_columns: all on a table of text and labels only",
        "DataError naming data.feature_columns, before training",
        check_features_all_none_numeric,
    ),
    Case(
        "exclude-without-all",
        "data.exclude_columns with named feature_columns",
        "ConfigError: exclude_columns applies to feature_columns: all only",
        check_exclude_without_all,
    ),
    # the contract of a model named by import path (docs/models.md)
    Case(
        "contract-features",
        "model.path: usability_models:Recorder on a feature table",
        "Class(**model.kwargs) without num_labels; forward(features), one float32 "
        "(batch, n) tensor; the head 'classifier' resized to the classes",
        check_contract_features,
    ),
    Case(
        "contract-images",
        "the same model on an image folder, resize 8, crop 6",
        "forward(pixel_values), one float32 (batch, 3, 6, 6) tensor",
        check_contract_images,
    ),
    Case(
        "contract-text",
        "the same model saved as an rsft folder with a tokenizer beside it, on text",
        "forward(input_ids=, attention_mask=, token_type_ids=) as int64 keywords",
        check_contract_text,
    ),
    # Python API and docs
    Case(
        "hf-text-features",
        "text_features(tiny BERT, tokenizer, texts); density_ratio_weights on them",
        "one vector per text, equal at any batch size; target-like texts weighted up",
        check_hf_text_features,
    ),
    Case(
        "readme-envelope-quantile",
        "README's Envelope('quantile', quantile=0.95) snippet on lognormal weights",
        "runs; violations counted; acceptance over twice Envelope('max')'s",
        check_readme_envelope_quantile,
    ),
    Case(
        "sampler-stats-last-epoch",
        "sampler.stats() after epochs 0-2; README's merge snippet",
        "stats() is the last epoch's draw only; the merged totals count all three",
        check_sampler_stats_last_epoch,
    ),
    Case(
        "docs-linked",
        "docs/ARCHITECTURE.md, docs/models.md, docs/recipes/hf_trainer.md",
        "the contract and the pretrain recipe are linked; the Trainer recipe shows text_features",
        check_docs_linked,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_usability(case: Case, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    case.check(Ctx(tmp_path, capsys, monkeypatch))
