"""Reliability suite: the fine-tuning stage of ``rsft rft`` and reward models as verifiers.

Reward models (``verifier.reward_model``): a folder whose weights are not all in it — a
causal LM, for which transformers adds a randomly initialised score head, or a reward model
saved without its head — is refused when the verifier is built, before any generation;
transformers' own loading report says which weights were missing.

The fine-tuning stage (``sft``): a NaN or infinite loss, gradient norm or weight stops the
run (exit 1, "training stopped") naming ``sft.lr``, the round and the step, and no NaN model
or checkpoint is saved, in the pipeline's process and under ``accelerate launch``; a finite
loss far above its start warns. Each case runs one round of ``rsft rft`` on a tiny Llama.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rsft.cli.main import main

TESTS = Path(__file__).resolve().parents[1]
LR_FIX = "Lower sft.lr (1e+10 here, 2e-05 by default)"


@pytest.fixture(scope="module")
def headless_reward_model(tmp_path_factory, generation_models) -> str:
    """The tiny reward model with its score head's weights taken out of the saved file."""
    from safetensors.torch import load_file, save_file

    folder = Path(generation_models.save_tiny_reward_model(tmp_path_factory.mktemp("headless")))
    weights = load_file(str(folder / "model.safetensors"))
    kept = {k: v for k, v in weights.items() if not k.startswith("classifier.")}
    assert len(kept) == len(weights) - 2
    save_file(kept, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return str(folder)


@pytest.fixture
def rft_config(isolated, monkeypatch, tmp_path, tiny_lm):
    """``rft_config(**sections) -> path``: one round on the tiny LM, 8 prompts x 2 samples,
    half of them kept, fine-tuned for 2 epochs of batch 4 on the CPU."""
    from rsft.tasks.arithmetic import prepare_arithmetic

    monkeypatch.syspath_prepend(str(TESTS / "generation"))  # pipeline_rewards

    paths = prepare_arithmetic(tmp_path / "data", n_train=8, n_eval=4, with_model=False)

    def write(**sections) -> Path:
        config = {
            "model": {"path": tiny_lm, "device": "cpu"},
            "data": {"train": paths["train"], "eval": paths["eval"]},
            "generation": {"k": 2, "max_new_tokens": 4, "chunk_prompts": 4, "batch_size": 16},
            "verifier": {"kind": "function", "function": "pipeline_rewards:digit_share"},
            "selection": {"rule": "top_fraction", "fraction": 0.5},
            "sft": {"epochs": 2, "batch_size": 4, "lr": 1e-3},
            "eval": {"k": 0},
            "rounds": 1,
            "output_dir": str(tmp_path / "rft"),
            "progress": False,
        }
        for name, options in sections.items():
            config[name] = {**config[name], **options}
        path = tmp_path / "rft.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


# ------------------------------------------------------------------------ reward models


@pytest.mark.parametrize(
    "folder, missing",
    [
        pytest.param("tiny_lm", ["score.weight"], id="rm-causal-lm"),
        pytest.param(
            "headless_reward_model", ["classifier.bias", "classifier.weight"], id="rm-head-removed"
        ),
        # (held before)
        pytest.param("tiny_reward_model", [], id="rm-complete"),
    ],
)
def test_a_reward_model_must_load_every_weight_from_its_folder(request, folder, missing):
    from rsft.generation.scoring.verifiers import make_verifier

    path = request.getfixturevalue(folder)
    if missing:
        with pytest.raises(ValueError) as err:
            make_verifier("reward_model", path=path)
        message = str(err.value)
        assert f"reward model {path!r}" in message
        assert f"its weights {', '.join(missing)} are not in the folder" in message
        assert (
            "verifier.reward_model must be a sequence-classification model trained as a "
            "reward model, with num_labels 1 or 2" in message
        )
        return
    # Every weight from the folder: two loads give the same rewards (a random head would not).
    first, second = (make_verifier("reward_model", path=path) for _ in range(2))
    pair = (["What is 2 + 2?"] * 2, ["4", "five"])
    assert first(*pair) == second(*pair)


def test_rft_refuses_a_causal_lm_reward_model_before_generating(rft_config, tiny_lm, capsys):
    path = rft_config(verifier={"kind": "reward_model", "reward_model": tiny_lm, "function": None})
    assert main(["rft", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"rsft rft: error: reward model {tiny_lm!r}: its weights score.weight" in err
    assert "names LlamaForCausalLM" in err
    assert not (path.parent / "rft" / "round_0").exists()
    assert not (path.parent / "rft" / "round_1").exists()


# --------------------------------------------------------------------- the SFT stage


@pytest.mark.parametrize(
    "sft, stop",
    [
        # logs every step (save_steps // 5): the loss of step 2 is NaN
        pytest.param(
            {"lr": 1e10, "save_steps": 5},
            "round 1's fine-tuning diverged at step 2 of 4: the training loss is nan.",
            id="sft-lr-1e10",
        ),
        # logs every 10 steps, so none of the 4 is logged: the weights, before the save
        pytest.param(
            {"lr": 1e10, "save_steps": 50},
            "round 1's fine-tuning diverged: after step 4 of 4, 20 weight tensor(s) hold NaN",
            id="sft-lr-1e10-unlogged",
        ),
        pytest.param(
            {"lr": 1e10, "save_steps": 5, "processes": 2},
            "round 1's fine-tuning diverged at step 2 of 4: the training loss is nan.",
            id="sft-lr-1e10-two-processes",
        ),
        # a finite loss 100 times its start: a warning, the run goes on
        pytest.param({"lr": 10.0, "save_steps": 5}, None, id="sft-lr-10"),
        # (held before)
        pytest.param({"lr": 1e-3, "save_steps": 5}, None, id="sft-lr-1e-3"),
    ],
)
def test_a_diverged_fine_tuning_stops_the_run_and_saves_no_model(rft_config, capsys, sft, stop):
    path = rft_config(sft=sft)
    code = main(["rft", "-c", str(path)])
    err = capsys.readouterr().err
    stage = path.parent / "rft" / "round_1" / "sft"
    if stop is None:
        assert code == 0, err
        assert (stage / "model" / "model.safetensors").is_file()
        warned = "rsft rft: warning: round 1's fine-tuning may be diverging at step" in err
        assert warned is (sft["lr"] > 1), err
        return
    assert code == 1, err
    assert f"rsft rft: training stopped: {stop}" in err, err
    assert LR_FIX in err and "resume=never" in err
    assert "child command failed" not in err  # the launched processes' error, as it is
    assert not (stage / "model").exists() and not (stage / "model.partial").exists()
    assert not list(stage.glob("trainer/checkpoint-*")), "no checkpoint of NaN weights"
    assert not (path.parent / "rft" / "round_2").exists()
