"""The recipes in docs/recipes run as written: every code block, in order, at its own size.

The fast test checks that every ``rsft`` command of a recipe is a valid config (option names,
types, combinations); the slow one runs the recipe end to end.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from rsft.cli.main import main
from rsft.config import from_dict, parse_overrides
from rsft.training import TrainConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"
PRETRAIN_RECIPE = DOCS / "recipes" / "pretrain_then_finetune.md"
BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.DOTALL)


def code_blocks(markdown: Path) -> list[tuple[str, str]]:
    """(language, code) of every python and bash block, in order."""
    return BLOCK.findall(markdown.read_text())


def commands(code: str) -> list[list[str]]:
    """The argv of each command of a bash block (continued lines joined)."""
    argvs = [shlex.split(line, comments=True) for line in code.replace("\\\n", " ").splitlines()]
    return [argv for argv in argvs if argv]


def run_blocks(markdown: Path) -> None:
    """Run python blocks with exec and each ``rsft ...`` command through the CLI's main()."""
    for language, code in code_blocks(markdown):
        if language == "python":
            exec(compile(code, str(markdown), "exec"), {"__name__": "__recipe__"})
            continue
        for argv in commands(code):
            assert argv[0] == "rsft", f"{markdown.name}: only rsft commands run here: {argv}"
            assert main(argv[1:]) == 0, argv


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_pretrain_recipe_commands_are_valid_configs():
    blocks = code_blocks(PRETRAIN_RECIPE)
    assert [lang for lang, _ in blocks] == ["python", "bash", "bash"]
    pretrain, finetune = (commands(code) for lang, code in blocks if lang == "bash")
    configs = [from_dict(TrainConfig, parse_overrides(argv[2:])) for argv in pretrain + finetune]
    assert [argv[:2] for argv in pretrain + finetune] == [["rsft", "train"]] * 2
    assert configs[1].model.path == configs[0].output_dir + "/model"  # fine-tunes the pretrained
    assert configs[0].data.feature_columns == configs[1].data.feature_columns == "all"


@pytest.mark.slow
def test_pretrain_then_finetune_recipe_runs(in_tmp):
    run_blocks(PRETRAIN_RECIPE)

    saved = json.loads((in_tmp / "runs/pretrain/model/rsft_model.json").read_text())
    assert saved["class"] == "rsft.tasks.mlp:MLP" and saved["classes"] == ["0", "1", "2"]
    result = json.loads((in_tmp / "runs/finetune/results.json").read_text())
    assert result["config"]["model"]["path"] == "runs/pretrain/model"
    # Fine-tuning started from the pretrained weights: on the target test set the model is
    # well above chance (1/3) before any step, and fine-tuning on target-like rows helps.
    assert result["initial_test_accuracy"] > 0.5
    assert result["test_accuracy"] > result["initial_test_accuracy"]
    assert 0.1 < result["acceptance_rate"] < 0.5  # the quantile envelope keeps part of the pool


GSM8K_RECIPE = DOCS / "recipes" / "gsm8k.md"


def test_gsm8k_recipe_config_and_commands_are_valid():
    """Its config reads as an RFT config naming the model and data by Hub name, the
    reference taken out of GSM8K's solutions; its rsft commands override valid options."""
    import yaml

    from rsft.generation import RFTConfig
    from rsft.generation.prompts import _answers_in
    from rsft.hub import is_hub_name

    text = GSM8K_RECIPE.read_text()
    options = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.DOTALL)[1])
    cfg = from_dict(RFTConfig, options)
    assert is_hub_name(cfg.model.path) and is_hub_name(cfg.data.train)
    assert (cfg.data.subset, cfg.data.train_split, cfg.data.eval_split) == ("main", "train", "test")
    solution = "Natalia sold 48+24 = <<48+24=72>>72 clips altogether.\n#### 72"
    assert _answers_in([solution], cfg.data.answer_pattern, "answer", "gsm8k") == ["72"]
    runs = [argv for lang, code in code_blocks(GSM8K_RECIPE) for argv in commands(code)]
    rft = [argv for argv in runs if argv[0] == "rsft"]
    assert [argv[:3] for argv in rft] == [["rsft", "rft", "--config"]] * 2
    for argv in rft:
        from_dict(RFTConfig, {**options, **parse_overrides(argv[4:])})
