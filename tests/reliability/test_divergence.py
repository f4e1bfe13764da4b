"""Reliability suite: training that goes wrong must say so, not end quietly with exit 0.

``CASES`` is the table: one ``rsft train`` run per row (its id, the options that make it,
and the behaviour expected: exit code, the warning or error on stderr, and the divergence
events results.json records as (split, kind)). Runs use the tiny three-class tables of the
bad-input suite; each takes a few seconds.

The divergence guard flags a run whose loss rises far above its start (an epoch's mean train
loss, or the eval/test loss, above ``divergence_factor`` x its start) or whose predictions
collapse to one class the labels mostly are not. ``on_divergence: warn`` (the default) warns
and records ``diverged`` / ``divergence`` in results.json; ``stop`` ends with exit code 1 and
writes no results. Healthy runs are not flagged (no false alarm), here and on the digits task
(a slow test).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pytest

from rsft.cli.main import main
from rsft.compare.summary import summarize
from rsft.compare.table import format_table
from rsft.config import from_dict
from rsft.data import DataWarning, load_split
from rsft.data.config import DataConfig
from rsft.training import DivergenceWarning, FineTuner, TrainConfig
from rsft.training.divergence import (
    DivergenceError,
    DivergenceGuard,
    collapse_event,
    loss_event,
)
from rsft.training.state import TrainState


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    rc: int
    stderr: tuple[str, ...]  # fragments of stderr
    events: frozenset[tuple[str, str]]  # (split, kind) recorded in results.json; empty: healthy
    diverged: bool  # results.json's verdict on the final model (False: healthy or recovered)


def case(
    id: str, args: list[str], rc: int, stderr: list[str], events=(), diverged: bool | None = None
) -> Case:
    verdict = bool(events) if diverged is None else diverged
    return Case(id, tuple(args), rc, tuple(stderr), frozenset(events), verdict)


DIGITS_NET = ["model.path=rsft.tasks.digits:DigitsNet", "model.kwargs={width: 8}"]
# A linear head that starts accurate; trained on a split of 56 rows of class 0 and 2 of each
# other class, it ends predicting class 0 for everything: a collapse caused by training.
COLLAPSING = [
    "model.path=guard_fns:CentroidNet",
    "data.train=$imbalanced",
    "model.freeze=patterns",
    "model.freeze_patterns=[classifier.weight]",
    "optim.lr=1.0",
]
WARNED = "rsft train: warning: training diverged at epoch 1: "
STOPPED = "rsft train: training stopped: diverged at epoch 1: "
STOPPED_2 = "rsft train: training stopped: diverged at epoch 2: "  # a collapse that lasted
LOSS_ROSE = "the train loss is"
ONE_CLASS = "the model predicts class '0' for 100% of the 30 eval samples, of which only 33%"

CASES = [
    case(
        "lr-1e6",
        [*DIGITS_NET, "optim.lr=1e6"],
        0,
        [WARNED + LOSS_ROSE, "above 10 times its start", "Lower optim.lr", "on_divergence: stop"],
        {("train", "loss"), ("eval", "loss"), ("test", "loss")},
    ),
    case(
        "lr-1e6-stop",
        [*DIGITS_NET, "optim.lr=1e6", "on_divergence=stop"],
        1,
        [STOPPED + LOSS_ROSE, "Lower optim.lr", "Last checkpoint: none"],
    ),
    case(
        "lr-1e6-confidence-weights",  # an OverflowError traceback before
        [*DIGITS_NET, "optim.lr=1e6", "rejection.weights=confidence"],
        0,
        # Which loss rises first (train or eval) depends on the acceptance coins.
        [WARNED, LOSS_ROSE],
        {("train", "loss"), ("eval", "loss"), ("test", "loss")},
    ),
    # lr = 10 raises the losses to 3-4 times their start (about ln 3) in epoch 1: below the
    # default factor 10, above a factor 2.
    case("lr-10-within-the-default-factor", [*DIGITS_NET, "optim.lr=10"], 0, []),
    # Whether they fall back within 3 epochs depends on the seed: most runs end diverged (118
    # of seeds 0-149). Seed 99 is one whose train loss rises first, in epoch 1, and whose
    # losses fall back (as are 143 and 147; before rsft.seeding's streams, seed 0 of 0-29).
    case(
        "lr-10-above-factor-2",
        [*DIGITS_NET, "optim.lr=10", "divergence_factor=2", "seed=99"],
        0,
        [WARNED + LOSS_ROSE, "above 2 times its start"],
        {("train", "loss"), ("eval", "loss")},
        diverged=False,  # the losses fall back: transient events, the final model is fine
    ),
    case(
        "collapse",
        COLLAPSING,
        0,
        [WARNED + ONE_CLASS, "a training split dominated by that class"],
        {("eval", "collapse"), ("test", "collapse")},
    ),
    # A collapse stops the run when it lasts: the eval split is collapsed at epoch 2 as at 1.
    case("collapse-stop", [*COLLAPSING, "on_divergence=stop"], 1, [WARNED, STOPPED_2 + ONE_CLASS]),
    case("healthy-linear-head", ["model.path=guard_fns:CentroidNet"], 0, []),
    case("healthy-digits-net", [*DIGITS_NET, "model.freeze=none", "optim.lr=0.05"], 0, []),
    case(
        "healthy-model-aware",
        ["model.path=guard_fns:CentroidNet", "rejection.weights=confidence"],
        0,
        [],
    ),
]


pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture(scope="module")
def files(tmp_path_factory, three_class_table) -> dict[str, str]:
    root = tmp_path_factory.mktemp("reliability_divergence")
    balanced = np.arange(60) % 3
    return {
        "train": three_class_table(root / "train.parquet", balanced, 0),
        "imbalanced": three_class_table(root / "imbalanced.parquet", [0] * 56 + [1, 1, 2, 2], 0),
        "eval": three_class_table(root / "eval.parquet", np.arange(30) % 3, 1),
        "test": three_class_table(root / "test.parquet", np.arange(30) % 3, 2),
    }


def _args(files: dict[str, str], out: Path, extra) -> list[str]:
    base = [
        f"data.train={files['train']}",
        f"data.eval={files['eval']}",
        f"data.test={files['test']}",
        "data.feature_columns=[pixels]",
        "batch_size=16",
        "epochs=3",
        "progress=false",
        f"output_dir={out}",
    ]
    return ["train", *base, *(a.replace("$imbalanced", files["imbalanced"]) for a in extra)]


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_divergence(c: Case, files, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(_args(files, out, c.args))
    captured = capsys.readouterr()
    err = captured.err
    assert rc == c.rc, err
    assert "Traceback" not in err
    for fragment in c.stderr:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    if rc:  # stopped: nothing that looks like a finished run
        assert not (out / "results.json").exists() and not (out / "model").exists()
        return
    result = json.loads((out / "results.json").read_text())
    found = {(e["split"], e["kind"]) for e in result["divergence"]}
    assert found == c.events, result["divergence"]
    assert result["diverged"] is c.diverged
    if c.events and not c.diverged:  # recovered: the log says so after the warnings
        assert "did not last: the final model is not diverged" in captured.out
    assert all(e["transient"] is not c.diverged for e in result["divergence"])
    if not c.events:
        assert "warning" not in err, err


def test_each_kind_and_split_is_warned_once_and_every_epoch_recorded(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(files, out, COLLAPSING)) == 0
    err = capsys.readouterr().err
    assert err.count("eval samples") == 1  # one warning for the eval split ...
    events = json.loads((out / "results.json").read_text())["divergence"]
    eval_epochs = [e["epoch"] for e in events if e["split"] == "eval"]
    assert eval_epochs == [1, 2, 3]  # ... but every collapsed epoch recorded
    assert [e["epoch"] for e in events if e["split"] == "test"] == [None]  # at the end


def test_python_api_warns_with_a_category(files, tmp_path):
    """Without the CLI, the guard's warnings are DivergenceWarning (filterable, catchable)."""
    cfg = from_dict(
        TrainConfig,
        {
            "model": {"path": "rsft.tasks.digits:DigitsNet", "kwargs": {"width": 8}},
            "data": {"train": files["train"], "eval": files["eval"], "feature_columns": ["pixels"]},
            "optim": {"lr": 1e6},
            "epochs": 1,
            "batch_size": 16,
            "progress": False,
            "output_dir": str(tmp_path / "run"),
        },
    )
    with pytest.warns(DivergenceWarning) as warned:
        result = FineTuner(cfg).train()
    assert any("the train loss is" in str(w.message) for w in warned)
    assert result["diverged"] is True


