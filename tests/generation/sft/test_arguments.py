"""The sft section as TRL's SFTConfig: rsft's options, then any other field through sft.trl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsft.config import ConfigError, from_dict
from rsft.generation.config import RFTConfig, SFTSection
from rsft.generation.run_state import options_hash
from rsft.generation.sft.arguments import OWNED, trl_arguments
from rsft.generation.sft.train import sft_train
from rsft.same_run import run_identity

RFT = {"model": {"path": "m"}, "data": {"train": "t.jsonl", "eval": "e.jsonl"}}


def _args(cfg: SFTSection) -> dict:
    return trl_arguments(cfg, output_dir="out", seed=3, bf16=False, cpu=True, bars=False)


def test_rsft_options_set_their_trl_fields():
    args = _args(SFTSection(epochs=1.5, lr=1e-4, batch_size=8, processes=2, warmup_ratio=0.1))
    assert (args["num_train_epochs"], args["learning_rate"]) == (1.5, 1e-4)
    assert args["per_device_train_batch_size"] == 4  # the global batch split over processes
    assert args["warmup_steps"] == 0.1  # transformers 5: a value below 1 is a ratio
    assert args["report_to"] == "none" and args["logging_nan_inf_filter"] is False


def test_sft_trl_passes_any_other_field_through_over_rsfts_defaults():
    trl_options = {"max_grad_norm": 0.5, "report_to": "tensorboard", "logging_steps": 1}
    cfg = from_dict(RFTConfig, {**RFT, "sft": {"trl": trl_options}})
    args = _args(cfg.sft)
    assert {k: args[k] for k in trl_options} == trl_options

    from trl import SFTConfig

    built = SFTConfig(**{**args, "output_dir": "/tmp/rsft-trl-args"})
    assert built.max_grad_norm == 0.5 and built.logging_steps == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"learning_rate": 1e-3}, r"sft\.trl\.learning_rate is set by rsft from sft\.lr"),
        ({"seed": 1}, r"sft\.trl\.seed is set by rsft from seed"),
        ({"max_grad_nrom": 1.0}, r"sft\.trl\.max_grad_nrom is not an option.*'max_grad_norm'"),
        ({"optim": "no_such_optimizer"}, r"sft\.trl: trl\.SFTConfig refuses"),
    ],
)
def test_a_bad_sft_trl_option_is_refused_when_the_config_is_read(options, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(RFTConfig, {**RFT, "sft": {"trl": options}})
    with pytest.raises(ConfigError, match=message):
        SFTSection(trl=options)


def test_every_owned_field_is_a_field_of_trl_sftconfig():
    import dataclasses

    from trl import SFTConfig

    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    assert set(OWNED) <= fields, set(OWNED) - fields
    assert set(_args(SFTSection())) <= fields


def test_sft_trl_is_part_of_the_run_and_an_empty_one_hashes_as_before():
    plain = from_dict(RFTConfig, RFT)
    passed = from_dict(RFTConfig, {**RFT, "sft": {"trl": {"max_grad_norm": 0.5}}})
    assert options_hash(run_identity(plain)) != options_hash(run_identity(passed))
    before = run_identity(plain)
    before["sft"] = {k: v for k, v in before["sft"].items() if k != "trl"}  # an older state
    assert options_hash(before) == options_hash(run_identity(plain))


def test_a_trl_option_reaches_the_fine_tuning(tiny_lm, tmp_path):
    records = [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} + {i}?"},
                {"role": "assistant", "content": str(2 * i)},
            ]
        }
        for i in range(8)
    ]
    cfg = SFTSection(epochs=1, batch_size=2, save_steps=50, trl={"logging_steps": 1})
    sft_train(tiny_lm, records, tmp_path, cfg, seed=0, progress=False)
    history = json.loads(Path(tmp_path / "sft_history.json").read_text())
    assert len(history["steps"]) == 4  # a loss logged at every one of the 4 steps


def test_report_to_reaches_the_fine_tuning_its_events_kept_in_the_stage(tiny_lm, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    records = [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} + {i}?"},
                {"role": "assistant", "content": str(2 * i)},
            ]
        }
        for i in range(8)
    ]
    cfg = SFTSection(epochs=1, batch_size=2, save_steps=50, trl={"logging_steps": 1})
    sft_train(tiny_lm, records, tmp_path, cfg, seed=0, progress=False, report_to=["tensorboard"])
    history = json.loads(Path(tmp_path / "sft_history.json").read_text())
    events = EventAccumulator(str(tmp_path / "trackers" / "tensorboard"))  # not in trainer/
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert logged == [(h["step"], pytest.approx(h["loss"], rel=1e-6)) for h in history["steps"]]
    assert not (tmp_path / "trainer").exists()  # the checkpoints' folder went, the events stayed
