"""Progress output that reads well on a terminal and in a log file alike.

On a terminal, long loops show tqdm bars. Anywhere else (output sent to a file, a pipe, a CI
log) a bar's carriage returns would flood the log, so the same loop prints a plain line now
and then instead: every :data:`LINE_EVERY_S` seconds, or one line per item for loops whose
items are long (``rsft compare``'s runs). Lines that belong in every log (one per epoch, one
per round) go through :func:`say`.

The ``progress`` option of ``rsft train``, ``compare`` and ``rft`` (:data:`Progress`):

- ``true``: bars on a terminal (plain lines elsewhere), and the per-epoch lines;
- ``false``: no bars and no periodic lines; the per-epoch lines stay;
- ``quiet``: nothing at all.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Literal, TextIO

from tqdm.auto import tqdm

Progress = bool | Literal["quiet"]
PROGRESS_HELP = (
    "true: progress bars on a terminal (a plain line now and then when the output goes to a "
    "file or pipe) and a line per {unit}; false: no bars, still a line per {unit}; quiet: "
    "nothing."
)

# How often a loop that is not on a terminal reports where it is, in seconds.
LINE_EVERY_S = 30.0


def _in_notebook() -> bool:
    """True in a Jupyter kernel, where tqdm.auto draws a widget rather than a text bar."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None  # type: ignore[attr-defined]
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def interactive(stream: TextIO | None = None) -> bool:
    """Whether bars can be drawn: ``stream`` (default stderr, where bars go) is a terminal,
    or this is a notebook."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty()) or _in_notebook()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def shows_bars(progress: Progress) -> bool:
    """Whether a loop may draw bars: ``progress: true`` and a terminal."""
    return progress is True and interactive()


def says_lines(progress: Progress) -> bool:
    """Whether the per-epoch (per-round) lines are printed: anything but ``quiet``."""
    return progress != "quiet"


def say(message: str) -> None:
    """Print a line for the log (stdout), without breaking a bar drawn on the terminal."""
    tqdm.write(message)
    sys.stdout.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class PlainProgress:
    """The part of tqdm's interface rsft uses, printing plain lines instead of a bar.

    ``per_item``: one line per finished item; otherwise a line when ``every`` seconds have
    passed since the last one, and a last line at the end if any line was printed (so a
    short loop prints nothing). Lines go to stderr, where a bar would have been.
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        desc: str = "",
        total: int | None = None,
        unit: str = "it",
        initial: int = 0,
        per_item: bool = False,
        every: float | None = None,
        show: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.desc, self.total, self.unit, self.n = desc, total, unit, initial
        self.per_item, self.show = per_item, show
        self.every = LINE_EVERY_S if every is None else every
        self.stream = stream
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.printed_at: int | None = None

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.total or 0

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.per_item or now - self.last >= self.every:
            self._line(now)

    def close(self) -> None:
        if not self.per_item and self.printed_at is not None and self.printed_at != self.n:
            self._line(time.monotonic())

    def line(self) -> str:
        """Where the loop is: ``desc n/total unit (pct): postfix [elapsed]``."""
        count = f"{self.n}" if self.total is None else f"{self.n}/{self.total}"
        text = f"{self.desc} {count} {self.unit}".strip()
        if self.total:
            text += f" ({self.n / self.total:.0%})"
        if self.postfix:
            text += f": {self.postfix}"
        return f"{text} [{_duration(time.monotonic() - self.start)}]"

    def _line(self, now: float) -> None:
        self.last, self.printed_at = now, self.n
        if self.show:
            stream = self.stream or sys.stderr
            stream.write(self.line() + "\n")
            stream.flush()


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str = "",
    total: int | None = None,
    unit: str = "it",
    initial: int = 0,
    show: bool = True,
    per_item: bool = False,
    leave: bool = False,
) -> Any:
    """A tqdm bar on a terminal; a :class:`PlainProgress` elsewhere (silent if not ``show``).

    ``per_item``: when not on a terminal, print a line for every finished item (for loops
    over a few long items); otherwise a line every :data:`LINE_EVERY_S` seconds. ``leave``:
    keep the finished bar on the terminal.
    """
    if show and interactive():
        return tqdm(iterable, desc=desc, total=total, unit=unit, initial=initial, leave=leave)
    return PlainProgress(
        iterable, desc=desc, total=total, unit=unit, initial=initial, per_item=per_item, show=show
    )


def quiet_library_bars() -> None:
    """Turn off the bars of datasets, transformers and huggingface_hub (dataset map,
    weight loading, GGUF conversion): when the output is not a terminal they would write
    carriage returns into the log."""
    import datasets
    import huggingface_hub.utils
    from transformers.utils import logging as tf_logging

    datasets.disable_progress_bars()
    huggingface_hub.utils.disable_progress_bars()
    tf_logging.disable_progress_bar()
