"""Prompt files: every format, the column checks, and the answers' text form."""

import json

import pytest
from datasets import Dataset

from rsft.data.validate import DataError
from rsft.generation.prompts import chat_messages, load_prompts

ROWS = [{"q": "What is 1 + 2?", "a": 3}, {"q": "What is 2 + 2?", "a": 4}]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "hf"])
def test_every_format_reads_the_same_prompts(tmp_path, fmt):
    path = tmp_path / f"p.{fmt}"
    table = Dataset.from_list(ROWS)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif fmt == "csv":
        table.to_csv(str(path), index=False)
    elif fmt == "parquet":
        table.to_parquet(str(path))
    else:
        table.save_to_disk(str(path))
    p = load_prompts(path, "q", "a", split="eval")
    assert p.texts == ["What is 1 + 2?", "What is 2 + 2?"]
    assert p.references == ["3", "4"]
    assert p.ids == ["eval-0", "eval-1"]


def test_float_answers_from_csv_read_as_integers(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("q,a\nWhat is half of 9?,4.5\nWhat is 2 + 2?,4.0\n")
    assert load_prompts(path, "q", "a").references == ["4.5", "4"]


def test_limit_and_no_answer_column(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    p = load_prompts(path, "q", None, limit=1)
    assert len(p) == 1 and p.references == [None]


def test_missing_reference_is_named_by_row(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"q": "x?", "a": None}) + "\n")
    with pytest.raises(DataError, match="row 1"):
        load_prompts(path, "q", "a")


def test_a_folder_of_files_is_not_prompts(tmp_path):
    (tmp_path / "imgs").mkdir()
    with pytest.raises(DataError, match="not prompts"):
        load_prompts(tmp_path / "imgs", "q", "a")


def test_chat_messages_put_the_system_prompt_first():
    assert chat_messages("hi", None) == [{"role": "user", "content": "hi"}]
    assert [m["role"] for m in chat_messages("hi", "be brief")] == ["system", "user"]


def test_a_gap_in_a_csv_answer_column_is_a_missing_reference(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("q,a\nWhat is 1 + 2?,3\nWhat is 2 + 2?,\n")
    with pytest.raises(DataError, match="reference answer missing.*row 1"):
        load_prompts(path, "q", "a")
