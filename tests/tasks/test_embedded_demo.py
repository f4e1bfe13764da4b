"""The embedded demo end to end: prepare the digits task, compare two methods (slow)."""

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
    config["methods"] = {k: config["methods"][k] for k in ("plain", "rsft-density")}
    out = run_compare(from_dict(CompareConfig, config))
    rows = {r["method"]: r for r in out["summary"]}
    assert rows["plain"]["test_accuracy_mean"] > 0.7
    assert 0.05 < rows["rsft-density"]["acceptance_rate_mean"] < 0.5
    assert (tmp_path / "cmp" / "compare.png").is_file()
