"""DDP on 2 CPU processes (accelerate, gloo): one draw shared by the ranks, then sharded."""

import shutil
import sys
from pathlib import Path

import pytest

from rsft.config import from_dict
from rsft.training import FineTuner, TrainConfig

HERE = Path(__file__).parent


@pytest.mark.skipif(
    shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None,
    reason="the accelerate launcher is not installed",
)
def test_two_processes_match_one(tiny_config, tmp_path, two_processes):
    tiny_config["model"]["kwargs"] = {"width": 8, "dropout": 0.0}
    tiny_config["rejection"] = {"weights": "column", "column": "w"}  # rows 1, 3, 5, ... accepted
    ddp = dict(tiny_config, batch_size=4, output_dir=str(tmp_path / "ddp"))
    ranks = two_processes(HERE / "ddp_train.py", ddp, tmp_path, port=29517)
    assert [r["world"] for r in ranks] == [2, 2]

    # One process with the same global batch (2 x 4) is the reference.
    single = FineTuner(from_dict(TrainConfig, dict(tiny_config, output_dir=str(tmp_path / "one"))))
    for epoch in range(2):
        accepted = single.sampler.accepted_indices(epoch).tolist()
        a, b = (r["shards"][str(epoch)] for r in ranks)
        assert not set(a) & set(b)  # no sample on two ranks
        assert sorted(a + b) == sorted(accepted)  # together: exactly the one accepted set
        assert all(i % 2 == 1 for i in a + b)
    result = single.train()
    # Rank r trains on every other index of each global batch: the same samples per step.
    assert ranks[0]["step_losses"] == pytest.approx(result["step_losses"], abs=1e-5)
    assert ranks[0]["backpropagated"] == result["backpropagated"] == 64
    assert ranks[0]["test_accuracy"] == ranks[1]["test_accuracy"] == result["test_accuracy"]