def _evaluation(predicted: list[int], labels: list[int], loss: float = 1.0) -> dict:
    return {"predicted": predicted, "labels": labels, "loss": loss}


COLLAPSED = _evaluation([30, 0, 0], [10, 10, 10])
RECOVERED = _evaluation([10, 11, 9], [10, 10, 10])


def test_a_collapse_that_recovers_is_transient_and_does_not_stop(tmp_path, capsys):
    """A head that predicts one class after its first epoch, then recovers: warned, recorded
    as transient, not a diverged run; on_divergence: stop lets it train on. A collapse that
    lasts two epochs stops it."""
    guard = DivergenceGuard(10.0, "stop", ["a", "b", "c"], tmp_path, fix="")
    state = TrainState(step_losses=[1.0], history=[], initial_eval=RECOVERED)
    with pytest.warns(DivergenceWarning, match="if it lasts to the next epoch"):
        guard.check_epoch(0, state, 1.0, COLLAPSED)  # epoch 1: collapsed, not stopped
    state.history.append({})
    guard.check_epoch(1, state, 1.0, RECOVERED)
    state.history.append({})
    result = guard.result(state)
    assert result["diverged"] is False
    assert [(e["epoch"], e["kind"], e["transient"]) for e in result["divergence"]] == [
        (1, "collapse", True)
    ]
    assert "did not last" in capsys.readouterr().out
    state = TrainState(step_losses=[1.0], history=[{}], initial_eval=RECOVERED)
    with pytest.warns(DivergenceWarning):
        guard.check_epoch(0, state, 1.0, COLLAPSED)
    with pytest.raises(DivergenceError, match="diverged at epoch 2"):
        guard.check_epoch(1, state, 1.0, COLLAPSED)


