"""Bad input fails before training starts, with a message that names the problem and the fix.

The table of bad inputs and what each does is tests/reliability/test_bad_input.py (the
unknown option, NaN features, an unknown label, a corrupt image, bad weights, ...); this file
keeps the cases that table does not hold. Every case runs ``rsft train``
(``rsft.cli.main.main``) on a tiny table that trains fine as given (see the control tests),
changed in exactly one place. The run must stop with exit code 2 and an ``rsft train: error:``
message, and nothing may have been trained: no checkpoints folder and no results.json in
output_dir. The one exception is a loss that becomes non-finite, which can only happen during
training: it must stop the run with NonFiniteLossError instead of being averaged away into a
results.json.
"""

from __future__ import annotations

import re
from pathlib import Path

import datasets
import numpy as np
import pytest

from rsft.cli.main import main
from rsft.config import deep_merge, from_dict, parse_overrides
from rsft.training import FineTuner, TrainConfig
from rsft.training.trainer import NonFiniteLossError

N_ROWS = 60
N_CLASSES = 3
HERE = Path(__file__).resolve().parent
WEIGHT_FNS = "bad_input_weight_fns"  # the helper module beside this file


@pytest.fixture(autouse=True)
def _offline_and_isolated(monkeypatch, tmp_path):
    """No network; relative paths (and any default output_dir) land in tmp_path; the
    helper module of weight functions is importable."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(HERE))


def _write(path: Path, columns: dict) -> str:
    datasets.Dataset.from_dict(columns).to_parquet(str(path))
    return str(path)


def _columns(n: int, n_classes: int, seed: int) -> dict:
    """Separable features: each class around its own centre (shared by every table)."""
    centres = np.random.default_rng(1234).normal(0.0, 1.0, (n_classes, 64))
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes  # rows 0, 1, 2 hold classes 0, 1, 2
    pixels = centres[labels] + rng.normal(0.0, 0.5, (n, 64))
    return {"pixels": pixels.astype("float32").tolist(), "label": labels.tolist()}


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_input_tables")
    train = _columns(N_ROWS, N_CLASSES, seed=0)
    w_ok = np.random.default_rng(5).uniform(0.5, 2.0, N_ROWS)
    w_ok[10] = 2.0  # the largest weight is exactly 2
    train.update(w_ok=w_ok.tolist())
    return {
        "train": _write(root / "train.parquet", train),
        "eval": _write(root / "eval.parquet", _columns(30, N_CLASSES, seed=1)),
    }


def _base(tables: dict[str, str], out: Path) -> list[str]:
    return [
        "model.path=rsft.tasks.digits:DigitsNet",
        "model.kwargs={width: 8}",
        f"data.train={tables['train']}",
        f"data.eval={tables['eval']}",
        "data.feature_columns=[pixels]",
        "epochs=1",
        "batch_size=16",
        "progress=false",
        f"output_dir={out}",
    ]


def _assert_not_trained(out: Path) -> None:
    assert not (out / "checkpoints").exists(), "a checkpoint was written: training started"
    assert not (out / "results.json").exists(), "results.json was written: training ran"
    assert not (out / "model").exists()


def _fails(args: list[str], capsys, out: Path) -> str:
    """Run ``rsft train`` expecting a clean refusal; return its one-line stderr message."""
    rc = main(["train", *args])
    captured = capsys.readouterr()
    assert rc == 2, f"expected exit code 2, got {rc}; stderr: {captured.err}"
    assert captured.err.startswith("rsft train: error: "), captured.err
    assert "Traceback" not in captured.err
    _assert_not_trained(out)
    return captured.err


# --------------------------------------------------------------------------- controls


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(
            [
                "rejection.weights=column",
                "rejection.column=w_ok",
                "rejection.envelope.policy=fixed",
                "rejection.envelope.value=2.0",
            ],
            id="column-weights-under-fixed-M",
        ),
        pytest.param(
            ["rejection.weights=function", f"rejection.function={WEIGHT_FNS}:constant"],
            id="function-weights",
        ),
    ],
)
def test_control_the_unchanged_setup_trains(tables, tmp_path, capsys, extra):
    """The base setup trains with column weights under a fixed M of 2 and with a weight
    function: the good twins of the reliability suite's fixed-envelope-below-weights and
    weight-function-raises (the setup alone is its control-table). Each failure below is
    caused by its one change, not by the fixture."""
    out = tmp_path / "run"
    assert main(["train", *_base(tables, out), *extra]) == 0
    assert (out / "results.json").is_file()
    assert "rsft train: error" not in capsys.readouterr().err


# --------------------------------------------------------------------------- options


def test_bad_literal_suggests_the_closest_value(tables, tmp_path, capsys):
    out = tmp_path / "run"
    err = _fails([*_base(tables, out), "rejection.mode=rejct"], capsys, out)
    assert "rejection.mode" in err and "'rejct'" in err
    assert "Did you mean 'reject'?" in err
    assert "'weight'" in err  # the valid values are listed


def test_density_ratio_without_target_unlabelled(tables, tmp_path, capsys):
    out = tmp_path / "run"
    err = _fails([*_base(tables, out), "rejection.weights=density_ratio"], capsys, out)
    assert "density_ratio" in err
    assert "rejection.target_unlabelled" in err


def test_freeze_patterns_selecting_everything(tables, tmp_path, capsys):
    out = tmp_path / "run"
    args = [*_base(tables, out), "model.freeze=patterns", "model.freeze_patterns=['*']"]
    err = _fails(args, capsys, out)
    assert "no parameter to train" in err
    assert "model.freeze_patterns" in err and "model.trainable_patterns" in err


# --------------------------------------------------------------------------- paths


@pytest.mark.parametrize("key", ["data.train", "data.eval"])
@pytest.mark.parametrize("name", ["missing.parquet", "missing_folder"])
def test_missing_data_file_or_folder(tables, tmp_path, capsys, key, name):
    out = tmp_path / "run"
    missing = tmp_path / name
    err = _fails([*_base(tables, out), f"{key}={missing}"], capsys, out)
    assert str(missing) in err
    assert "does not exist" in err
    assert "Check the path" in err


def test_model_folder_that_does_not_exist(tables, tmp_path, capsys):
    out = tmp_path / "run"
    missing = tmp_path / "no_such_model"
    err = _fails([*_base(tables, out), f"model.path={missing}"], capsys, out)
    assert str(missing) in err and "does not exist" in err
    assert "transformers model folder" in err and "import path" in err


@pytest.mark.parametrize(
    "key, value, expected",
    [
        pytest.param(
            "model.path",
            "no_such_package.models:Net",
            ["cannot import module 'no_such_package.models'", "PYTHONPATH"],
            id="model-module",
        ),
        pytest.param(
            "model.path",
            "rsft.tasks.digits:NoSuchNet",
            ["'rsft.tasks.digits' has no 'NoSuchNet'"],
            id="model-attribute",
        ),
        pytest.param(
            "rejection.function",
            "no_such_module:weigh",
            ["cannot import module 'no_such_module'", "weight function", "PYTHONPATH"],
            id="weight-function-module",
        ),
    ],
)
def test_import_path_that_does_not_import(tables, tmp_path, capsys, key, value, expected):
    out = tmp_path / "run"
    extra = ["rejection.weights=function"] if key == "rejection.function" else []
    err = _fails([*_base(tables, out), *extra, f"{key}={value}"], capsys, out)
    for text in expected:
        assert text in err


# --------------------------------------------------------------------------- image folders


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, str]:
    """A tiny transformers ResNet, and an image folder with an empty class."""
    from PIL import Image
    from transformers import ResNetConfig, ResNetForImageClassification

    root = tmp_path_factory.mktemp("bad_input_images")
    model = ResNetForImageClassification(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=2)
    )
    model.save_pretrained(root / "resnet")
    rng = np.random.default_rng(0)
    folder = root / "empty_class"
    for cls in ("cat", "dog"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / cls / f"{i}.png")
    (folder / "eel").mkdir()
    return {"model": str(root / "resnet"), "empty_class": str(folder)}


def _image_args(images: dict[str, str], train: str, out: Path) -> list[str]:
    return [
        f"model.path={images['model']}",
        f"data.train={images[train]}",
        "data.resize=32",
        "data.crop=32",
        "epochs=1",
        "batch_size=4",
        "progress=false",
        f"output_dir={out}",
    ]


def test_empty_class_folder(images, tmp_path, capsys):
    out = tmp_path / "run"
    err = _fails(_image_args(images, "empty_class", out), capsys, out)
    assert str(Path(images["empty_class"]) / "eel") in err
    assert "hold no images" in err
    assert "Add images, or delete the folder" in err


# --------------------------------------------------------------------------- during training


def test_non_finite_loss_stops_the_run_and_says_where(tables, tmp_path):
    """A learning rate of 1e30 makes the loss NaN/inf within a few steps. The run must stop
    there, naming the step and what to change, not finish with a NaN-averaged result."""
    out = tmp_path / "run"
    overrides = [*_base(tables, out), "optim.lr=1e30", "model.freeze=none", "checkpoint_every=1"]
    cfg = from_dict(TrainConfig, deep_merge({}, parse_overrides(overrides)))
    tuner = FineTuner(cfg)
    with pytest.raises(NonFiniteLossError) as info:
        tuner.train()
    msg = str(info.value)
    found = re.search(r"loss is (nan|inf|-inf) at epoch 1, step (\d+) \(global step (\d+)\)", msg)
    assert found, msg
    step = int(found.group(3))
    assert step >= 1
    assert "optim.lr" in msg and "optim.max_grad_norm" in msg
    # The message points at the last good checkpoint (one per step here), which exists.
    if step > 1:
        last = out / "checkpoints" / f"step-{step - 1:08d}-save{step - 1:06d}"
        assert f"Last checkpoint: {last}" in msg
        assert last.is_dir()
    else:
        assert "Last checkpoint: none" in msg
    assert not list((out / "checkpoints").glob(f"step-{step:08d}-*"))
    assert not (out / "results.json").exists()
    assert not (out / "model").exists()
