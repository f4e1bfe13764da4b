"""The fine-tuning stage: completion-only records, and resuming from TRL's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trl

from rsft.atomic import default_file_mode
from rsft.generation.config import SFTSection
from rsft.generation.sft.train import last_complete_checkpoint, prompt_completion, sft_train


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


def test_a_checkpoint_cut_short_by_a_kill_is_not_resumed_from(tmp_path):
    """transformers writes trainer_state.json last: without it, or cut short, the folder is
    a save that was killed, and the one before it is used."""
    assert last_complete_checkpoint(tmp_path / "trainer") is None
    for step, state in [(2, "{}"), (4, None), (6, '{"global_step": '), (10, None)]:
        folder = tmp_path / "trainer" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    assert last_complete_checkpoint(tmp_path / "trainer") == tmp_path / "trainer" / "checkpoint-2"
    (tmp_path / "trainer" / "checkpoint-10" / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path / "trainer").name == "checkpoint-10"
