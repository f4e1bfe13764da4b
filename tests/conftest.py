"""Fixtures every test folder can use."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

import pytest


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; fail if it exits or times out first."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "process exited"
        assert time.time() < deadline, f"not ready after {timeout} s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture
def killer():
    """``kill_when(proc, ready)``: kill a real process at a chosen moment (resume tests)."""
    return kill_when
