"""The embedded reasoning task: worked solutions that compute the answer, disjoint splits,
held-out phrasings never trained on, and files written once per set of options."""

from __future__ import annotations

import re

from rsft.atomic import read_jsonl
from rsft.generation.scoring.verifiers import extract_number
from rsft.tasks.word_problems import (
    HELD_OUT_TEMPLATES,
    TRAIN_TEMPLATES,
    prepare_word_problems,
    word_problems,
)

STEP = re.compile(r"(-?\d+) ([+\-×]) (-?\d+) = (-?\d+)\.")
OPS = {"+": int.__add__, "-": int.__sub__, "×": int.__mul__}


def test_each_worked_solution_computes_its_answer_step_by_step():
    train, held_out = word_problems(300, 100, seed=1)
    for row in train + held_out:
        steps = STEP.findall(row["solution"])
        assert len(steps) == 2, row["solution"]
        for a, op, b, result in steps:
            assert OPS[op](int(a), int(b)) == int(result)
        assert steps[-1][3] == row["answer"] and int(row["answer"]) > 0
        assert row["solution"].endswith(f"\nAnswer: {row['answer']}")
        assert extract_number(row["solution"]) == row["answer"]  # what the verifier reads


def test_the_splits_are_disjoint_and_some_phrasings_are_only_held_out():
    train, held_out = word_problems(1000, 200, seed=0)
    assert len(train) == 1000 and len(held_out) == 200
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held_out}
    assert len({r["prompt"] for r in train}) == 1000
    unseen = {t.name for t in HELD_OUT_TEMPLATES}
    assert {r["template"] for r in train} == {t.name for t in TRAIN_TEMPLATES}
    assert {r["template"] for r in held_out if not r["seen"]} == unseen
    assert sum(not r["seen"] for r in held_out) == 100
    assert all(r["seen"] == (r["template"] not in unseen) for r in held_out)
    assert all(r["phrasing"] == ("seen" if r["seen"] else "unseen") for r in held_out)


def test_the_same_seed_gives_the_same_problems_and_another_seed_others():
    assert word_problems(50, 20, seed=3) == word_problems(50, 20, seed=3)
    assert word_problems(50, 20, seed=3)[0] != word_problems(50, 20, seed=4)[0]


def test_prepare_writes_the_files_once(tmp_path):
    paths = prepare_word_problems(tmp_path, n_train=40, n_eval=10, with_model=False)
    rows = read_jsonl(paths["train"])
    assert len(rows) == 40 and {"prompt", "answer", "solution", "seen"} <= set(rows[0])
    stamp = (tmp_path / "train.jsonl").stat().st_mtime_ns
    prepare_word_problems(tmp_path, n_train=40, n_eval=10, with_model=False)
    assert (tmp_path / "train.jsonl").stat().st_mtime_ns == stamp
    prepare_word_problems(tmp_path, n_train=40, n_eval=10, seed=1, with_model=False)
    assert read_jsonl(paths["train"]) != rows
