import copy
import json

import pytest
import torch

from rsft.config import from_dict
from rsft.training import Callback, FineTuner, TrainConfig
from rsft.training.checkpoint import latest_checkpoint


def _tuner(d):
    return FineTuner(from_dict(TrainConfig, d))


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_plain_fine_tuning_trains_only_unfrozen_parameters(tiny_config):
    tiny_config["model"].update(freeze="last_n", train_last_n=1)
    tiny_config["epochs"] = 3
    tuner = _tuner(tiny_config)
    before = _params(tuner.clf.model)
    result = tuner.train()
    after = _params(tuner.clf.model)
    for name in before:
        changed = not torch.equal(before[name], after[name])
        assert changed == name.startswith(("classifier", "blocks.2")), name
    assert result["parameters"]["trainable"] < result["parameters"]["total"]
    assert result["test_accuracy"] > 0.8  # separable data: fine-tuning learns it
    assert result["backpropagated"] == 3 * 64
    assert len(result["history"]) == 3 and "eval_accuracy" in result["history"][0]


def test_rejected_samples_are_never_trained_on(tiny_config, monkeypatch):
    """Weights 0/1 with M = 1: exactly the weight-1 rows are seen, every epoch."""
    tiny_config["rejection"] = {"weights": "column", "column": "w"}
    tuner = _tuner(tiny_config)
    seen = []

    class Recording(Callback):
        def on_step_begin(self, trainer, micro, state):
            seen.extend(i for batch, _ in micro for i in batch["index"].tolist())

    tuner.add_callback(Recording())
    result = tuner.train()
    flat = seen
    assert all(i % 2 == 1 for i in flat)  # odd rows have weight 1
    assert sorted(flat) == sorted(list(range(1, 64, 2)) * 2)
    assert result["acceptance_rate"] == pytest.approx(0.5)
    assert result["backpropagated"] == 64
    assert result["ess_fraction"] == pytest.approx(0.5)


def test_all_ones_weights_equal_plain_fine_tuning(tiny_config, tmp_path, make_table):
    """Equivalent settings give equal curves: rejection with w = 1 is plain fine-tuning."""
    plain = _tuner(tiny_config).train()
    ones = copy.deepcopy(tiny_config)
    ones["data"]["train"] = str(tmp_path / "ones.parquet")
    make_table(ones["data"]["train"], weights=[1.0] * 64)
    ones["output_dir"] = str(tmp_path / "ones")
    ones["rejection"] = {"weights": "column", "column": "w"}
    rsft = _tuner(ones).train()
    assert rsft["step_losses"] == pytest.approx(plain["step_losses"], abs=1e-6)


def test_weight_mode_scales_the_loss_and_keeps_every_sample(tiny_config):
    tiny_config["rejection"] = {"weights": "column", "column": "w", "mode": "weight"}
    tuner = _tuner(tiny_config)
    assert torch.allclose(tuner.loss_weights[1::2], torch.full((32,), 2.0))
    assert (tuner.loss_weights[0::2] == 0).all()
    result = tuner.train()
    assert result["backpropagated"] == 2 * 64  # every sample is forwarded and backpropagated
    assert result["acceptance_rate"] == 1.0


def test_same_seed_same_run_and_results_written(tiny_config, tmp_path):
    a = _tuner(tiny_config).train()
    again = dict(tiny_config, output_dir=str(tmp_path / "again"))
    b = _tuner(again).train()
    assert a["step_losses"] == b["step_losses"]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["test_accuracy"] == a["test_accuracy"]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert latest_checkpoint(tmp_path / "run") is not None


def test_resume_refuses_a_different_config(tiny_config):
    _tuner(tiny_config).train()
    tiny_config["optim"]["lr"] = 0.01
    with pytest.raises(ValueError, match="different config"):
        _tuner(tiny_config).train()
    tiny_config["resume"] = "never"
    assert _tuner(tiny_config).train()["resumed_from_step"] is None


def test_samples_budget_matches_plain_compute(tiny_config):
    """budget: samples runs 1/a times the epochs, so it backpropagates what plain does."""
    tiny_config["rejection"] = {"weights": "column", "column": "w"}  # a = 0.5
    tiny_config["budget"] = "samples"
    result = _tuner(tiny_config).train()
    assert result["epochs_run"] == 4
    assert result["backpropagated"] == 2 * 64
    assert len(result["history"]) == 4


def test_results_record_the_pretrained_score(tiny_config):
    tuner = FineTuner(from_dict(TrainConfig, tiny_config))
    before = tuner.evaluate(tuner.test_split)["accuracy"]
    result = tuner.train()
    assert result["initial_test_accuracy"] == before
