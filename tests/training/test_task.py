"""The task section: a per-sample loss, a metric, a collate and a features function by import
path, and tensor data, through FineTuner. The default task is classification, unchanged."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from rsft.config import ConfigError, from_dict
from rsft.models.task import TaskError, TaskWarning
from rsft.training import FineTuner, TrainConfig
from rsft.training.divergence import DivergenceGuard

HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _fns_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))


def write_tensors(path, n=64, classes=3, seed=0, weights=None, labelled=True):
    """conftest.write_table's data (the same numbers) as a safetensors file."""
    centers = np.random.default_rng(1234).normal(0, 1, (classes, 64))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    pixels = (centers[labels] + rng.normal(0, 0.8, (n, 64))).astype("float32")
    tensors = {"pixels": torch.tensor(pixels)}
    if labelled:
        tensors["label"] = torch.tensor(labels)
    if weights is not None:
        tensors["w"] = torch.tensor(weights, dtype=torch.float64)
    save_file(tensors, str(path))
    return str(path)


@pytest.fixture
def tensor_config(tiny_config, tmp_path):
    """tiny_config with its three tables written as .safetensors files."""
    cfg = copy.deepcopy(tiny_config)
    cfg["data"] = {
        "train": write_tensors(tmp_path / "train.safetensors", weights=[0.0, 1.0] * 32),
        "eval": write_tensors(tmp_path / "eval.safetensors", n=30, seed=1),
        "test": write_tensors(tmp_path / "test.safetensors", n=30, seed=2),
    }
    cfg["output_dir"] = str(tmp_path / "tensor-run")
    return cfg


def _train(cfg: dict) -> dict:
    return FineTuner(from_dict(TrainConfig, cfg)).train()


@pytest.mark.parametrize(
    "task, match",
    [
        ({"loss": "task_fns:nope"}, r"task\.loss: module 'task_fns' has no 'nope'"),
        ({"loss": "no_such_module:f"}, r"task\.loss: cannot import module 'no_such_module'"),
        ({"metric": "task_fns:NOT_CALLABLE"}, r"task\.metric: 'task_fns:NOT_CALLABLE' is a int"),
        ({"collate": "crossentropy"}, r"task\.collate: .* is not an import path"),
        ({"features": "task_fns:missing"}, r"task\.features: module 'task_fns' has no"),
    ],
)
def test_task_functions_are_resolved_when_the_config_is_read(tiny_config, task, match):
    tiny_config["data"]["train"] = "does/not/exist.csv"  # the config fails before any data
    with pytest.raises(ConfigError, match=match):
        from_dict(TrainConfig, {**tiny_config, "task": task})


def test_confidence_weights_need_the_classification_loss(tiny_config):
    tiny_config.update(task={"loss": "task_fns:ce"}, rejection={"weights": "confidence"})
    with pytest.raises(ConfigError, match="confidence needs class logits.*loss_percentile"):
        from_dict(TrainConfig, tiny_config)


def test_a_tensors_file_trains_exactly_as_the_same_table(tiny_config, tensor_config):
    tiny_config["rejection"] = tensor_config["rejection"] = {"weights": "column", "column": "w"}
    table, tensors = _train(tiny_config), _train(tensor_config)
    assert tensors["step_losses"] == table["step_losses"]
    assert tensors["test_accuracy"] == table["test_accuracy"]
    assert tensors["acceptance_rate"] == 0.5


def test_a_custom_loss_equal_to_cross_entropy_trains_bit_identically(tensor_config):
    plain = _train(copy.deepcopy(tensor_config))
    tensor_config["task"] = {"loss": "task_fns:ce", "metric": "task_fns:accuracy"}
    tensor_config["output_dir"] += "-custom"
    custom = _train(tensor_config)
    assert custom["step_losses"] == plain["step_losses"]
    assert custom["test_accuracy"] == pytest.approx(plain["test_accuracy"])
    assert custom["test_loss"] == pytest.approx(plain["test_loss"], rel=1e-6)
    assert custom["test_correct"] == [float(c) for c in plain["test_correct"]]
    assert [h["eval_accuracy"] for h in custom["history"]] == pytest.approx(
        [h["eval_accuracy"] for h in plain["history"]]
    )