# --------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize(
    "predicted, labels, flagged",
    [
        pytest.param([30, 0, 0], [10, 10, 10], True, id="one-class-of-three"),
        pytest.param([29, 1, 0], [10, 10, 10], True, id="nearly-every-sample"),
        pytest.param([28, 2, 0], [10, 10, 10], False, id="93%-is-not-nearly-every"),
        pytest.param([97, 3], [92, 8], False, id="imbalanced-labels-majority-predicted"),
        pytest.param([100, 0], [60, 40], True, id="breast-cancer-like-majority-only"),
        pytest.param([19, 0, 0], [7, 6, 6], False, id="split-too-small-to-judge"),
    ],
)
def test_collapse_threshold(predicted, labels, flagged):
    event = collapse_event("eval", predicted, labels, ["a", "b", "c"][: len(labels)])
    assert bool(event) is flagged


@pytest.mark.parametrize(
    "loss, start, classes, flagged",
    [
        pytest.param(2e6, 0.9, 10, True, id="2e6-as-with-lr-1e6"),
        pytest.param(math.inf, 0.9, 10, True, id="infinite"),
        pytest.param(math.nan, 0.9, 10, True, id="nan"),
        pytest.param(9.0, 0.9, 10, False, id="10x-a-small-start-is-below-10-ln-C"),
        pytest.param(24.0, 0.9, 10, True, id="above-10-ln-C"),
        pytest.param(40.0, 5.0, 10, False, id="8x-a-bad-start"),
    ],
)
def test_loss_threshold(loss, start, classes, flagged):
    assert bool(loss_event("train", loss, start, 10.0, classes)) is flagged


