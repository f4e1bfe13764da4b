"""rsft compare tracks every run through the base config's report_to, each in its folder."""

from __future__ import annotations

import json

import pytest

from rsft.compare.runner import CompareConfig, run_compare
from rsft.config import from_dict

pytest.importorskip("tensorboard")


def test_every_run_of_a_comparison_has_its_own_event_files(tiny_run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    base = {k: v for k, v in tiny_run.items() if k != "output_dir"}
    base.update(epochs=1, report_to=["tensorboard"])
    config = {
        "base": base,
        "methods": {"plain": {}, "fast": {"optim": {"lr": 0.2}}},
        "seeds": [0],
        "output_dir": str(tmp_path / "cmp"),
    }
    run_compare(from_dict(CompareConfig, config))
    losses = {}
    for method in ("plain", "fast"):
        run = tmp_path / "cmp" / method / "seed-0"
        events = EventAccumulator(str(run / "trackers" / "tensorboard"))
        events.Reload()
        losses[method] = [e.value for e in events.Scalars("train/loss")]
        saved = json.loads((run / "results.json").read_text())
        assert losses[method] == pytest.approx(saved["step_losses"], rel=1e-6)
    assert losses["plain"] != losses["fast"]  # each run logged its own
