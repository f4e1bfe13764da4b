"""Parameter-level methods (Metropolis, MALA, zeroth-order SGD) inside a fine-tuning run."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from rsft.config import ConfigError, from_dict
from rsft.training import FineTuner, TrainConfig

HERE = Path(__file__).parent


def _tuner(config: dict, **over) -> FineTuner:
    merged = {**config, **over}
    return FineTuner(from_dict(TrainConfig, merged))


def _metropolis(config: dict, **param_level) -> dict:
    config["optim"] = {"name": "metropolis"}
    config["param_level"] = {"sigma": 0.01, "temperature": 1e-3, **param_level}
    return config


def test_metropolis_moves_only_the_chosen_parameters(tiny_config):
    tuner = _tuner(_metropolis(tiny_config, patterns=["classifier.*"]))
    model = tuner.clf.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = tuner.train()
    head = sum(p.numel() for n, p in model.named_parameters() if n.startswith("classifier."))
    assert result["parameters"]["trainable"] == head
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.startswith("classifier.") for n in moved)
    # 64 rows, 2 epochs, 2 forward passes per sample and step, no backward.
    assert result["forwarded"] == 2 * 2 * 64 and result["backpropagated"] == 0
    assert 0 < result["step_acceptance"] < 1
    assert result["proposals"] == result["global_step"] == 16
    assert all("step_acceptance" in h and "sigma" in h for h in result["history"])


def test_forward_budget_gives_every_method_the_same_forward_passes(tiny_config):
    sgd = _tuner(tiny_config, budget="forwards", output_dir=tiny_config["output_dir"] + "-sgd")
    a = sgd.train()
    mh = _tuner(_metropolis(tiny_config), budget="forwards")
    b = mh.train()
    assert a["forwarded"] == b["forwarded"] == 2 * 64
    assert a["global_step"] == 2 * b["global_step"]  # two forwards per Metropolis step
    assert [h["forwarded"] for h in b["history"]] == [128]


HEAD_AND_LAST_LAYER = ["classifier.*", "blocks.2.*"]


@pytest.mark.parametrize(
    ("name", "param_level", "epochs", "drop"),
    [
        # Gradient-free steps are slow in many dimensions: the head and the last hidden layer.
        ("metropolis", {"patterns": HEAD_AND_LAST_LAYER, "sigma": 0.05}, 20, 0.85),
        ("zo_sgd", {"patterns": HEAD_AND_LAST_LAYER, "sigma": 1e-3}, 20, 0.95),
        ("mala", {"sigma": 0.02, "temperature": 1e-3, "target_acceptance": 0.574}, 6, 0.85),
    ],
)
def test_gradient_free_methods_lower_the_training_loss(
    tiny_config, name, param_level, epochs, drop
):
    tiny_config["optim"] = {"name": name, "lr": 0.02}
    greedy = {} if name == "zo_sgd" else {"temperature": 1e-4}  # T ~ 1/N: greedy
    tiny_config["param_level"] = {**greedy, **param_level}
    # Seed 1: the drop is a property of most seeds, not all (of seeds 0-19, zo_sgd reaches it
    # on 17 and mala on 18; seed 0 misses it for both, 0.962 and 0.862 of the start).
    tiny_config.update(epochs=epochs, batch_size=16, seed=1)
    result = _tuner(tiny_config).train()
    losses = result["step_losses"]
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < drop * first, (name, first, last)
    assert result["memory_vs_inference"] >= 1.0


def test_same_seed_same_run_and_another_seed_another(tiny_config, tmp_path):
    runs = [
        _tuner(_metropolis(dict(tiny_config)), seed=s, output_dir=str(tmp_path / f"r{i}")).train()
        for i, s in enumerate([3, 3, 4])
    ]
    assert runs[0]["step_losses"] == runs[1]["step_losses"]
    assert runs[0]["sigma"] == runs[1]["sigma"]
    assert runs[0]["step_losses"] != runs[2]["step_losses"]


def test_peak_memory_is_measured_against_inference(tiny_config, tmp_path):
    mh = _tuner(_metropolis(dict(tiny_config)), output_dir=str(tmp_path / "mh")).train()
    adam = dict(tiny_config, optim={"name": "adam", "lr": 1e-3})
    ad = _tuner(adam, output_dir=str(tmp_path / "adam")).train()
    for r in (mh, ad):
        assert r["peak_memory"] >= r["parameter_bytes"] and r["inference_memory"] > 0
    # Adam holds the weights, their gradients and two moments at once; Metropolis keeps a
    # byte per tuned parameter and the activations of a no-grad forward.
    assert ad["peak_memory"] >= 4 * ad["parameter_bytes"]
    assert mh["peak_memory"] < ad["peak_memory"]
    assert mh["memory_vs_inference"] < ad["memory_vs_inference"]


@pytest.mark.parametrize(
    ("param_level", "optim", "match"),
    [
        ({"sigma": 0.0}, "metropolis", "sigma must be > 0"),
        ({"sigma": -1.0}, "zo_sgd", "sigma must be > 0"),
        ({"temperature": 0.0}, "metropolis", "T > 0"),
        ({"temperature": 1.0, "temperature_end": -1.0}, "metropolis", "T > 0"),
        ({"temperature_schedule": "linear"}, "metropolis", "needs param_level.temperature_end"),
        ({"target_acceptance": 1.5}, "metropolis", r"in \(0, 1\)"),
    ],
)
def test_bad_settings_fail_in_the_config(tiny_config, param_level, optim, match):
    tiny_config["optim"] = {"name": optim}
    tiny_config["param_level"] = param_level
    with pytest.raises(ConfigError, match=match):
        from_dict(TrainConfig, tiny_config)


def test_a_pattern_that_selects_nothing_is_refused_before_training(tiny_config):
    with pytest.raises(ValueError, match=r"select no parameter.*classifier\.weight"):
        _tuner(_metropolis(tiny_config, patterns=["decoder.*"]))
    assert not Path(tiny_config["output_dir"]).exists()


def test_a_learning_rate_schedule_does_not_apply(tiny_config):
    tiny_config["optim"] = {"name": "metropolis", "scheduler": "cosine"}
    with pytest.raises(ConfigError, match="temperature_schedule"):
        from_dict(TrainConfig, tiny_config)


def test_killed_metropolis_run_resumes_the_same_chain(tiny_config, tmp_path, train_process, killer):
    _launch, _checkpoint_step, _finish_both = train_process
    _metropolis(tiny_config, adapt_every=3)
    tiny_config["model"]["path"] = "rsft_test_models:SlowEvalNet"
    tiny_config.update(checkpoint_every=3, epochs=2, batch_size=4)
    killed = dict(tiny_config, output_dir=str(tmp_path / "killed"))
    proc = _launch(killed, tmp_path / "killed.yaml")
    killer(proc, lambda: _checkpoint_step(tmp_path / "killed") >= 3)
    at = _checkpoint_step(tmp_path / "killed")
    assert 3 <= at < 16
    a, b = _finish_both(tiny_config, tmp_path / "killed", tmp_path, at)
    # The chain itself continued: the same σ and acceptances as the uninterrupted run.
    assert a["sigma"] == b["sigma"] and a["step_acceptance"] == b["step_acceptance"]
    assert [h["step_acceptance"] for h in a["history"]] == [
        h["step_acceptance"] for h in b["history"]
    ]
    saved = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert saved["proposals"] == 32


@pytest.mark.skipif(
    shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None,
    reason="the accelerate launcher is not installed",
)
def test_two_processes_make_the_same_decisions(tiny_config, tmp_path, two_processes):
    _metropolis(tiny_config)
    ddp = dict(tiny_config, batch_size=4, output_dir=str(tmp_path / "ddp"))
    ranks = two_processes(HERE / "ddp_train.py", ddp, tmp_path, port=29527)
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["param_sum"] == ranks[1]["param_sum"]
    assert ranks[0]["step_acceptance"] == ranks[1]["step_acceptance"]
    assert 0 < ranks[0]["step_acceptance"] < 1


def test_a_run_stops_on_convergence(tiny_config):
    # An improvement of 50% is never reached: the run stops `patience` steps after the first.
    tuner = _tuner(_metropolis(tiny_config, tol=0.5, patience=3))
    result = tuner.train()
    assert result["global_step"] == 1 + 3 < 16
    assert len(result["history"]) == 1


@pytest.mark.parametrize("name", ["metropolis", "zo_sgd"])
def test_max_iter_stops_the_run(tiny_config, name):
    tiny_config["optim"] = {"name": name}
    tiny_config["param_level"] = {"max_iter": 5}
    result = _tuner(tiny_config).train()
    assert result["global_step"] == 5 and result["forwarded"] == 5 * 2 * 8


def test_max_iter_must_be_positive(tiny_config):
    tiny_config["optim"] = {"name": "metropolis"}
    tiny_config["param_level"] = {"max_iter": 0}
    with pytest.raises(ConfigError, match="max_iter must be >= 1"):
        from_dict(TrainConfig, tiny_config)


@pytest.mark.parametrize(
    ("name", "param_level"),
    [("zo_sgd", {"max_iter": 5}), ("metropolis", {"tol": 0.5, "patience": 3})],
)
def test_a_run_that_stopped_early_is_not_extended_when_run_again(tiny_config, name, param_level):
    # The rerun resumes from the last checkpoint, which already holds the stopped run.
    tiny_config["optim"] = {"name": name}
    tiny_config["param_level"] = param_level
    first = _tuner(tiny_config).train()
    again = _tuner(tiny_config).train()
    assert again["global_step"] == first["global_step"] < 16
    assert again["step_losses"] == first["step_losses"]
    assert again["epochs_run"] == len(again["history"]) == 1


def test_zo_sgd_stops_on_convergence(tiny_config):
    tiny_config["optim"] = {"name": "zo_sgd"}
    tiny_config["param_level"] = {"tol": 0.5, "patience": 3}
    assert _tuner(tiny_config).train()["global_step"] == 1 + 3


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"optim": {"name": "zo_sgd"}, "param_level": {"temperature": 0.1}}, "temperature"),
        ({"optim": {"name": "zo_sgd"}, "param_level": {"restore": "subtract"}}, "restore"),
        ({"optim": {"name": "sgd"}, "param_level": {"sigma": 0.1}}, "param_level.sigma"),
        ({"optim": {"name": "metropolis", "weight_decay": 0.1}}, "optim.weight_decay"),
        ({"optim": {"name": "zo_sgd", "max_grad_norm": 1.0}}, "optim.max_grad_norm"),
        (
            {"optim": {"name": "metropolis"}, "param_level": {"temperature_end": 0.1}},
            "needs a param_level.temperature_schedule",
        ),
    ],
)
def test_options_the_method_would_ignore_are_refused(tiny_config, over, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(TrainConfig, {**tiny_config, **over})


def test_mala_refuses_several_processes_before_any_work(tiny_config, monkeypatch):
    import rsft.training.trainer as trainer

    def no_weights(*args, **kwargs):
        raise AssertionError("the weights were computed before the check")

    monkeypatch.setattr(trainer, "compute_weights", no_weights)
    monkeypatch.setattr("accelerate.Accelerator.num_processes", property(lambda self: 2))
    tiny_config["optim"] = {"name": "mala"}
    with pytest.raises(ConfigError, match="mala runs in one process"):
        _tuner(tiny_config)
