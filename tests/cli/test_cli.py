"""The ``rsft`` command: help texts, ``train`` and ``compare`` end to end on tiny data, config
files with key=value overrides, reuse of finished compare runs, and the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml

from rsft import __version__
from rsft.cli.main import main
from rsft.compare.runner import CompareConfig
from rsft.config import describe
from rsft.training import TrainConfig

N_ROWS = 60
N_CLASSES = 3


@pytest.fixture(autouse=True)
def _offline_and_isolated(monkeypatch, tmp_path):
    """No network, and default output folders (runs/...) land in tmp_path, not the repo."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.chdir(tmp_path)


def _table(path: Path, n: int, seed: int) -> str:
    centres = np.random.default_rng(1234).normal(0.0, 1.0, (N_CLASSES, 64))
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % N_CLASSES
    pixels = centres[labels] + rng.normal(0.0, 0.5, (n, 64))
    columns = {"pixels": pixels.astype("float32").tolist(), "label": labels.tolist()}
    datasets.Dataset.from_dict(columns).to_parquet(str(path))
    return str(path)


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cli_tables")
    return {
        "train": _table(root / "train.parquet", N_ROWS, seed=0),
        "test": _table(root / "test.parquet", 30, seed=1),
    }


def _train_options(tables: dict[str, str]) -> dict:
    return {
        "model": {"path": "rsft.tasks.digits:DigitsNet", "kwargs": {"width": 8}},
        "data": {"train": tables["train"], "test": tables["test"], "feature_columns": ["pixels"]},
        "epochs": 1,
        "batch_size": 16,
        "progress": False,
    }


