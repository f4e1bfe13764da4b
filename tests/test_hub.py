"""Models and data by Hub name, from a local Hugging Face cache (offline: nothing reaches the
Hub): what is a name, a model's snapshot folder, a dataset's subset, split and revision, and
each failure told with the repo and the fix."""

from __future__ import annotations

import json

import datasets
import pytest

from rsft.config import ConfigError
from rsft.data.validate import DataError
from rsft.hub import (
    dataset_digest,
    is_hub_name,
    load_dataset_split,
    resolve_model,
    snapshot_origin,
)

A, B = "a" * 40, "b" * 40
GSM = "tiny-org/tiny-gsm"


def _rows(subset: str, split: str, n: int = 3) -> list[dict]:
    return [{"question": f"{subset} {split} {i}?", "answer": f"so #### {i}"} for i in range(n)]


@pytest.fixture
def gsm(hub_cache):
    """A dataset with two subsets (main, socratic) of two splits each, at commit A."""
    subsets = {s: {"train": _rows(s, "train"), "test": _rows(s, "test", 2)} for s in ("main", "x")}
    hub_cache.dataset(GSM, subsets, commit=A)
    return hub_cache


@pytest.fixture
def model_files(tmp_path):
    folder = tmp_path / "files"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "sub" / "weights.bin").write_bytes(b"\0" * 8)
    return folder


@pytest.mark.parametrize(
    "value, is_name",
    [
        ("org/name", True),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", True),
        ("org/name.v2", True),
        ("data/train.jsonl", False),  # a data file's name is a (missing) local path
        ("data/train.parquet", False),
        ("/abs/org/name", False),
        ("./org/name", False),
        ("org/../name", False),
        ("a/b/c", False),
        ("gpt2", False),
        ("rsft.tasks.mlp:MLP", False),  # an import path
        ("", False),
        (None, False),
    ],
)
def test_a_hub_name_is_org_slash_name(value, is_name):
    assert is_hub_name(value) is is_name


def test_an_existing_local_folder_wins_over_the_hub_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_name("org/name")
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not is_hub_name("org/name")


def test_a_model_resolves_to_its_snapshot_folder_at_a_branch_tag_or_commit(hub_cache, model_files):
    main = hub_cache.model("org/lm", model_files, commit=A)
    tagged = hub_cache.model("org/lm", model_files, commit=B, ref="v1")
    assert resolve_model("org/lm") == main
    assert resolve_model("org/lm", "v1") == tagged
    assert resolve_model("org/lm", B) == tagged
    assert json.loads((main / "config.json").read_text()) == {"model_type": "llama"}
    assert (main / "sub" / "weights.bin").read_bytes() == b"\0" * 8
    assert snapshot_origin(main) == {"hub": "org/lm", "commit": A}
    assert snapshot_origin(model_files) == {}


@pytest.mark.parametrize("revision", [None, "v9", "c" * 40])
def test_offline_a_model_not_in_the_cache_names_the_repo_and_the_download(
    hub_cache, model_files, revision
):
    hub_cache.model("org/lm", model_files, commit=A)
    name = "org/lm" if revision else "org/missing"
    with pytest.raises(ConfigError) as err:
        resolve_model(name, revision)
    message = str(err.value)
    assert f"the model {name}" in message and "HF_HUB_OFFLINE is set" in message
    assert f"hf download {name}{f' --revision {revision}' if revision else ''}`" in message
    assert str(hub_cache.hub) in message


def test_a_dataset_split_by_name_subset_and_split(gsm):
    train = load_dataset_split(GSM, "train", "main")
    assert train["question"] == ["main train 0?", "main train 1?", "main train 2?"]
    assert load_dataset_split(GSM, "test", "x")["question"] == ["x test 0?", "x test 1?"]
    assert load_dataset_split(GSM, "train[:2]", "main").num_rows == 2


def test_a_dataset_without_subsets_needs_none(hub_cache):
    hub_cache.dataset("org/plain", {None: {"train": _rows("p", "train"), "test": _rows("p", "t")}})
    assert load_dataset_split("org/plain", "test")["question"][0] == "p t 0?"


def test_a_revision_is_the_commit_read_or_refused(gsm):
    assert load_dataset_split(GSM, "train", "main", A).num_rows == 3
    assert load_dataset_split(GSM, "train", "main", A[:7]).num_rows == 3
    assert load_dataset_split(GSM, "train", "main", "main").num_rows == 3  # refs/main is A
    card = gsm.hub / "datasets--tiny-org--tiny-gsm"
    (card / "refs" / "v1").write_text(B)  # a tag fetched once, at another commit
    (card / "snapshots" / B).mkdir()
    (card / "snapshots" / B / "README.md").write_text("A dataset.\n")
    refused = {
        B: f"'{B}' is not it",
        "v1": f"'v1' is commit {B}",
        "v2": "which commit 'v2' is was never",
    }
    for revision, which in refused.items():
        with pytest.raises(DataError) as err:
            load_dataset_split(GSM, "train", "main", revision)
        assert f"is at commit {A}, and {which}" in str(err.value)
        assert "unset HF_HUB_OFFLINE" in str(err.value)


@pytest.mark.parametrize(
    "subset, split, expected",
    [
        (None, "train", "has several subsets (main, x): set data.subset to one of them"),
        ("socratic", "train", "data.subset: the Hub dataset tiny-org/tiny-gsm has no subset"),
        ("main", "validation", "has no split 'validation'; its splits are train, test"),
    ],
)
def test_a_missing_subset_or_split_names_those_there_are(gsm, subset, split, expected):
    with pytest.raises(DataError) as err:
        load_dataset_split(GSM, split, subset, what="data.eval")
    assert expected in str(err.value)
    if subset == "socratic":
        assert "its subsets in the datasets cache (offline) are main, x." in str(err.value)
    if split == "validation":
        assert str(err.value).startswith("data.eval_split: ")


def test_offline_a_dataset_not_in_the_cache_names_the_repo_and_the_fix(gsm):
    with pytest.raises(DataError) as err:
        load_dataset_split("org/elsewhere", "train", what="data.eval")
    message = str(err.value)
    assert message.startswith("data.eval: the Hub dataset org/elsewhere is not in the datasets")
    assert "HF_HUB_OFFLINE" in message and "Load it once with the network" in message
    assert str(gsm.data) in message


def test_a_dataset_made_of_a_loading_script_is_refused(monkeypatch):
    def script(*args, **kwargs):
        raise RuntimeError("Dataset scripts are no longer supported, but found gsm8k.py")

    monkeypatch.setattr(datasets, "load_dataset", script)
    with pytest.raises(DataError, match="rsft runs no dataset code"):
        load_dataset_split("org/scripted", "train")


def test_the_digest_of_a_dataset_split_follows_its_commit(gsm):
    then = dataset_digest(GSM, "train", "main")
    assert then["commit"] == A and then["rows"] == 3 and then["split"] == "train"
    assert dataset_digest(GSM, "train", "main") == then
    assert dataset_digest(GSM, "test", "main")["fingerprint"] != then["fingerprint"]
    gsm.dataset(GSM, {"main": {"train": _rows("main", "train", 4)}}, commit=B)
    now = dataset_digest(GSM, "train", "main")
    assert now["commit"] == B and now["rows"] == 4 and now["fingerprint"] != then["fingerprint"]
