"""The embedded demo end to end: prepare the digits task, compare three methods (slow)."""

import pytest

from rsft.compare.runner import CompareConfig, run_compare
from rsft.config import from_dict, load_yaml
from rsft.tasks.embedded import prepare_digits


def _relocate(node, old: str, new: str):
    if isinstance(node, dict):
        return {k: _relocate(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_relocate(v, old, new) for v in node]
    return node.replace(old, new) if isinstance(node, str) else node


@pytest.mark.slow
def test_prepare_and_compare_on_digits(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    paths = prepare_digits(tmp_path / "digits")
    assert prepare_digits(tmp_path / "digits") == paths  # cached: no second pretraining
    config = _relocate(
        load_yaml("configs/digits_compare.yaml"), "data/digits", str(tmp_path / "digits")
    )
    config.update(seeds=[0], output_dir=str(tmp_path / "cmp"))
    kept = ("plain", "rsft-density", "metropolis")
    config["methods"] = {k: config["methods"][k] for k in kept}
    out = run_compare(from_dict(CompareConfig, config))
    rows = {r["method"]: r for r in out["summary"]}
    assert rows["plain"]["test_accuracy_mean"] > 0.7
    assert 0.05 < rows["rsft-density"]["acceptance_rate_mean"] < 0.5
    # Metropolis learns from forward passes only: above the pretrained model, at plain's
    # number of forwarded samples, with no backward pass.
    mh = rows["metropolis"]
    before = out["records"][0]["initial_test_accuracy"]
    assert mh["test_accuracy_mean"] > before + 0.05
    assert 0 < mh["step_acceptance_mean"] < 1 and mh["backpropagated_mean"] == 0
    assert mh["forwarded_mean"] == rows["plain"]["forwarded_mean"]
    assert (tmp_path / "cmp" / "compare.png").is_file()
