"""A run killed mid-epoch resumes from its last checkpoint and matches an uninterrupted run."""

from pathlib import Path

HERE = Path(__file__).parent


def test_killed_run_resumes_with_the_same_losses(tiny_config, tmp_path, train_process, killer):
    _launch, _checkpoint_step, _finish_both = train_process
    # Rejection with random coins (w = 0.5 everywhere below M = 1) and dropout: resuming must
    # restore the sampler's epoch, its position in the epoch and the RNG state to match.
    tiny_config["model"]["path"] = "rsft_test_models:SlowNet"
    tiny_config["rejection"] = {
        "weights": "column",
        "column": "w",
        "envelope": {"policy": "fixed", "value": 2.0},
    }
    tiny_config.update(checkpoint_every=3, epochs=2, batch_size=4)

    killed = dict(tiny_config, output_dir=str(tmp_path / "killed"))
    proc = _launch(killed, tmp_path / "killed.yaml")
    killer(proc, lambda: _checkpoint_step(tmp_path / "killed") >= 3)
    at = _checkpoint_step(tmp_path / "killed")
    assert 3 <= at < 8, "the run should be killed in its first epoch (8 steps)"
    assert not (tmp_path / "killed" / "results.json").exists()

    a, b = _finish_both(tiny_config, tmp_path / "killed", tmp_path, at)
    # Killed mid-epoch: the first epoch's mean loss still covers all of its steps.
    n = a["history"][0]["step"]
    assert n > at and a["history"][0]["train_loss"] == sum(b["step_losses"][:n]) / n
