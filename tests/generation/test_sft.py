"""The fine-tuning stage: completion-only records, and resuming from TRL's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trl

from rsft.atomic import default_file_mode
from rsft.generation.config import SFTSection
from rsft.generation.sft import prompt_completion, sft_train


def records(n: int) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} + {i}?"},
                {"role": "assistant", "content": str(2 * i)},
            ]
        }
        for i in range(n)
    ]


def test_messages_split_into_prompt_and_completion():
    rows = prompt_completion(records(2))
    assert rows[0]["prompt"] == [{"role": "user", "content": "What is 0 + 0?"}]
    assert rows[1]["completion"] == [{"role": "assistant", "content": "2"}]
    with pytest.raises(ValueError, match="assistant"):
        prompt_completion([{"messages": [{"role": "user", "content": "hi"}]}])


def test_a_crashed_fine_tuning_resumes_from_its_last_checkpoint(tiny_lm, tmp_path, monkeypatch):
    """6 steps, a checkpoint after each; crash in step 3, rerun: only steps 3-6 run again."""
    cfg = SFTSection(epochs=1, batch_size=2, lr=1e-3, save_steps=1)
    steps: list[int] = []
    real_step = trl.SFTTrainer.training_step

    def counting(self, *args, **kwargs):
        steps.append(self.state.global_step)
        if len(steps) == 3 and crash:
            raise KeyboardInterrupt("killed")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(trl.SFTTrainer, "training_step", counting)
    crash = True
    with pytest.raises(KeyboardInterrupt):
        sft_train(tiny_lm, records(12), tmp_path, cfg, seed=0, progress=False)
    saved = sorted(p.name for p in (tmp_path / "trainer").glob("checkpoint-*"))
    assert saved == ["checkpoint-2"]
    assert not (tmp_path / "model").exists()

    crash, steps[:] = False, []
    model = sft_train(tiny_lm, records(12), tmp_path, cfg, seed=0, progress=False)
    assert steps == [2, 3, 4, 5], "the resumed run starts after the saved step"
    assert (model / "model.safetensors").is_file() and not (tmp_path / "trainer").exists()
    assert (model / "model.safetensors").stat().st_mode & 0o777 == default_file_mode()
    assert json.loads((Path(model) / "config.json").read_text())["num_hidden_layers"] == 2
