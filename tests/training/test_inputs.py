"""FineTuner takes objects: a transformers model (with its tokenizer), datasets.Dataset s
or lists of rows, as well as the paths a config names; a run on objects is the run on the
same inputs as files, and resumes as one."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Value
from datasets import Image as ImageFeature
from PIL import Image
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from rsft.config import ConfigError, from_dict
from rsft.data import DataConfig, load_split
from rsft.inputs import table_inputs
from rsft.training import FineTuner, TrainConfig

HERE = Path(__file__).parent
WORDS = ["the", "a", "movie", "plot", "was", "very", "and", "music", "good", "bad"]
OPTIONS = {
    "model": {"freeze": "none"},
    "data": {"text_column": "text", "max_length": 12},
    "optim": {"name": "adamw", "lr": 0.01},
    "epochs": 2,
    "batch_size": 8,
    "progress": False,
}


def rows(n: int, seed: int) -> list[dict]:
    """n short sentences whose class is the keyword among filler words."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = ["neg", "pos"][i % 2]
        words = list(rng.choice(WORDS[:8], size=4)) + ["good" if label == "pos" else "bad"]
        out.append({"text": " ".join(rng.permutation(words)), "label": label})
    return out


@pytest.fixture
def bert(tmp_path):
    """A tiny BERT classifier and its tokenizer, as objects (nothing downloaded)."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    return BertForSequenceClassification(config), tokenizer


def config(out, model: str = "", **data) -> TrainConfig:
    """The options above; the model and data named only where given (else objects)."""
    model_options = {**OPTIONS["model"], **({"path": model} if model else {})}
    data_options = {**OPTIONS["data"], **data}
    options = {**OPTIONS, "model": model_options, "data": data_options, "output_dir": str(out)}
    return from_dict(TrainConfig, options)


def test_a_run_on_objects_is_the_run_on_the_same_files(bert, tmp_path):
    model, tokenizer = bert
    splits = {"train": rows(48, 0), "eval": rows(16, 1), "test": rows(16, 2)}
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    files = {}
    for name, split in splits.items():
        files[name] = str(tmp_path / f"{name}.jsonl")
        Dataset.from_list(split).to_json(files[name])
    expected = FineTuner(config(tmp_path / "files", str(folder), **files)).train()

    cfg = config(tmp_path / "objects")
    datasets = {name: Dataset.from_list(split) for name, split in splits.items()}
    tuner = FineTuner(cfg, model=model, processor=tokenizer, **datasets)
    inputs = tmp_path / "objects" / "inputs"
    assert tuner.config.model.path == str(inputs / "model") and cfg.model.path == ""
    assert tuner.config.data.train == str(inputs / "train.parquet")
    assert Dataset.from_parquet(str(inputs / "test.parquet")).to_list() == splits["test"]

    result = tuner.train()
    assert result["step_losses"] == expected["step_losses"]
    assert result["test_accuracy"] == expected["test_accuracy"]

    stamps = {p.name: p.stat().st_mtime_ns for p in (inputs / "model").iterdir()}
    again = FineTuner(cfg, model=model, processor=tokenizer, **datasets)
    assert {p.name: p.stat().st_mtime_ns for p in (inputs / "model").iterdir()} == stamps
    assert again.resume_from is not None  # the same inputs: the finished run's checkpoint


def test_a_changed_dataset_is_refused_on_resume(bert, tmp_path):
    model, tokenizer = bert
    cfg = config(tmp_path / "run")
    FineTuner(cfg, model=model, processor=tokenizer, train=rows(32, 0)).train()
    with pytest.raises(ConfigError, match=r"data\.train .* changed since"):
        FineTuner(cfg, model=model, processor=tokenizer, train=rows(32, 1))


def test_the_inputs_are_required_before_anything_is_written(bert, tmp_path):
    model, tokenizer = bert
    with pytest.raises(ConfigError, match=r"model\.path is required.*\(or model=\)"):
        FineTuner(config(tmp_path / "run"), train=rows(8, 0))
    with pytest.raises(ConfigError, match=r"data\.train is required.*\(or train=\)"):
        FineTuner(config(tmp_path / "run"), model=model, processor=tokenizer)
    assert not (tmp_path / "run").exists()


def test_a_torch_module_object_names_the_import_path_route(tmp_path):
    with pytest.raises(
        ConfigError, match=r"cannot be written as a model folder.*pkg\.module:Class"
    ):
        FineTuner(config(tmp_path / "run"), model=torch.nn.Linear(4, 2), train=rows(8, 0))


def test_an_image_dataset_keeps_its_images(tmp_path):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)) for _ in range(4)]
    features = Features({"image": ImageFeature(), "label": Value("string")})
    data = Dataset.from_dict({"image": images, "label": ["a", "b"] * 2}, features=features)
    path = table_inputs(tmp_path, {"train": data})["train"]
    assert path.endswith("inputs/train.parquet")
    split = load_split(path, DataConfig(resize=16, crop=16))
    assert split.classes == ["a", "b"] and split.dataset[0]["pixel_values"].shape == (3, 16, 16)


@pytest.mark.skipif(
    shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None,
    reason="the accelerate launcher is not installed",
)
def test_two_processes_train_on_an_object_the_main_process_wrote(
    tiny_config, tmp_path, two_processes
):
    tiny_config["model"]["kwargs"] = {"width": 8, "dropout": 0.0}
    ranks = two_processes(HERE / "ddp_objects.py", tiny_config, tmp_path, port=29531)
    written = str(Path(tiny_config["output_dir"]) / "inputs" / "train.parquet")
    assert [r["train"] for r in ranks] == [written, written]
    assert ranks[0]["step_losses"] == ranks[1]["step_losses"] and ranks[0]["step_losses"]
    leftovers = [p.name for p in Path(written).parent.iterdir() if p.name.startswith(".")]
    assert not leftovers  # one writer: no temporary file of a second one left behind


def test_a_model_named_by_hub_name_trains_from_its_snapshot_folder(bert, hub_cache, tmp_path):
    from rsft.config import replace
    from rsft.same_run import run_identity
    from rsft.training.resume import data_digest

    model, tokenizer = bert
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    snapshot = hub_cache.model("tiny-org/tiny-bert", folder, commit="c" * 40)
    train = str(tmp_path / "train.jsonl")
    Dataset.from_list(rows(16, 0)).to_json(train)
    cfg = config(tmp_path / "run", "tiny-org/tiny-bert", train=train)
    tuner = FineTuner(cfg)
    assert tuner.config.model.path == str(snapshot)
    result = tuner.train()
    # What `rsft compare` checks before reusing a finished run, on the config as written.
    assert result["data"] == data_digest(cfg)
    assert result["data"]["model.path"]["commit"] == "c" * 40
    assert result["config"]["model"]["path"] == str(snapshot)
    assert run_identity(tuner.config) == run_identity(cfg)
    local = config(tmp_path / "local", str(folder), train=train)
    local = replace(local, model=replace(local.model, revision="v1"))
    with pytest.raises(ConfigError, match="model.revision applies to a model named by Hub"):
        FineTuner(local)
