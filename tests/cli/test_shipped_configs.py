"""Every shipped config parses, and its header shows the command that runs it."""

from pathlib import Path

import pytest

from rsft.compare.rft_runner import build_rft_runs
from rsft.compare.runner import CompareConfig, build_runs
from rsft.config import from_dict, load_yaml
from rsft.generation.config import RFTConfig
from rsft.training import TrainConfig

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_and_shows_its_command(path):
    first = path.read_text().splitlines()[0]
    kind = next((k for k in ("compare", "rft") if k in path.name), "train")
    assert first.startswith(f"# rsft {kind} --config configs/{path.name}")
    data = load_yaml(path)
    if kind == "compare":
        cfg = from_dict(CompareConfig, data)
        runs = build_rft_runs(cfg) if cfg.generation else build_runs(cfg)
        assert len(runs) == len(data["methods"]) * len(data["seeds"])
        assert cfg.baseline in data["methods"]
    elif kind == "rft":
        assert from_dict(RFTConfig, data).model.path
    else:
        assert from_dict(TrainConfig, data).model.path


def test_there_are_configs():
    assert len(CONFIGS) >= 2
