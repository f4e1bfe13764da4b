"""The embedded reasoning task: multi-step arithmetic word problems with worked solutions.

Each problem comes from a template (a phrasing and a two-step computation mixing +, − and ×)
with numbers drawn per item, and carries a worked reference solution (``solution``: the
steps, then ``Answer: <n>``) besides its final ``answer``. The prompt asks for brief
reasoning and a last line ``Answer: <n>``; the numeric verifier reads the last number. Some
templates appear only in the held-out set (``seen: false``, ``phrasing: unseen``), so a
comparison also shows whether what is learned carries over to phrasings never trained on.
Training and held-out problems are disjoint (no held-out question text appears in training).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rsft.tasks.prompt_files import prepare_prompts

INSTRUCTION = "Answer with the calculation, then a last line 'Answer: <number>'."


@dataclass(frozen=True)
class Template:
    """A phrasing, how its numbers are drawn, and its worked solution."""

    name: str
    question: str  # formatted with the drawn numbers a, b, c
    draw: Callable[[random.Random], tuple[int, int, int]]
    solve: Callable[[int, int, int], tuple[list[str], int]]  # (steps, answer)


# Small numbers: SmolLM2-135M-Instruct solves about one problem in seven greedily (and
# about none with two-digit operands), so the arms of a comparison have room to differ.
def _small(rng: random.Random) -> tuple[int, int, int]:
    """a × b with a, b in 2-6; c keeps the answer positive."""
    a, b = rng.randint(2, 6), rng.randint(2, 6)
    return a, b, rng.randint(1, min(9, a * b - 1))


def _sums(rng: random.Random) -> tuple[int, int, int]:
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return a, b, rng.randint(1, min(9, a + b - 1))


def _two_takes(rng: random.Random) -> tuple[int, int, int]:
    a, b = rng.randint(10, 20), rng.randint(2, 5)
    return a, b, rng.randint(1, min(5, a - b - 1))


def _scaled_sum(rng: random.Random) -> tuple[int, int, int]:
    return rng.randint(2, 9), rng.randint(1, 6), rng.randint(2, 4)


def _shared_out(rng: random.Random) -> tuple[int, int, int]:
    b, c = rng.randint(2, 4), rng.randint(2, 4)
    return rng.randint(b * c + 1, b * c + 12), b, c


def _plus_minus(a: int, b: int, c: int) -> tuple[list[str], int]:
    return [f"{a} + {b} = {a + b}.", f"{a + b} - {c} = {a + b - c}."], a + b - c


def _times_minus(a: int, b: int, c: int) -> tuple[list[str], int]:
    return [f"{a} × {b} = {a * b}.", f"{a * b} - {c} = {a * b - c}."], a * b - c


def _times_plus(a: int, b: int, c: int) -> tuple[list[str], int]:
    return [f"{a} × {b} = {a * b}.", f"{a * b} + {c} = {a * b + c}."], a * b + c


def _minus_minus(a: int, b: int, c: int) -> tuple[list[str], int]:
    return [f"{a} - {b} = {a - b}.", f"{a - b} - {c} = {a - b - c}."], a - b - c


def _sum_times(a: int, b: int, c: int) -> tuple[list[str], int]:
    return [f"{a} + {b} = {a + b}.", f"{a + b} × {c} = {(a + b) * c}."], (a + b) * c


def _minus_times(a: int, b: int, c: int) -> tuple[list[str], int]:
    return [f"{b} × {c} = {b * c}.", f"{a} - {b * c} = {a - b * c}."], a - b * c


def _minus_plus(a: int, b: int, c: int) -> tuple[list[str], int]:
    return [f"{a} - {b} = {a - b}.", f"{a - b} + {c} = {a - b + c}."], a - b + c


TRAIN_TEMPLATES = (
    Template("apples", "Sam has {a} apples. He buys {b} more, then gives {c} to a friend. "
             "How many apples does Sam have now?", _sums, _plus_minus),
    Template("pencils", "A box holds {b} pencils. Tom buys {a} boxes and loses {c} pencils. "
             "How many pencils does Tom have?", _small, _times_minus),
    Template("pages", "Mia reads {b} pages a day for {a} days, then {c} more pages. How many "
             "pages did she read in all?", _small, _times_plus),
    Template("cakes", "A shop had {a} cakes. It sold {b} in the morning and {c} in the "
             "afternoon. How many cakes are left?", _two_takes, _minus_minus),
    Template("hay", "A farmer has {a} cows and buys {b} more. Each cow eats {c} kg of hay a "
             "day. How many kg of hay do the cows eat in a day?", _scaled_sum, _sum_times),
    Template("stickers", "Anna had {a} stickers. She gave {b} to each of her {c} friends. How "
             "many stickers does she have left?", _shared_out, _minus_times),
)  # fmt: skip
HELD_OUT_TEMPLATES = (
    Template("train", "A train carries {a} people. At the first stop {b} get off and {c} "
             "get on. How many people are on the train now?", _two_takes, _minus_plus),
    Template("cookies", "A baker makes {a} trays of {b} cookies and eats {c} of them. How "
             "many cookies are left?", _small, _times_minus),
    Template("wages", "Leo earns {b} dollars each week. After {a} weeks he also gets a gift "
             "of {c} dollars. How many dollars does he have?", _small, _times_plus),
)  # fmt: skip


VERSION = 2
"""Bumped whenever the rows written change (fields, numbers, the instruction)."""


def problem(template: Template, a: int, b: int, c: int, seen: bool) -> dict:
    """One row: the prompt, the final answer, the worked solution, and where it came from."""
    question = template.question.format(a=a, b=b, c=c)
    steps, answer = template.solve(a, b, c)
    return {
        "prompt": f"{question} {INSTRUCTION}",
        "answer": str(answer),
        "solution": " ".join(steps) + f"\nAnswer: {answer}",
        "template": template.name,
        "seen": seen,
        "phrasing": "seen" if seen else "unseen",  # data.group_column of a comparison
    }


def word_problems(
    n_train: int, n_eval: int, seed: int = 0, unseen_share: float = 0.5
) -> tuple[list[dict], list[dict]]:
    """Training problems from the training templates; held-out problems, ``unseen_share`` of
    them from the held-out templates, the rest new numbers in the training templates."""
    rng = random.Random(seed)
    n_unseen = round(n_eval * unseen_share)
    chosen: set[str] = set()

    def draw(templates: tuple[Template, ...], n: int, seen: bool) -> list[dict]:
        rows: list[dict] = []
        for attempt in range(50 * n):
            if len(rows) == n:
                return rows
            t = templates[attempt % len(templates)]
            row = problem(t, *t.draw(rng), seen=seen)
            if row["prompt"] not in chosen:  # each question once, in one split only
                chosen.add(row["prompt"])
                rows.append(row)
        raise ValueError(f"could not draw {n} distinct problems from {len(templates)} templates")

    held_out = draw(HELD_OUT_TEMPLATES, n_unseen, False)
    held_out += draw(TRAIN_TEMPLATES, n_eval - n_unseen, True)
    train = draw(TRAIN_TEMPLATES, n_train, True)
    return train, held_out


def prepare_word_problems(
    out: str | Path,
    *,
    n_train: int = 1000,
    n_eval: int = 200,
    seed: int = 0,
    with_model: bool = True,
    force: bool = False,
) -> dict[str, str]:
    """Write ``train.jsonl`` and ``eval.jsonl`` under ``out`` and SmolLM2 in ``out/model``."""
    options = {
        "task": "word_problems",
        "n_train": n_train,
        "n_eval": n_eval,
        "seed": seed,
        "version": VERSION,  # a folder written by another version is written again
    }
    return prepare_prompts(
        out,
        options,
        lambda: word_problems(n_train, n_eval, seed),
        with_model=with_model,
        force=force,
    )
