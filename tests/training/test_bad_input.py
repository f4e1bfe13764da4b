"""Bad input fails before training starts, with a message that names the problem and the fix.

Every case runs ``rsft train`` (``rsft.cli.main.main``) on a tiny table that trains fine as
given (see the control tests), changed in exactly one place. The run must stop with exit code
2 and an ``rsft train: error:`` message, and nothing may have been trained: no checkpoints
folder and no results.json in output_dir. The one exception is a loss that becomes non-finite,
which can only happen during training: it must stop the run with NonFiniteLossError instead of
being averaged away into a results.json.
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
NAN_ROW = 7
NEGATIVE_ROW = 4


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
    w_neg = w_ok.copy()
    w_neg[NEGATIVE_ROW] = -0.5
    train.update(w_ok=w_ok.tolist(), w_neg=w_neg.tolist())

    with_nan = _columns(N_ROWS, N_CLASSES, seed=0)
    with_nan["pixels"][NAN_ROW][10] = float("nan")

    return {
        "train": _write(root / "train.parquet", train),
        "eval": _write(root / "eval.parquet", _columns(30, N_CLASSES, seed=1)),
        "eval_extra_class": _write(root / "eval4.parquet", _columns(20, 4, seed=2)),
        "nan": _write(root / "nan.parquet", with_nan),
        "root": str(root),
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
        pytest.param([], id="plain"),
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
    """The base setup, and the good twin of each weight case, trains: each failure below is
    caused by its one change, not by the fixture."""
    out = tmp_path / "run"
    assert main(["train", *_base(tables, out), *extra]) == 0
    assert (out / "results.json").is_file()
    assert "rsft train: error" not in capsys.readouterr().err


# --------------------------------------------------------------------------- options


def test_unknown_option_suggests_the_closest_name(tables, tmp_path, capsys):
    out = tmp_path / "run"
    err = _fails([*_base(tables, out), "optim.lrr=0.1"], capsys, out)
    assert "unknown option 'optim.lrr'" in err
    assert "Did you mean 'lr'?" in err


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


# --------------------------------------------------------------------------- table content


def test_eval_label_outside_the_training_classes(tables, tmp_path, capsys):
    out = tmp_path / "run"
    err = _fails([*_base(tables, out), f"data.eval={tables['eval_extra_class']}"], capsys, out)
    assert "'3' (5 rows)" in err
    assert tables["eval_extra_class"] in err
    assert "not among the known classes ['0', '1', '2']" in err
    assert "add samples of that class to the training split" in err


def test_nan_in_features(tables, tmp_path, capsys):
    out = tmp_path / "run"
    err = _fails([*_base(tables, out), f"data.train={tables['nan']}"], capsys, out)
    assert "feature column 'pixels'" in err and tables["nan"] in err
    assert f"first at row {NAN_ROW}" in err and "NaN" in err
    assert "Fill, clip or drop" in err


# --------------------------------------------------------------------------- weights


def test_negative_value_in_weight_column(tables, tmp_path, capsys):
    out = tmp_path / "run"
    args = [*_base(tables, out), "rejection.weights=column", "rejection.column=w_neg"]
    err = _fails(args, capsys, out)
    assert "weight column" in err and "negative" in err
    assert str(NEGATIVE_ROW) in err and "-0.5" in err
    assert ">= 0" in err


def test_weight_function_that_raises(tables, tmp_path, capsys):
    out = tmp_path / "run"
    fn = f"{WEIGHT_FNS}:fails_on_class_2"
    args = [*_base(tables, out), "rejection.weights=function", f"rejection.function={fn}"]
    err = _fails(args, capsys, out)
    assert f"weight function {fn!r} raised RuntimeError at sample 2" in err
    assert "no weight for class 2" in err  # the function's own message is kept


def test_fixed_envelope_below_the_weights(tables, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        *_base(tables, out),
        "rejection.weights=column",
        "rejection.column=w_ok",
        "rejection.envelope.policy=fixed",
        "rejection.envelope.value=0.5",
    ]
    err = _fails(args, capsys, out)
    assert "envelope M=0.5 is below" in err
    assert "largest 2)" in err
    assert "Set M >= 2" in err and "on_violation: count" in err


# --------------------------------------------------------------------------- image folders


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, str]:
    """A tiny transformers ResNet, and image folders: good, one corrupt file, an empty class."""
    from PIL import Image
    from transformers import ResNetConfig, ResNetForImageClassification

    root = tmp_path_factory.mktemp("bad_input_images")
    model = ResNetForImageClassification(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=2)
    )
    model.save_pretrained(root / "resnet")
    rng = np.random.default_rng(0)
    folders = {}
    for name in ("good", "corrupt", "empty_class"):
        for cls in ("cat", "dog"):
            (root / name / cls).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / name / cls / f"{i}.png")
        folders[name] = str(root / name)
    (root / "corrupt" / "dog" / "1.png").write_bytes(b"these bytes are not a PNG")
    (root / "empty_class" / "eel").mkdir()
    return {"model": str(root / "resnet"), **folders}


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


def test_control_good_image_folder_trains(images, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *_image_args(images, "good", out)]) == 0
    assert (out / "model" / "config.json").is_file()


def test_corrupt_image_is_named_by_its_path(images, tmp_path, capsys):
    out = tmp_path / "run"
    err = _fails(_image_args(images, "corrupt", out), capsys, out)
    bad = str(Path(images["corrupt"]) / "dog" / "1.png")
    assert "1 image(s)" in err and "cannot be read" in err
    assert bad in err
    assert "0.png" not in err and "2.png" not in err  # only the bad file is blamed
    assert "Replace or delete" in err


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
