"""Reliability suite: bad input to ``rsft train``, ``rsft compare`` and ``rsft rft``.

``CASES`` below is the table: one row per input (its id, the command-line options that make
it, and the fragments the error must hold). Each input changes one thing in a setup that
works (the control test trains it). Unless a row says otherwise, the command stops with exit
code 2 and one line ``rsft <command>: error: ...`` holding every expected fragment (the option
or file, what is wrong, the fix), and nothing was trained: no checkpoint, no results.json, no
model. ``$name`` in a row is a file made by the ``files`` fixture. Rows marked "(held before)"
were already refused before issue 10 and must stay so; the others used to be accepted, to fail
later with a traceback or a message naming the wrong option, or to exit 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

import numpy as np
import pytest

from rsft.cli.main import main

HERE = Path(__file__).resolve().parent
N_ROWS = 60
N_CLASSES = 3
NAN_ROW = 7
NEGATIVE_ROW = 4


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    expected: tuple[str, ...]
    command: str = "train"
    before_training: bool = True  # nothing trained: no checkpoint, results or model
    absent: tuple[str, ...] = ()  # fragments the message must not hold


def case(id: str, args: list[str], expected: list[str], **kw) -> Case:
    return Case(id, tuple(args), tuple(expected), **kw)


FINITE = "expected a finite number"
CONFIDENCE = ["rejection.weights=confidence"]
FIXED_M = "rejection.envelope={policy: fixed, value: 0.001}"
RFT = ["model.path=$missing", "data.train=$missing", "data.eval=$missing"]

CASES = [
    # --- option values: refused when the config is read, naming the option
    case("lr-inf", ["optim.lr=inf"], ["optim.lr: " + FINITE, "'inf'"]),
    case("lr-yaml-inf", ["optim.lr=.inf"], ["optim.lr: " + FINITE]),
    case("momentum-nan", ["optim.momentum=nan"], ["optim.momentum: " + FINITE]),
    case("weight-decay-nan", ["optim.weight_decay=.nan"], ["optim.weight_decay: " + FINITE]),
    case("max-grad-norm-nan", ["optim.max_grad_norm=nan"], ["optim.max_grad_norm: " + FINITE]),
    case(
        "max-grad-norm-negative",
        ["optim.max_grad_norm=-1"],
        ["optim.max_grad_norm must be > 0, got -1.0", "null", "clipping off"],
    ),
    case(
        "max-grad-norm-zero",
        ["optim.max_grad_norm=0"],
        ["optim.max_grad_norm must be > 0, got 0.0", "null"],
    ),
    case("warmup-negative", ["optim.warmup_steps=-3"], ["optim.warmup_steps must be >= 0, got -3"]),
    case(
        "weight-decay-negative",
        ["optim.weight_decay=-5"],
        ["optim.weight_decay must be >= 0, got -5.0", "Use 0"],
    ),
    case(
        "momentum-one-or-more",
        ["optim.momentum=1.5"],
        ["optim.momentum must be in [0, 1), got 1.5"],
    ),
    case(
        "nesterov-without-momentum",
        ["optim.nesterov=true", "optim.momentum=0"],
        ["optim.nesterov needs optim.momentum > 0"],
    ),
    case("beta-inf", ["rejection.beta=inf"], ["rejection.beta: " + FINITE]),
    case(
        "balance-target-not-a-number",
        ["rejection.weights=balance", "rejection.balance_target={'0': x}"],
        ["rejection.balance_target.0: expected a number, got 'x'"],
    ),
    case(
        "divergence-factor-too-small",
        ["divergence_factor=0.5"],
        ["divergence_factor must be > 1, got 0.5"],
    ),
    case("on-divergence-typo", ["on_divergence=stopp"], ["on_divergence", "Did you mean 'stop'?"]),
    # (held before)
    case("unknown-option", ["optim.lrr=0.1"], ["unknown option 'optim.lrr'", "Did you mean 'lr'?"]),
    case(
        "compare-lr-inf",
        ["--config", "$compare_yaml", "base.optim.lr=inf"],
        ["method 'plain'", "optim.lr: " + FINITE],
        command="compare",
    ),
    case(
        "rft-temperature-nan",
        [*RFT, "generation.temperature=nan"],
        ["generation.temperature: " + FINITE],
        command="rft",
    ),
    case(
        "rft-warmup-ratio",
        [*RFT, "sft.warmup_ratio=1.5"],
        ["sft.warmup_ratio must be in [0, 1), got 1.5"],
        command="rft",
    ),
    # --- files and folders: named, before any data or model is loaded
    case(
        "yaml-malformed",
        ["--config", "$misindented_yaml"],
        ["$misindented_yaml: not valid YAML", "line 3, column 2", "indentation"],
    ),
    case(
        "yaml-unclosed-bracket",
        ["--config", "$unclosed_yaml"],
        ["$unclosed_yaml: not valid YAML", "line 2, column"],
    ),
    case(
        "output-dir-is-a-file",
        ["output_dir=$a_file", "data.train=$missing"],
        ["output_dir '$a_file': it is a file, not a folder", "Choose another output_dir"],
        absent=["does not exist"],  # checked before the (missing) data
    ),
    case(
        "output-dir-inside-a-file",
        ["output_dir=$a_file/run"],
        ["'$a_file', part of that path, is a file"],
    ),
    case(
        "compare-output-dir-is-a-file",
        ["--config", "$compare_yaml", "output_dir=$a_file"],
        ["output_dir '$a_file': it is a file"],
        command="compare",
    ),
    case(
        "rft-output-dir-is-a-file",
        [*RFT, "output_dir=$a_file"],
        ["output_dir '$a_file': it is a file"],
        command="rft",
        absent=["does not exist"],  # checked before the (missing) model folder
    ),
    # (held before)
    case(
        "missing-data-file",
        ["data.train=$missing"],
        ["$missing", "does not exist", "Check the path"],
    ),
    # --- data content
    # (held before)
    case(
        "nan-features",
        ["data.train=$nan"],
        ["feature column 'pixels' of $nan", f"first at row {NAN_ROW}", "NaN", "Fill, clip or drop"],
    ),
    # (held before)
    case(
        "unknown-eval-label",
        ["data.eval=$eval4"],
        [
            "'3' (5 rows)",
            "$eval4",
            "not among the known classes ['0', '1', '2']",
            "add samples of that class to the training split",
        ],
    ),
    # (held before)
    case(
        "corrupt-image",
        ["@images", "data.train=$corrupt"],
        ["1 image(s)", "$corrupt/dog/1.png", "cannot be read", "Replace or delete"],
        absent=["0.png", "2.png"],  # only the bad file is blamed
    ),
    case(
        "truncated-jpeg",
        ["@images", "data.train=$truncated"],
        ["1 image(s)", "$truncated/dog/1.jpg", "truncated", "Replace or delete"],
        absent=["0.jpg"],
    ),
    # --- weights and envelopes
    # (held before)
    case(
        "negative-weight",
        ["rejection.weights=column", "rejection.column=w_neg"],
        ["weight column", "negative", str(NEGATIVE_ROW), "-0.5", ">= 0"],
    ),
    # (held before)
    case(
        "weight-function-raises",
        ["rejection.weights=function", "rejection.function=bad_input_weight_fns:fails_on_class_2"],
        [
            "weight function 'bad_input_weight_fns:fails_on_class_2' raised RuntimeError at "
            "sample 2",
            "no weight for class 2",  # the function's own message is kept
        ],
    ),
    # (held before)
    case(
        "fixed-envelope-below-weights",
        [
            "rejection.weights=column",
            "rejection.column=w_ok",
            "rejection.envelope={policy: fixed, value: 0.5}",
        ],
        ["envelope M=0.5 is below", "(largest 2)", "Set M >= 2", "on_violation: count"],
    ),
    case(
        "model-aware-fixed-envelope",
        [*CONFIDENCE, FIXED_M],
        ["rejection.envelope on the first batch", "envelope M=0.001 is below 16 weight(s)"],
    ),
    case(
        "model-aware-envelope-later-round",
        [
            "rejection.weights=model_function",
            "rejection.function=guard_fns:grows_after_first_call",
            "rejection.envelope={policy: fixed, value: 1.0}",
        ],
        ["rejection.envelope at epoch 1, step 1", "M=1 is below 16 weight(s) (largest 5)"],
        before_training=False,
    ),
]


pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture(autouse=True)
def _training_test_helpers(monkeypatch):
    """The weight functions of tests/training/test_bad_input.py, reused by name."""
    monkeypatch.syspath_prepend(str(HERE.parent / "training"))


def _image_folders(root: Path) -> dict[str, str]:
    """A tiny transformers ResNet and image folders: good, a corrupt PNG, a truncated JPEG."""
    from PIL import Image
    from transformers import ResNetConfig, ResNetForImageClassification

    ResNetForImageClassification(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=2)
    ).save_pretrained(root / "resnet")
    rng = np.random.default_rng(0)
    for name, ext in (("good", "png"), ("corrupt", "png"), ("truncated", "jpg")):
        for cls in ("cat", "dog"):
            (root / name / cls).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / name / cls / f"{i}.{ext}")
    (root / "corrupt" / "dog" / "1.png").write_bytes(b"these bytes are not a PNG")
    # The last fifth cut off: the header is intact, so PIL's verify() passes it; decoding fails.
    jpeg = root / "truncated" / "dog" / "1.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size * 4 // 5])
    with Image.open(jpeg) as image:
        image.verify()
    return {name: str(root / name) for name in ("resnet", "good", "corrupt", "truncated")}


@pytest.fixture(scope="module")
def files(tmp_path_factory, three_class_table) -> dict[str, str]:
    root = tmp_path_factory.mktemp("reliability_bad_input")
    labels = np.arange(N_ROWS) % N_CLASSES  # rows 0, 1, 2 hold classes 0, 1, 2
    w_ok = np.random.default_rng(5).uniform(0.5, 2.0, N_ROWS)
    w_ok[10] = 2.0  # the largest weight is exactly 2
    w_neg = w_ok.copy()
    w_neg[NEGATIVE_ROW] = -0.5
    weights = {"w_ok": w_ok.tolist(), "w_neg": w_neg.tolist()}
    (root / "a_file").write_text("not a folder")
    (root / "misindented.yaml").write_text("model:\n  path: x\n data:\n  train: y\n")
    (root / "unclosed.yaml").write_text("optim: {lr: 0.1\nepochs: 2\n")
    paths = {
        "train": three_class_table(root / "train.parquet", labels, 0, **weights),
        "eval": three_class_table(root / "eval.parquet", np.arange(30) % 3, 1),
        "eval4": three_class_table(root / "eval4.parquet", np.arange(20) % 4, 2),
        "nan": three_class_table(root / "nan.parquet", labels, 0, nan_row=NAN_ROW),
        "a_file": str(root / "a_file"),
        "missing": str(root / "missing.parquet"),
        "misindented_yaml": str(root / "misindented.yaml"),
        "unclosed_yaml": str(root / "unclosed.yaml"),
        **_image_folders(root / "images"),
    }
    import yaml

    compare = {"base": _train_dict(paths), "methods": {"plain": {}}, "seeds": [0]}
    (root / "compare.yaml").write_text(yaml.safe_dump(compare))
    paths["compare_yaml"] = str(root / "compare.yaml")
    return paths


def _train_dict(files: dict[str, str]) -> dict:
    return {
        "model": {"path": "rsft.tasks.digits:DigitsNet", "kwargs": {"width": 8}},
        "data": {"train": files["train"], "eval": files["eval"], "feature_columns": ["pixels"]},
        "epochs": 1,
        "batch_size": 16,
        "progress": False,
    }


def _command(c: Case, files: dict[str, str], out: Path) -> list[str]:
    """The command line of a case: its inputs over the base setup of its command."""
    args = [Template(a).safe_substitute(files) for a in c.args]
    config = args[:2] if args[:1] == ["--config"] else []
    args = args[len(config) :]
    base: list[str] = []
    if c.command == "train" and args[:1] == ["@images"]:
        args = args[1:]
        base = [f"model.path={files['resnet']}", "data.resize=32", "data.crop=32"]
        base += ["batch_size=4", "epochs=1", "progress=false"]
    elif c.command == "train":
        base = [
            "model.path=rsft.tasks.digits:DigitsNet",
            "model.kwargs={width: 8}",
            f"data.train={files['train']}",
            f"data.eval={files['eval']}",
            "data.feature_columns=[pixels]",
            "batch_size=16",
            "epochs=1",
            "progress=false",
        ]
    if not any(a.startswith("output_dir=") for a in args):
        base.append(f"output_dir={out}")
    return [c.command, *config, *base, *args]


@pytest.mark.parametrize(
    "extra, saved",
    [
        pytest.param([], "rsft_model.json", id="control-table"),
        pytest.param(["@images", "data.train=$good"], "config.json", id="control-images"),
    ],
)
def test_control_the_unchanged_setup_trains(files, tmp_path, capsys, extra, saved):
    """Each failure below comes from its one change, not from the setup: the setup trains
    and saves its model (an rsft folder for the table's DigitsNet, a transformers folder for
    the images' ResNet)."""
    out = tmp_path / "run"
    control = Case("control", tuple(extra), ())
    assert main(_command(control, files, out)) == 0, capsys.readouterr().err
    assert (out / "results.json").is_file()
    assert (out / "model" / saved).is_file()


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input(c: Case, files, tmp_path, capsys):
    out = tmp_path / "run"
    if c.id == "model-aware-envelope-later-round":
        import guard_fns

        guard_fns.CALLS["grows"] = 0
    rc = main(_command(c, files, out))
    err = capsys.readouterr().err
    assert rc == 2, f"exit code {rc}; stderr: {err}"
    assert err.startswith(f"rsft {c.command}: error: "), err
    assert "Traceback" not in err
    for fragment in c.expected:
        assert Template(fragment).safe_substitute(files) in err, f"{fragment!r} not in {err!r}"
    for fragment in c.absent:
        assert fragment not in err, err
    assert not (out / "results.json").exists()
    assert not (out / "model").exists()
    if c.before_training:
        assert not (out / "checkpoints").exists(), "a checkpoint was written: training started"
