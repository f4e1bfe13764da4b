"""Generated samples end to end: a rejection-sampled table -> FineTuner -> target accuracy."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "generated_classifier" / "run.py"


def _example():
    spec = importlib.util.spec_from_file_location("generated_classifier_run", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_classifier_fine_tuned_on_rejection_samples_learns_the_targets(tmp_path, capsys):
    args = ["--n-per-class", "150", "--few", "3", "--test-per-class", "300", "--epochs", "6"]
    report = _example().main([*args, "--out", str(tmp_path)])
    chance = 1 / 3
    bayes = report["bayes"]["test_accuracy"]
    exact = report["rejection"]
    assert exact["train_samples"] == 450 and exact["violations"] == 0
    assert exact["test_accuracy"] > chance + 0.3  # clearly learned, not chance
    assert exact["test_accuracy"] > bayes - 0.08  # close to the best possible
    # the acceptance rate is 1/M with normalised densities (M per class, averaged roughly)
    rates = [e["expected_rate"] for e in report["envelopes"].values()]
    assert min(rates) * 0.8 < exact["acceptance_rate"] < max(rates) * 1.2
    assert report["rejection, M/50"]["violations"] > 0
    assert "| rejection |" in capsys.readouterr().out
    assert (tmp_path / "runs" / "rejection" / "model").is_dir()


def test_mixture_envelope_bounds_the_ratio():
    """The analytic M of the example is an upper bound of p/q (checked on many draws)."""
    import torch
    from torch.distributions import Independent, Normal

    from rsft.rule.explicit import log_ratio

    ex = _example()
    targets = ex.class_targets(3, 2, 0.6, 1.2, seed=0)
    proposal = Independent(Normal(torch.zeros(2), 4.0), 1)
    torch.manual_seed(0)
    for t in targets.values():
        x = torch.cat([t.sample((20_000,)), proposal.sample((20_000,))])
        peak = float(log_ratio(t, proposal, x).max())
        assert peak <= ex.mixture_log_envelope(t, 4.0) + 1e-5
    with pytest.raises(ValueError, match="must exceed the component scale"):
        ex.mixture_log_envelope(targets[0], 0.5)


def test_mlp_says_which_feature_count_it_was_built_for():
    import torch

    from rsft.tasks.mlp import MLP

    model = MLP(in_features=3, num_labels=4)
    assert model(torch.zeros(5, 3)).shape == (5, 4)
    with pytest.raises(ValueError, match="built for 3 features per sample, got 2"):
        model(torch.zeros(5, 2))
    with pytest.raises(ValueError, match="in_features"):
        MLP(in_features=0)