def _write_yaml(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    return capsys.readouterr().out


def _flat(text: str) -> str:
    """Whitespace collapsed, so help text wrapped over lines can be matched as one string."""
    return " ".join(text.split())


# --------------------------------------------------------------------------- help


def test_top_level_help_lists_the_commands(capsys):
    out = _help(["--help"], capsys)
    for command in ("train", "compare", "rft", "prepare"):
        assert command in out
    assert "fine-tune one model" in out
    assert "run several methods over several seeds" in out
    assert "--version" in out


def test_train_help_lists_every_option_with_its_help_text(capsys):
    out = _help(["train", "--help"], capsys)
    flat = _flat(out)
    for name in ("rejection.mode", "model.freeze", "optim.lr", "rejection.envelope.policy"):
        assert f"  {name}  (" in out
    assert "keep each sample with probability min(1, w/M)" in flat  # rejection.mode's help
    assert "'none' | 'all_but_head' | 'last_n' | 'patterns'; default 'all_but_head'" in out
    rows = describe(TrainConfig)
    assert len(rows) > 30
    for name, _type, default, text in rows:
        assert f"  {name}  (" in out, f"{name} missing from rsft train --help"
        assert f"default {default})" in out
        if text:
            assert _flat(text) in flat, f"help text of {name} missing"
    assert "key.sub=value" in out and "--config" in out


def test_compare_help_lists_its_options(capsys):
    out = _help(["compare", "--help"], capsys)
    flat = _flat(out)
    for name, _type, _default, text in describe(CompareConfig):
        assert f"  {name}  (" in out
        assert _flat(text) in flat
    assert "base and each method take the options of `rsft train`" in out


def test_rft_help_lists_its_options(capsys):
    from rsft.generation.config import RFTConfig

    out = _help(["rft", "--help"], capsys)
    flat = _flat(out)
    for name, _type, _default, text in describe(RFTConfig):
        assert f"  {name}  (" in out, f"{name} missing from rsft rft --help"
        assert _flat(text) in flat
    assert "selection.rule" in out and "exp(r/beta)" in flat


def test_prepare_help(capsys):
    out = _help(["prepare", "--help"], capsys)
    assert "digits" in out and "arithmetic" in out and "--out" in out and "--force" in out


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: rsft" in capsys.readouterr().err


# --------------------------------------------------------------------------- train


def test_train_with_config_file_and_overrides(tables, tmp_path, capsys):
    """YAML sets epochs 2, lr 0.01, momentum 0.5, seed 0; the command line overrides epochs,
    lr and seed. Overrides win, and merge into their section rather than replacing it."""
    options = _train_options(tables)
    options.update(epochs=2, seed=0, optim={"lr": 0.01, "momentum": 0.5})
    out = tmp_path / "run"
    config = _write_yaml(tmp_path / "cfg.yaml", options)

    argv = ["train", "--config", config, "epochs=1", "optim.lr=0.05", "seed=3"]
    assert main([*argv, f"output_dir={out}"]) == 0

    assert (out / "model" / "model.safetensors").is_file()
    result = json.loads((out / "results.json").read_text())
    cfg = result["config"]
    assert cfg["epochs"] == 1 and len(result["history"]) == 1  # override, not YAML's 2
    assert cfg["optim"]["lr"] == 0.05
    assert cfg["seed"] == 3
    assert cfg["optim"]["momentum"] == 0.5  # YAML sibling of the overridden lr is kept
    assert cfg["batch_size"] == 16  # from YAML, not the default 32
    assert cfg["output_dir"] == str(out)
    assert result["global_step"] == -(-N_ROWS // 16)
    assert result["classes"] == ["0", "1", "2"]
    assert 0.0 <= result["test_accuracy"] <= 1.0

    printed = capsys.readouterr().out
    assert printed.startswith("epoch 1 | train loss ")  # progress: false keeps epoch lines
    summary = json.loads(printed[printed.index("{") : printed.index("results:")])
    assert summary["test_accuracy"] == result["test_accuracy"]
    assert summary["forwarded"] == N_ROWS
    assert f"results: {out}/results.json" in printed
    assert f"model: {out}/model" in printed


def test_train_saved_model_loads_back(tables, tmp_path):
    from rsft.models import load_classifier
    from rsft.models.loading import get_num_labels

    out = tmp_path / "run"
    config = _write_yaml(tmp_path / "cfg.yaml", _train_options(tables))
    assert main(["train", "-c", config, f"output_dir={out}"]) == 0
    clf = load_classifier(str(out / "model"), N_CLASSES)
    assert get_num_labels(clf) == N_CLASSES
    assert clf.source["class"] == "rsft.tasks.digits:DigitsNet"


def test_train_without_config_file_from_overrides_only(tables, tmp_path):
    out = tmp_path / "run"
    argv = [
        "train",
        "model.path=rsft.tasks.digits:DigitsNet",
        "model.kwargs={width: 8}",
        f"data.train={tables['train']}",
        "data.feature_columns=[pixels]",
        "epochs=1",
        "progress=false",
        f"output_dir={out}",
    ]
    assert main(argv) == 0
    assert json.loads((out / "results.json").read_text())["config"]["model"]["kwargs"] == {
        "width": 8
    }


def test_train_missing_config_file(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert "rsft train: error:" in err
    assert "nope.yaml" in err and "does not exist" in err


def test_train_malformed_override(tables, tmp_path, capsys):
    config = _write_yaml(tmp_path / "cfg.yaml", _train_options(tables))
    assert main(["train", "-c", config, "optim.lr"]) == 2
    err = capsys.readouterr().err
    assert "'optim.lr'" in err and "key.sub=value" in err


def test_train_override_that_is_not_yaml(tables, tmp_path, capsys):
    config = _write_yaml(tmp_path / "cfg.yaml", _train_options(tables))
    assert main(["train", "-c", config, "param_level.patterns=[classifier.*,*.bias]"]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and "Quote strings" in err
    assert "Traceback" not in err


def test_train_config_file_that_is_not_a_mapping(tmp_path, capsys):
    config = tmp_path / "cfg.yaml"
    config.write_text("- just\n- a list\n")
    assert main(["train", "-c", str(config)]) == 2
    assert "must be a mapping of options" in capsys.readouterr().err


def test_train_without_model_section_names_the_option(tables, tmp_path, capsys):
    assert main(["train", f"data.train={tables['train']}", "data.feature_columns=[pixels]"]) == 2
    err = capsys.readouterr().err
    assert "model.path" in err
    assert "positional argument" not in err


# --------------------------------------------------------------------------- compare


class _Retrained(Exception):
    pass


def test_compare_end_to_end_then_reuses_finished_runs(tables, tmp_path, capsys, monkeypatch):
    out = tmp_path / "compare"
    config = _write_yaml(
        tmp_path / "compare.yaml",
        {
            "base": _train_options(tables),
            "methods": {"plain": {}, "balanced": {"rejection": {"weights": "balance"}}},
            "seeds": [0, 1, 2],
            "baseline": "plain",
            "output_dir": str(out),
        },
    )
    # 2 methods x 2 seeds (the override cuts the YAML's three seeds to two).
    assert main(["compare", "-c", config, "seeds=[0,1]"]) == 0
    printed = capsys.readouterr().out

    for name in ("results.json", "results.csv", "summary.csv", "table.md"):
        assert (out / name).is_file(), name
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = [out / m / f"seed-{s}" / "results.json" for m in ("plain", "balanced") for s in (0, 1)]
    for run in runs:
        assert run.is_file(), run
    assert not (out / "plain" / "seed-2").exists()

    results = json.loads((out / "results.json").read_text())
    assert sorted((r["method"], r["seed"]) for r in results["records"]) == [
        ("balanced", 0),
        ("balanced", 1),
        ("plain", 0),
        ("plain", 1),
    ]
    table = (out / "table.md").read_text()
    assert "plain" in table and "balanced" in table
    assert table.strip() in printed  # the printed table is the one written
    assert "Before fine-tuning, the pretrained model's target accuracy:" in table
    assert f"plot: {out / 'compare.png'}" in printed
    summary_csv = (out / "summary.csv").read_text()
    assert "plain" in summary_csv and "balanced" in summary_csv
    assert len((out / "results.csv").read_text().strip().splitlines()) == 1 + 4

    # Second run, same config: every run is finished, so nothing trains again.
    mtimes = [run.stat().st_mtime_ns for run in runs]
    calls: list = []

    class NoTraining:
        def __init__(self, cfg, *args, **kwargs):
            calls.append(cfg)
            raise _Retrained(cfg.output_dir)

    monkeypatch.setattr("rsft.compare.runner.FineTuner", NoTraining)
    assert main(["compare", "-c", config, "seeds=[0,1]"]) == 0
    assert calls == []
    assert [run.stat().st_mtime_ns for run in runs] == mtimes
    assert table.strip() in capsys.readouterr().out

    # A changed option is a different run: it is not taken from the old results.
    with pytest.raises(_Retrained):
        main(["compare", "-c", config, "seeds=[0,1]", "base.optim.lr=0.02"])
    assert len(calls) == 1
    # ... and it starts over: the old run's checkpoints belong to another config.
    assert calls[0].resume == "never"


# --------------------------------------------------------------------------- console script


def test_console_script_version():
    script = Path(sys.executable).parent / "rsft"
    assert script.is_file(), f"console script not installed at {script}"
    proc = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"rsft {__version__}"
