"""What a round fine-tunes on: reference solutions, accepted candidates, or both."""

from __future__ import annotations

import pytest

from rsft.generation.prompts import Prompts
from rsft.generation.training_set import reference_rows, reference_selection, with_references


def prompts() -> Prompts:
    return Prompts(
        ids=["train-0", "train-1"],
        texts=["2 + 3?", "4 × 5?"],
        references=["5", "20"],
        source="mem",
        solutions=["2 + 3 = 5.\nAnswer: 5", "4 × 5 = 20.\nAnswer: 20"],
    )


def kept(prompt_id: str, text: str) -> dict:
    return {"prompt_id": prompt_id, "prompt": "?", "completion": text, "reward": 1.0}


def test_references_come_first_and_an_accepted_copy_of_one_is_kept_once():
    rows = with_references(
        [
            kept("train-0", "2 + 3 = 5.\nanswer: 5 "),  # the reference, in another case
            kept("train-0", "3 + 2 = 5. Answer: 5"),
            kept("train-1", "20"),
        ],
        prompts(),
        dedup="normalized",
    )
    assert [(r["prompt_id"], r["source"]) for r in rows] == [
        ("train-0", "reference"),
        ("train-1", "reference"),
        ("train-0", "accepted"),
        ("train-1", "accepted"),
    ]
    assert rows[2]["completion"] == "3 + 2 = 5. Answer: 5"
    exact = with_references([kept("train-0", "2 + 3 = 5.\nanswer: 5 ")], prompts(), "exact")
    assert len(exact) == 3  # exact dedup: another case is another text


def test_reference_round_keeps_every_solution_and_generates_nothing():
    p = prompts()
    assert [r["completion"] for r in reference_rows(p)] == p.solutions
    stats = reference_selection(p, 2)
    assert (stats.candidates, stats.kept, stats.prompts_kept) == (0, 2, 2)
    assert stats.rule == {"rule": "reference"}
    p.solutions = None
    with pytest.raises(ValueError, match="solution_column"):
        reference_rows(p)