# --------------------------------------------------------------------------- data and compare


def test_features_on_very_different_scales_warn(tmp_path):
    """scikit-learn's breast_cancer, unscaled: standard deviations from 0.003 to 569."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    path = tmp_path / "bc.parquet"
    datasets.Dataset.from_dict({"x": x.astype("float32").tolist(), "label": y.tolist()}).to_parquet(
        str(path)
    )
    with pytest.warns(DataWarning, match=r"very different scales.*x\[23\].*standardize"):
        load_split(path, DataConfig(feature_columns=["x"]))
    standardized = (x - x.mean(0)) / x.std(0)
    path2 = tmp_path / "bc_std.parquet"
    columns = {"x": standardized.astype("float32").tolist(), "label": y.tolist()}
    datasets.Dataset.from_dict(columns).to_parquet(str(path2))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        load_split(path2, DataConfig(feature_columns=["x"]))  # the same data, standardized


def test_compare_marks_a_method_with_diverged_runs(files, tmp_path, capsys):
    import yaml

    base = {
        "model": {"path": "rsft.tasks.digits:DigitsNet", "kwargs": {"width": 8}},
        "data": {"train": files["train"], "test": files["test"], "feature_columns": ["pixels"]},
        "epochs": 1,
        "batch_size": 16,
    }
    config = {
        "base": base,
        "methods": {"plain": {}, "too-fast": {"optim": {"lr": 1e6}}},
        "seeds": [0],
        "output_dir": str(tmp_path / "cmp"),
    }
    (tmp_path / "cmp.yaml").write_text(yaml.safe_dump(config))
    assert main(["compare", "--config", str(tmp_path / "cmp.yaml")]) == 0
    table = capsys.readouterr().out
    assert "too-fast ⚠ diverged 1/1" in table
    assert "plain ⚠" not in table
    assert "⚠ diverged k/n: in k of the n seeds the loss rose" in table
    saved = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert {r["method"]: r["diverged"] for r in saved["records"]} == {
        "plain": False,
        "too-fast": True,
    }


def test_summary_counts_diverged_seeds():
    records = [
        {"method": "plain", "seed": s, "test_accuracy": 0.8, "diverged": False} for s in (0, 1)
    ] + [
        {"method": "m", "seed": 0, "test_accuracy": 0.1, "diverged": True},
        {"method": "m", "seed": 1, "test_accuracy": 0.8, "diverged": False},
    ]
    rows = {r["method"]: r for r in summarize(records)}
    assert rows["m"]["n_diverged"] == 1 and rows["plain"]["n_diverged"] == 0
    table = format_table(list(rows.values()))
    assert "m ⚠ diverged 1/2" in table and "plain ⚠" not in table


# --------------------------------------------------------------------------- digits


@pytest.mark.slow
def test_no_false_alarm_on_the_digits_task(tmp_path, monkeypatch):
    """Plain fine-tuning and three methods of configs/digits_compare.yaml, a few epochs each,
    on the prepared digits task: none is flagged."""
    from rsft.compare.runner import CompareConfig, run_compare
    from rsft.config import load_yaml
    from rsft.tasks.embedded import prepare_digits

    root = Path(__file__).resolve().parents[2]
    data = prepare_digits(tmp_path / "digits")
    text = (root / "configs" / "digits_compare.yaml").read_text()
    (tmp_path / "c.yaml").write_text(text.replace("data/digits", str(Path(data["pool"]).parent)))
    config = load_yaml(tmp_path / "c.yaml")
    kept = ("plain", "rsft-density", "rsft-confidence", "metropolis")
    config.update(seeds=[0], output_dir=str(tmp_path / "cmp"))
    config["methods"] = {k: config["methods"][k] for k in kept}
    config["base"]["epochs"] = 4
    out = run_compare(from_dict(CompareConfig, config))
    flagged = {r["method"]: r["divergence"] for r in out["records"] if r["diverged"]}
    assert flagged == {}