def test_a_loss_that_is_not_per_sample_is_refused(tensor_config):
    tensor_config["task"] = {"loss": "task_fns:mean_ce"}
    with pytest.raises(TaskError, match=r"returned \(\) for a batch of 30.*shape \(30,\)"):
        _train(tensor_config)


def test_a_split_level_metric_scores_its_own_items(tensor_config):
    tensor_config["task"] = {"metric": "task_fns:both_right", "metric_on": "split"}
    result = _train(tensor_config)
    assert result["test_size"] == 15  # 30 test samples, 15 pairs
    assert set(result["test_correct"]) <= {0.0, 1.0}
    assert result["test_accuracy"] == pytest.approx(np.mean(result["test_correct"]))
    assert "eval_accuracy" in result["history"][0]


def test_a_metric_outside_0_1_is_warned_about(tensor_config):
    tensor_config["task"] = {"metric": "task_fns:percent"}
    with pytest.warns(TaskWarning, match="outside \\[0, 1\\].*clips its intervals"):
        _train(tensor_config)


def test_a_collate_function_makes_the_batches(tensor_config):
    import task_fns

    tensor_config["task"] = {"collate": "task_fns:stack_without_index"}
    tensor_config["rejection"] = {"weights": "column", "column": "w", "mode": "weight"}
    before = task_fns.CALLS["collate"]
    result = _train(tensor_config)
    assert task_fns.CALLS["collate"] > before
    assert result["test_accuracy"] > 0.5
    tensor_config["task"] = {"collate": "task_fns:not_a_dict"}
    tensor_config["output_dir"] += "-bad"
    with pytest.raises(TaskError, match="returned a list; it must return a dict"):
        _train(tensor_config)


@pytest.mark.parametrize("features", [None, "task_fns:first_pixels"])
def test_density_ratio_weights_on_tensor_data(tensor_config, tmp_path, features):
    import task_fns

    target = write_tensors(tmp_path / "target.safetensors", n=40, seed=5, labelled=False)
    tensor_config["rejection"] = {"weights": "density_ratio", "target_unlabelled": target}
    tensor_config["task"] = {"features": features}
    before = task_fns.CALLS["features"]
    tuner = FineTuner(from_dict(TrainConfig, tensor_config))
    assert tuner.weight_info["n_target"] == 40 and 0 <= tuner.weight_info["domain_auc"] <= 1
    assert tuner.weights.shape == (64,)
    assert (task_fns.CALLS["features"] > before) == (features is not None)


def test_loss_percentile_ranks_the_task_loss(tensor_config):
    """Twice the cross-entropy at half the learning rate: the same steps (scaling by 2 is
    exact in floating point), the same loss percentiles, so the same samples are accepted."""
    tensor_config["rejection"] = {"weights": "loss_percentile"}
    plain = _train(copy.deepcopy(tensor_config))
    tensor_config["task"] = {"loss": "task_fns:twice_ce"}
    tensor_config["optim"]["lr"] /= 2
    tensor_config["output_dir"] += "-twice"
    twice = _train(tensor_config)
    assert twice["trace"] == plain["trace"]
    assert twice["step_losses"] == [2 * x for x in plain["step_losses"]]


def test_outputs_may_be_a_dict(tensor_config):
    tensor_config["model"] = {"path": "task_fns:DictNet", "freeze": "none"}
    tensor_config["task"] = {"loss": "task_fns:dict_ce", "metric": "task_fns:dict_accuracy"}
    tensor_config["rejection"] = {
        "weights": "model_function",
        "function": "task_fns:dict_outputs_weight",
    }
    result = _train(tensor_config)
    assert result["test_accuracy"] > 0.5 and result["backpropagated"] > 0


def test_the_collapse_check_is_skipped_without_classes(tmp_path):
    guard = DivergenceGuard(10.0, "warn", ["0", "1"], tmp_path, fix="")
    custom = {"accuracy": 0.5, "loss": 0.7, "correct": [0.5] * 40}
    assert guard._split("test", custom, {"accuracy": 0.1, "loss": 0.7, "correct": []}) == []
