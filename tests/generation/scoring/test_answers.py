"""The majority vote of maj@k: answers as the verifier reads them."""

from __future__ import annotations

from rsft.generation.scoring.answers import answer_extractor, majority


def test_numeric_answers_vote_as_numbers():
    read = answer_extractor("numeric", {"tolerance": 1e-6})
    texts = ["so 42", "Answer: 42.0", "it is 41", "no idea"]
    answers = [read(t) for t in texts]
    assert answers[0] == answers[1] and answers[3] is None
    assert majority(answers, [True, True, False, False]) == (answers[0], True)


def test_ties_go_to_the_answer_given_first_and_no_answer_does_not_vote():
    assert majority(["7", "8", None, None, None], [False, True, False, False, False]) == (
        "7",
        False,
    )
    assert majority([None, None], [False, False]) == (None, False)


def test_regex_reads_the_last_match_and_other_kinds_have_no_answer():
    read = answer_extractor("regex", {"pattern": r"Answer:\s*(\S+)", "group": 1})
    assert read("Answer: 3 ... Answer: FIVE") == "five"
    assert read("nothing") is None
    assert answer_extractor("math_verify", {}) is None
    assert answer_extractor("function", {"path": "x:y"}) is None
