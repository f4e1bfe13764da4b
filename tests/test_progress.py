"""Progress output: bars on a terminal, plain lines (no carriage returns) anywhere else."""

from __future__ import annotations

import io
from itertools import chain, repeat

import pytest
from tqdm.auto import tqdm

from rsft import progress
from rsft.config import ConfigError, from_dict
from rsft.generation import RFTConfig
from rsft.progress import PlainProgress, interactive, progress_bar, says_lines
from rsft.training import TrainConfig


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Closed(io.StringIO):
    def isatty(self) -> bool:
        raise ValueError("I/O operation on closed file")


def test_interactive_follows_the_stream():
    assert interactive(Terminal())
    assert not interactive(io.StringIO())
    assert not interactive(Closed())
    assert not interactive(object())  # no isatty at all


def test_a_terminal_gets_a_tqdm_bar_a_log_gets_plain_lines(monkeypatch):
    monkeypatch.setattr(progress.sys, "stderr", Terminal())
    bar = progress_bar(range(3), desc="epoch 1")
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.setattr(progress.sys, "stderr", io.StringIO())
    assert isinstance(progress_bar(range(3), desc="epoch 1"), PlainProgress)


def test_plain_lines_now_and_then_never_a_carriage_return(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", log)
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)  # every update is "long enough"
    bar = progress_bar(range(4), desc="epoch 2/3", unit="steps")
    for _ in bar:
        bar.set_postfix(loss="0.5000")
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0].startswith("epoch 2/3 1/4 steps (25%): loss=0.5000 [")
    assert lines[-1].startswith("epoch 2/3 4/4 steps (100%)")
    assert len(lines) == 4


def test_a_short_loop_prints_nothing_in_a_log(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", log)
    for _ in progress_bar(range(100), desc="epoch 1"):
        pass
    assert log.getvalue() == ""


def test_a_long_loop_ends_with_a_last_line(monkeypatch):
    """A line was printed mid-loop, so the log also shows where the loop ended."""
    log = io.StringIO()
    clock = chain([0.0, 0.0], repeat(31.0))  # start, the first item; later items: 31 s on
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = PlainProgress(range(3), desc="score", unit="candidates", stream=log)
    list(bar)
    lines = log.getvalue().splitlines()
    assert [line.split(" [")[0] for line in lines] == [
        "score 2/3 candidates (67%)",
        "score 3/3 candidates (100%)",
    ]


def test_per_item_prints_one_line_per_finished_item(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", log)
    bar = progress_bar(["a", "b"], desc="compare", unit="runs", per_item=True)
    for name in bar:
        bar.set_postfix_str(f"{name}: done")
    assert [line.split(" [")[0] for line in log.getvalue().splitlines()] == [
        "compare 1/2 runs (50%): a: done",
        "compare 2/2 runs (100%): b: done",
    ]


def test_show_false_is_silent_everywhere(monkeypatch):
    for stream in (Terminal(), io.StringIO()):
        monkeypatch.setattr(progress.sys, "stderr", stream)
        monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
        bar = progress_bar(range(3), desc="x", show=False, per_item=True)
        assert isinstance(bar, PlainProgress)
        list(bar)
        assert stream.getvalue() == ""


@pytest.mark.parametrize("cls", [TrainConfig, RFTConfig])
def test_progress_option_takes_true_false_and_quiet(cls):
    base = (
        {"model": {"path": "m:M"}, "data": {"train": "t.csv"}}
        if cls is TrainConfig
        else {"model": {"path": "m"}, "data": {"train": "t.jsonl", "eval": "e.jsonl"}}
    )
    for value in (True, False, "quiet"):
        assert from_dict(cls, {**base, "progress": value}).progress == value
    with pytest.raises(ConfigError, match=r"progress: expected bool \| 'quiet', got 'loud'"):
        from_dict(cls, {**base, "progress": "loud"})
    assert says_lines(True) and says_lines(False) and not says_lines("quiet")
