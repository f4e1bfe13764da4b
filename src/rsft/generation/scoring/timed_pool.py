"""Run a function over many items in worker processes, each item within a time limit.

A verifier can hang: math-verify on ``\\frac{1}{9^{9^{9^{9}}}}`` computes a number with more
digits than atoms in the universe, inside C code that no signal or thread can interrupt. The
only limit that always works is a process that is killed. So :class:`TimedPool` keeps a few
worker processes, hands each a chunk of items (many per message, so normal work stays cheap),
and watches the time since each worker's last answer: a worker past the limit is killed, its
current item is reported as timed out, and a fresh worker takes over the rest of its chunk.

Workers come from the ``forkserver`` start method where the platform has it (a clean process,
forked from a server that has already imported rsft, so a restart costs milliseconds), else
``spawn``; never a plain ``fork`` of a process that may hold threads and a model.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from rsft.processes import die_with_parent

# Imported once by the fork server, so that workers start without importing them again
# (verifiers; the tokenizer a chat template check unpickles, see templates.py).
PRELOAD = [
    "rsft.generation.scoring.verifiers",
    "math_verify",
    "transformers.tokenization_utils_tokenizers",
    "transformers.utils.chat_template_utils",
]
STARTUP_TIMEOUT = 120.0  # seconds a worker may take to import and build its function


class Timeout:
    """Stands for an item whose call ran past the limit (its worker was killed)."""


TIMED_OUT = Timeout()


def error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when its parent dies, even while it hangs.

    A hung worker cannot notice anything itself (the GIL is held by C code). Its parent is
    the fork server, which exits once the rsft process is gone, provided no worker keeps the
    rsft process's liveness pipe open: a forkserver child inherits it, so close it here.
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if alive_fd is not None:
        with contextlib.suppress(OSError):
            os.close(alive_fd)
        server._forkserver_alive_fd = None  # type: ignore[union-attr]
    die_with_parent(signal.SIGKILL)


def _serve(conn: Connection, build: bytes, sys_path: list[str]) -> None:
    """A worker: build the function, then answer ``(index, value, error)`` item by item."""
    _die_with_parent()
    sys.path[:] = sys_path  # the parent's path: its modules may have been added after start-up
    try:
        fn = pickle.loads(build)()
    except BaseException as err:
        conn.send(("failed", error_text(err)))
        return
    conn.send(("ready",))
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for index, args in chunk:
            try:
                conn.send((index, fn(*args), None))
            except Exception as err:  # one bad item fails that item only
                conn.send((index, None, error_text(err)))


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)  # only used when the server is not running yet
        return ctx
    return multiprocessing.get_context("spawn")


class _Worker:
    def __init__(self, ctx: multiprocessing.context.BaseContext, build: bytes) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, build, list(sys.path)), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.pending: deque[int] = deque()  # sent (or to send once ready), in order
        self.since = time.monotonic()

    def send(self, items: Sequence[tuple]) -> None:
        self.conn.send([(i, items[i]) for i in self.pending])
        self.since = time.monotonic()

    def stop(self) -> None:
        """Kill the worker: it holds no state worth a graceful exit, and it may be hung."""
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.conn.close()


class TimedPool:
    """``workers`` processes calling ``build()(*item)`` for each item, ``timeout`` s per item.

    ``build`` is a picklable callable that returns the function inside the worker (so the
    function itself need not be picklable: a verifier is rebuilt from its recipe). ``task``
    names the work in errors ("scoring took longer than 3 s").
    """

    def __init__(
        self,
        build: Callable[[], Callable[..., Any]],
        *,
        workers: int,
        timeout: float,
        task: str = "scoring",
    ) -> None:
        if workers < 1 or not timeout > 0:
            raise ValueError(f"workers must be >= 1 and timeout > 0, got {workers}, {timeout}.")
        self.build = pickle.dumps(build)
        self.workers = workers
        self.timeout = timeout
        self.task = task
        self.restarts = 0

    def run(self, items: Sequence[tuple]) -> Iterator[tuple[int, Any, str | None]]:
        """Yield ``(index, value, error)`` per item as they finish; ``value`` is
        :data:`TIMED_OUT` for an item that ran past the limit."""
        n = len(items)
        if n == 0:
            return
        size = max(1, min(256, -(-n // (4 * self.workers))))
        todo = deque(range(start, min(start + size, n)) for start in range(0, n, size))
        pool = [_Worker(_context(), self.build) for _ in range(min(self.workers, len(todo)))]
        try:
            while True:
                for w in pool:
                    if w.ready and not w.pending and todo:
                        w.pending.extend(todo.popleft())
                        w.send(items)
                busy = [w for w in pool if w.pending or not w.ready]
                if not busy:
                    return
                first = min(self._deadline(w) for w in busy)
                answered = wait([w.conn for w in busy], max(0.0, first - time.monotonic()))
                for k, w in enumerate(pool):
                    if w.conn in answered:
                        result = self._receive(w, items)
                    elif w in busy and time.monotonic() >= self._deadline(w):
                        result = self._expire(w)
                    else:
                        continue
                    if not w.proc.is_alive() or result is not None and result[1] is TIMED_OUT:
                        w.stop()
                        pool[k] = self._restart(w) if w.pending or todo else None
                    if result is not None:
                        yield result
                pool = [w for w in pool if w is not None]
        finally:
            for w in pool:
                if w is not None:
                    w.stop()

    def _deadline(self, w: _Worker) -> float:
        return w.since + (self.timeout if w.ready else STARTUP_TIMEOUT)

    def _receive(self, w: _Worker, items: Sequence[tuple]) -> tuple | None:
        """The worker's next message: a result, or None (it is ready, or it died starting)."""
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):  # the worker died: a crash inside the function
            w.proc.join()
            if not w.ready:
                raise RuntimeError(
                    f"a {self.task} worker exited while starting (exit code "
                    f"{w.proc.exitcode}). Workers are new processes that import the main "
                    "module: a script that scores with a timeout (or runs rsft rft) must do "
                    "it under `if __name__ == '__main__':`."
                ) from None
            index = w.pending.popleft()
            return index, None, f"the worker process died (exit code {w.proc.exitcode})"
        if msg[0] == "failed":
            raise RuntimeError(f"a {self.task} worker could not build its function: {msg[1]}")
        if msg[0] == "ready":
            w.ready = True
            w.since = time.monotonic()
            if w.pending:  # items taken over from a worker that was replaced
                w.send(items)
            return None
        index, value, error = msg
        assert w.pending and w.pending[0] == index, "a worker answers in order"
        w.pending.popleft()
        w.since = time.monotonic()
        return index, value, error

    def _expire(self, w: _Worker) -> tuple:
        if not w.ready:
            raise RuntimeError(f"a {self.task} worker did not start within {STARTUP_TIMEOUT:g} s.")
        index = w.pending.popleft()
        return index, TIMED_OUT, f"TimeoutError: {self.task} took longer than {self.timeout:g} s"

    def _restart(self, w: _Worker) -> _Worker:
        """A fresh worker that takes over what the stopped ``w`` had left."""
        self.restarts += 1
        fresh = _Worker(_context(), self.build)
        fresh.pending = w.pending
        return fresh
