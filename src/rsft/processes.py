"""Child processes that never outlive rsft: the parent-death signal and group shutdown.

Engines, launched fine-tuning stages and verifier workers all run as child processes. Each
asks Linux to signal it when its parent dies (``PR_SET_PDEATHSIG``), so a SIGKILLed rsft
leaves nothing running, and each group is stopped as one: SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL, expected_parent: int | None = None) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux; elsewhere,
    or without libc, a no-op). When the parent is already gone (``expected_parent`` no longer
    the parent), exit at once."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)


def own_group_dying_with_parent() -> None:
    """A ``preexec_fn``: a process group of its own (stopped as one, spared the terminal's
    Ctrl-C) that gets SIGTERM when rsft dies, so it can stop its own children cleanly."""
    os.setsid()
    die_with_parent(signal.SIGTERM)


def kill_group(proc: subprocess.Popen, grace: float = 10.0, kill_wait: float = 5.0) -> None:
    """SIGTERM the child's process group, SIGKILL what is left after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, kill_wait)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group may outlive its leader


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
