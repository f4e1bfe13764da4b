"""report_to as an option: the names it takes, the backends it needs, what it leaves alone."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rsft.cli.main import main
from rsft.config import ConfigError, from_dict
from rsft.generation.config import RFTConfig
from rsft.same_run import run_identity
from rsft.tracking import TrackerMissingError, Trackers, require_backends
from rsft.training import FineTuner, TrainConfig

RFT = {"model": {"path": "m"}, "data": {"train": "t.jsonl", "eval": "e.jsonl"}}
TRAIN = {"model": {"path": "rsft.tasks.mlp:MLP"}, "data": {"train": "t.csv"}}


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ([], []),
        ("none", []),
        (["none"], []),
        ("tensorboard", ["tensorboard"]),
        (["wandb", "trackio", "wandb", "mlflow"], ["wandb", "trackio", "mlflow"]),
    ],
)
@pytest.mark.parametrize("root", [TrainConfig, RFTConfig], ids=["train", "rft"])
def test_report_to_takes_one_name_or_a_list(root, value, names):
    base = TRAIN if root is TrainConfig else RFT
    assert from_dict(root, {**base, "report_to": value}).report_to == names


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["nonsense"], r"report_to: 'nonsense' is not a tracker; choose from none, tensorboard"),
        ("tensorbord", r"'tensorbord' is not a tracker.*Did you mean 'tensorboard'\?"),
        (["none", "wandb"], r"report_to: 'none' cannot be listed with trackers \(wandb\)"),
    ],
)
def test_a_bad_report_to_is_refused_naming_the_option(value, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig, {**TRAIN, "report_to": value})
    with pytest.raises(ConfigError, match=message):
        RFTConfig(report_to=value)  # from Python too


def test_report_to_is_not_part_of_a_runs_identity():
    for root, base in ((TrainConfig, TRAIN), (RFTConfig, RFT)):
        logged = from_dict(root, {**base, "report_to": ["tensorboard", "wandb"]})
        assert run_identity(logged) == run_identity(from_dict(root, base))


def test_a_tracker_that_is_not_installed_is_refused_before_any_work(tiny_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # an import of wandb now fails
    with pytest.raises(TrackerMissingError, match=r"report_to: wandb needs the wandb package"):
        require_backends(["wandb"])
    tiny_run["report_to"] = ["wandb"]
    with pytest.raises(TrackerMissingError, match=r"pip install wandb \(or pip install 'rsft"):
        FineTuner(from_dict(TrainConfig, tiny_run))
    assert not Path(tiny_run["output_dir"]).exists()  # refused before anything was written


def test_the_cli_says_which_package_to_install_and_exits_2(tiny_run, tmp_path, monkeypatch, capsys):
    import yaml

    monkeypatch.setitem(sys.modules, "mlflow", None)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**tiny_run, "report_to": "mlflow"}))
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "rsft train: error: report_to: mlflow needs the mlflow package" in err
    assert "pip install mlflow" in err


class Recorder:
    def __init__(self, name: str, fail_close: bool = False) -> None:
        self.name, self.fail_close = name, fail_close
        self.logged: list[tuple[dict, int]] = []
        self.closed: bool | None = None

    def log(self, metrics, step):
        self.logged.append((dict(metrics), step))

    def close(self, failed=False):
        self.closed = failed
        if self.fail_close:
            raise OSError("disk gone")


def test_trackers_log_numbers_to_each_and_close_all_even_when_one_fails():
    a, b = Recorder("a", fail_close=True), Recorder("b")
    with pytest.raises(OSError, match="disk gone"):
        with Trackers([a, b]) as trackers:
            trackers.log(
                {"loss": 1, "flag": True, "name": "x", "none": None, "nan": float("nan")}, 3
            )
    assert a.logged == b.logged and a.logged[0][1] == 3
    assert set(a.logged[0][0]) == {"loss", "nan"} and a.logged[0][0]["loss"] == 1.0
    assert a.closed is False and b.closed is False  # both closed, not as failed runs


def test_a_run_that_raises_closes_its_trackers_as_failed():
    a = Recorder("a")
    with pytest.raises(KeyError):
        with Trackers([a]):
            raise KeyError("x")
    assert a.closed is True


def test_help_says_where_the_files_go(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "report_to  (list | str; default []" in out
    assert "output_dir/trackers/<backend>" in " ".join(out.split())
