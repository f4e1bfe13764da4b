"""Input files: links in image folders, label spellings (issue 17, items 4, 5 and 12).

An image folder is 4 cat and 4 dog images; each row of ``FOLDERS`` adds links to it (a loop,
a link to a sibling class, a class folder that is a link to a dataset elsewhere, links into
a hidden store inside the folder) and says what loading it must give: the error's fragments,
or the images per class. Every load runs under a time limit, so a walk that never ends fails
the row instead of hanging the suite. ``LABELS`` are label columns whose values look numeric
in several ways: one number written several ways is refused, numbers mixed with text warn.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsft.cli.main import main
from rsft.data import DataConfig, DataError, DataWarning, load_split
from rsft.training.resume import path_digest

pytestmark = pytest.mark.usefixtures("isolated")

TIME_LIMIT = 30  # seconds; the loads here take well under one
PROCESS_LIMIT = 180  # seconds for a real `rsft train` process (most of it importing torch)
SRC = Path(__file__).resolve().parents[2] / "src"


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail the block with TimeoutError after ``seconds`` (the walks are Python loops, which
    the signal interrupts)."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    """``imgs``: cat/c0-c3.png, dog/d0-d3.png and a hidden store .pool/ (p0.png, dogs/q0.png);
    ``elsewhere``: birds/b0-b1.png and e.png, a dataset outside it."""
    root, out = tmp_path / "imgs", tmp_path / "elsewhere"
    names = [f"cat/c{i}.png" for i in range(4)] + [f"dog/d{i}.png" for i in range(4)]
    for seed, name in enumerate([*names, ".pool/p0.png", ".pool/dogs/q0.png"]):
        _image(root / name, seed)
    for seed, name in enumerate(["birds/b0.png", "birds/b1.png", "e.png"], start=20):
        _image(out / name, seed)
    return root, out


def _link(root: Path, out: Path, links: tuple[tuple[str, str], ...]) -> None:
    """Each (link, target): the link's path under ``root``; its target as the link holds it
    (relative to the link's folder), with ``$out`` for the folder outside."""
    for link, target in links:
        os.symlink(target.replace("$out", str(out)), root / link)


@dataclass(frozen=True)
class Folder:
    id: str
    links: tuple[tuple[str, str], ...]
    refused: tuple[str, ...] = ()  # fragments of the DataError ($root, $out: the folders)
    counts: tuple[tuple[str, int], ...] = ()  # else: the images per class
    follow_links: bool = False


def folder(id: str, links: list[tuple[str, str]], **kw) -> Folder:
    return Folder(
        id, tuple(links), **{k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    )


ABOVE = "a folder above it"
LOOP = ("cat/loop", "..")
TWO_LOOPS = (LOOP, ("dog/loop", ".."))
LOOP_REFUSED = ["$root/cat/loop is a link to $root,", ABOVE]
OPTION = "set data.follow_links: true"
FOLDERS = [
    folder("no-links", [], counts=[("cat", 4), ("dog", 4)]),
    folder("loop-to-root", [LOOP], refused=LOOP_REFUSED),
    folder(
        "loop-to-itself",
        [("cat/self", ".")],
        refused=["$root/cat/self is a link to $root/cat,", ABOVE],
    ),
    folder(
        "loop-above-the-folder",
        [("cat/up", "../..")],
        refused=["$root/cat/up is a link to", ABOVE],
    ),
    folder("loop-with-the-option", [LOOP], refused=LOOP_REFUSED, follow_links=True),
    folder(
        "link-to-a-sibling-class",
        [("cat/more", "../dog")],
        refused=["$root/cat/more is a link to $root/dog,", "read already as $root/dog", "twice"],
    ),
    folder(
        "class-folder-out",
        [("bird", "$out/birds")],
        refused=["$root/bird is a link to $out/birds, outside $root.", OPTION, "a class folder"],
    ),
    folder(
        "class-folder-out-allowed",
        [("bird", "$out/birds")],
        counts=[("bird", 2), ("cat", 4), ("dog", 4)],
        follow_links=True,
    ),
    folder(
        "file-link-out",
        [("cat/e.png", "$out/e.png")],
        refused=["$root/cat/e.png is a link to $out/e.png, outside $root.", OPTION],
    ),
    folder(
        "file-link-out-allowed",
        [("cat/e.png", "$out/e.png")],
        counts=[("cat", 5), ("dog", 4)],
        follow_links=True,
    ),
    # Links inside the folder are read where they sit: cat/d0.png is a cat, though it is
    # dog/d0.png's image; dog/more (a folder in the hidden store) adds one dog.
    folder(
        "links-inside",
        [
            ("cat/p0.png", "../.pool/p0.png"),
            ("dog/more", "../.pool/dogs"),
            ("cat/d0.png", "../dog/d0.png"),
        ],
        counts=[("cat", 6), ("dog", 5)],
    ),
]


@pytest.mark.parametrize("case", FOLDERS, ids=[c.id for c in FOLDERS])
def test_image_folder_links(case: Folder, tmp_path):
    root, out = _folders(tmp_path)
    _link(root, out, case.links)
    options = {"follow_links": True} if case.follow_links else {}
    cfg = DataConfig(resize=8, crop=8, **options)
    with time_limit(TIME_LIMIT):
        if case.refused:
            with pytest.raises(DataError) as err:
                load_split(root, cfg)
        else:
            split = load_split(root, cfg)
    if case.refused:
        for fragment in case.refused:
            expected = fragment.replace("$root", str(root)).replace("$out", str(out))
            assert expected in str(err.value), str(err.value)
        return
    assert Counter(split.classes[i] for i in split.labels.tolist()) == dict(case.counts)
    paths = split.column("path")
    assert len(set(paths)) == len(paths)  # each image once
    if case.id == "links-inside":
        labels = dict(zip(paths, (split.classes[i] for i in split.labels.tolist())))
        assert labels[str(root / "cat" / "d0.png")] == "cat"
        assert labels[str(root / "dog" / "more" / "q0.png")] == "dog"


def test_two_loops_end_with_an_error_line_of_rsft_train(tmp_path):
    """Two loops made the walk of the folder grow without end (and its memory with it): run
    as a real process, killed at the time limit if it does not end."""
    root, out = _folders(tmp_path)
    _link(root, out, TWO_LOOPS)
    args = ["train", "model.path=rsft.tasks.digits:DigitsNet", f"data.train={root}"]
    args += ["data.resize=8", "data.crop=8", f"output_dir={tmp_path / 'run'}", "progress=false"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "rsft.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_LIMIT,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    first = f"rsft train: error: {root}/cat/loop is a link to {root}, {ABOVE}"
    assert done.stderr.startswith(first), done.stderr[-3000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "links, changes",
    [
        pytest.param((("bird", "$out/birds"),), True, id="digest-of-a-linked-folder"),
        pytest.param(TWO_LOOPS, None, id="digest-of-a-loop"),
    ],
)
def test_the_data_digest_reads_the_folder_as_the_scan_does(links, changes, tmp_path):
    """The digest that tells a resumed run its data changed covers a linked folder's files
    (an edit there is seen), and refuses a loop instead of walking it."""
    root, out = _folders(tmp_path)
    _link(root, out, links)
    with time_limit(TIME_LIMIT):
        if changes is None:
            with pytest.raises(DataError, match=ABOVE):
                path_digest(root)
            return
        before = path_digest(root)
        with open(out / "birds" / "b0.png", "ab") as fh:  # an edit of a file behind the link
            fh.write(b"edited")
        assert path_digest(root) != before


# --- label spellings ----------------------------------------------------------------------


@dataclass(frozen=True)
class Labels:
    id: str
    values: tuple
    refused: tuple[str, ...] = ()  # fragments of the DataError
    warned: tuple[str, ...] = ()  # else fragments of the one DataWarning (none if empty)
    classes: tuple[str, ...] = ()  # the classes when it loads
    suffix: str = ".csv"


def labels(id: str, values: list, **kw) -> Labels:
    return Labels(
        id, tuple(values), **{k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    )


LABELS = [
    labels(
        "one-number-four-ways",
        ["1", "1", "1", "1.0", "1.0", "01", " 1", "one", "2", "2"],
        refused=[
            "'1' (3 rows), '1.0' (2 rows), '01' (1 row), ' 1' (1 row)",
            "are one number written 4 ways, so they would become 4 classes",
            "Write each class one way (e.g. all of these as '1')",
        ],
    ),
    labels(
        "one-number-two-ways-json",
        ["1", "1.0", "2", "2"],
        refused=["'1' (1 row), '1.0' (1 row)", "written 2 ways"],
        suffix=".jsonl",
    ),
    labels(
        "numbers-and-a-number-word",
        ["1", "1", "2", "2", "one"],
        warned=["mix numbers ('1' (2 rows), '2' (2 rows)) with text ('one' (1 row))", "spells"],
        classes=["1", "2", "one"],
    ),
    labels(
        "numbers-and-text",
        ["0", "1", "1", "unknown"],
        warned=["mix numbers ('0' (1 row), '1' (2 rows)) with text ('unknown' (1 row))"],
        classes=["0", "1", "unknown"],
    ),
    labels("integral-floats", [1.0, 2.0, 10.0, 2.0], classes=["1", "2", "10"]),
    labels(
        "zero-padded-numbers", ["001", "002", "010"], classes=["001", "002", "010"], suffix=".jsonl"
    ),
    labels("text-labels", ["cat", "dog", "cat"], classes=["cat", "dog"]),
]


def _label_table(path: Path, values: tuple) -> Path:
    rows = [{"x": float(i), "label": v} for i, v in enumerate(values)]
    if path.suffix == ".csv":
        path.write_text("x,label\n" + "".join(f"{r['x']},{r['label']}\n" for r in rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("case", LABELS, ids=[c.id for c in LABELS])
def test_label_spellings(case: Labels, tmp_path):
    path = _label_table(tmp_path / f"train{case.suffix}", case.values)
    cfg = DataConfig(feature_columns=["x"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if case.refused:
            with pytest.raises(DataError) as err:
                load_split(path, cfg)
            for fragment in case.refused:
                assert fragment in str(err.value), str(err.value)
            return
        split = load_split(path, cfg)
    assert split.classes == list(case.classes)
    found = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(found) == (1 if case.warned else 0), found
    for fragment in case.warned:
        assert fragment in found[0], found[0]


@pytest.mark.parametrize(
    "options, rc, line",
    [
        pytest.param(
            ["data.label_column=name"],
            2,
            "rsft train: error: values '1' (20 rows), '1.0' (20 rows) in column 'name' of ",
            id="train-label-spellings",
        ),
        pytest.param(
            ["rejection.weights=balance", "data.group_column=name"],
            2,
            "rsft train: error: values '1' (20 rows), '1.0' (20 rows) in column 'name' of ",
            id="train-group-spellings",
        ),
        pytest.param(
            ["data.label_column=word"],
            0,
            "rsft train: warning: the values in column 'word' of ",
            id="train-number-words",
        ),
    ],
)
def test_rsft_train_on_label_spellings(options, rc, line, tmp_path, capsys, three_class_table):
    """Through the command: one number in two spellings (as the labels, or as the balance
    groups) stops with an error line naming the column; a number word warns in one line."""
    classes = np.arange(60) % 3
    name = [["1", "1.0", "2"][c] for c in classes]  # class 0 spelled '1', class 1 '1.0'
    word = [["1", "one", "2"][c] for c in classes]
    table = three_class_table(tmp_path / "train.parquet", classes, 0, name=name, word=word)
    args = ["train", "model.path=rsft.tasks.digits:DigitsNet", "model.kwargs={width: 8}"]
    args += [f"data.train={table}", "data.feature_columns=[pixels]", "epochs=1"]
    args += ["batch_size=16", "progress=false", f"output_dir={tmp_path / 'run'}", *options]
    assert main(args) == rc
    err = capsys.readouterr().err
    assert line in err, err
    if rc == 0:
        assert "spells" in err and len(err.strip().splitlines()) == 1, err
    else:
        assert "so they would become 2" in err and not (tmp_path / "run" / "results.json").exists()
