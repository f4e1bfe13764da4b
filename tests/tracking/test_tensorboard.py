"""rsft train with report_to: tensorboard: the event files hold what the run logged."""

from __future__ import annotations

import pytest

from rsft.config import from_dict
from rsft.training import Callback, FineTuner, TrainConfig

pytest.importorskip("tensorboard")


def read_events(folder) -> tuple[dict[str, list[tuple[int, float]]], str]:
    """Every scalar (tag -> [(step, value)]) and the config text of an event folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    scalars = {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    return scalars, text


def test_the_event_files_hold_the_runs_losses_epochs_and_config(tiny_run, tmp_path):
    tiny_run["report_to"] = "tensorboard"  # one name, as YAML may give it
    cfg = from_dict(TrainConfig, tiny_run)
    assert cfg.report_to == ["tensorboard"]
    result = FineTuner(cfg).train()
    scalars, config = read_events(tmp_path / "run" / "trackers" / "tensorboard")

    steps = list(range(1, result.global_step + 1))
    assert [s for s, _ in scalars["train/loss"]] == steps
    assert [v for _, v in scalars["train/loss"]] == pytest.approx(result.step_losses, rel=1e-6)
    ends = [h["step"] for h in result.history]
    for key in ("train_loss", "eval_accuracy", "acceptance_rate", "accepted"):
        logged = scalars[f"epoch/{key}"]
        assert logged == [
            (s, pytest.approx(h[key], rel=1e-6)) for s, h in zip(ends, result.history)
        ]
    # Rejection keeps the weight-1 half of the rows: acceptance, ESS, no violation.
    assert [v for _, v in scalars["epoch/rejection/ess_fraction"]] == [0.5, 0.5]
    assert [v for _, v in scalars["epoch/rejection/violations"]] == [0.0, 0.0]
    assert scalars["initial/test_accuracy"] == [(0, pytest.approx(result.initial_test_accuracy))]
    assert scalars["final/test_accuracy"] == [
        (result.global_step, pytest.approx(result.test_accuracy))
    ]
    assert "rsft.tasks.mlp:MLP" in config and "report_to:" in config


def test_model_aware_rejection_logs_its_acceptance_at_every_step(tiny_run, tmp_path):
    tiny_run["rejection"] = {"weights": "loss_percentile"}
    tiny_run.update(epochs=1, report_to=["tensorboard"])
    result = FineTuner(from_dict(TrainConfig, tiny_run)).train()
    scalars, _ = read_events(tmp_path / "run" / "trackers" / "tensorboard")
    rates = scalars["rejection/acceptance_rate"]
    assert [s for s, _ in rates] == list(range(1, result.global_step + 1))
    assert rates[-1][1] == pytest.approx(result.acceptance_rate)
    assert 0 < rates[-1][1] < 1


def test_metropolis_logs_the_share_of_proposals_kept_at_every_step(tiny_run, tmp_path):
    tiny_run.update(epochs=1, report_to=["tensorboard"], optim={"name": "metropolis"})
    result = FineTuner(from_dict(TrainConfig, tiny_run)).train()
    scalars, _ = read_events(tmp_path / "run" / "trackers" / "tensorboard")
    kept = scalars["param_level/step_acceptance"]
    assert [s for s, _ in kept] == list(range(1, result.global_step + 1))
    assert kept[-1][1] == pytest.approx(result.step_acceptance)
    assert scalars["param_level/sigma"][-1][1] == pytest.approx(result.sigma, rel=1e-6)


def test_a_failing_run_closes_its_trackers_with_what_it_logged(tiny_run, tmp_path):
    class Fails(Callback):
        def on_step_end(self, trainer, state, step):
            if state.global_step == 2:
                raise RuntimeError("stop here")

    tiny_run["report_to"] = ["tensorboard"]
    tuner = FineTuner(from_dict(TrainConfig, tiny_run), callbacks=[Fails()])
    with pytest.raises(RuntimeError, match="stop here"):
        tuner.train()
    assert not [cb for cb in tuner.callbacks.callbacks if type(cb).__name__ == "TrackingCallback"]
    scalars, _ = read_events(tmp_path / "run" / "trackers" / "tensorboard")
    assert [s for s, _ in scalars["train/loss"]] == [1]  # the failing step's own hook raised first
    assert scalars["train/loss"][0][1] == pytest.approx(tuner.state.step_losses[0], rel=1e-6)


def test_without_report_to_nothing_is_written(tiny_run, tmp_path):
    tiny_run["epochs"] = 1
    FineTuner(from_dict(TrainConfig, tiny_run)).train()
    assert not (tmp_path / "run" / "trackers").exists()
