"""One writer per output folder: ``<output_dir>/.rsft.lock``, held while a run writes there.

Two runs on one ``output_dir`` corrupt each other: one renames ``model.partial`` while the
other writes it, a checkpoint's ``optimizer.pt`` vanishes under the other's save. So each
command (``FineTuner.train``, ``RFTPipeline.run``, ``run_compare``) holds an exclusive
``fcntl.flock`` on this file while it writes, and a second run stops with
:class:`OutputLockedError` (exit code 2) naming the holder: its PID, host, command and start
time, which the holder writes into the file. Under accelerate only the main process takes
it (the ranks of one run write together); child processes a run starts (the SFT stage's
``accelerate launch``) write under their parent's lock and take none.

The kernel releases a flock when the file is closed, however its process ends (SIGKILL
included), so a killed run never blocks its rerun: the file it leaves behind is taken over.
A run that ends removes the file. A process forked while the lock is held (a DataLoader
worker) shares it, so it is released when the last of them exits.

Where it does not work: without ``fcntl`` (Windows) nothing is locked, and keeping two runs
apart is the user's job, as before. A filesystem that refuses flock (some network mounts
answer ENOLCK or EOPNOTSUPP) gets an :class:`OutputLockWarning` and the run goes on unlocked.
A network filesystem that grants flock locally only (NFS mounted with ``nolock``, some SMB
mounts) keeps apart the runs of one machine but not those of two.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rsft.config import ConfigError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".rsft.lock"
"""The lock file in an output folder: never part of a run's results (checks of whether a
folder is empty or holds a finished run must ignore it)."""


class OutputLockedError(ConfigError):
    """Another rsft run is writing the output folder."""


class OutputLockWarning(UserWarning):
    """The output folder's filesystem cannot lock files: the run goes on unlocked."""


def _holder(fd: int, output_dir: Path) -> OutputLockedError:
    """The error naming the run that holds the lock, from what it wrote into the file."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        who = f"PID {info['pid']} on {info['host']}, `{info['command']}`, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):  # it has just locked, not yet written
        who = "it has not written its PID yet"
    return OutputLockedError(
        f"{output_dir} is being written by another rsft run ({who}): wait for it to finish "
        "or use another output_dir."
    )


def _unsupported(output_dir: Path, err: OSError) -> None:
    warnings.warn(
        f"the filesystem of {output_dir} cannot lock files ({err.strerror or err}), so rsft "
        "cannot tell whether another run writes there too: make sure none does.",
        OutputLockWarning,
        stacklevel=3,
    )


def check_unlocked(output_dir: str | Path) -> None:
    """Raise :class:`OutputLockedError` if a run holds ``output_dir``'s lock now: a cheap
    look before a run loads anything, so a second run stops before its work, not after.
    Changes nothing (a missing lock file stays missing)."""
    output_dir = Path(output_dir).expanduser()
    if fcntl is None:
        return
    try:
        fd = os.open(output_dir / LOCK_NAME, os.O_RDONLY)
    except OSError:  # no lock file (or none readable): nobody holds it
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _holder(fd, output_dir) from None
    except OSError:
        return  # this filesystem cannot lock: OutputLock warns when the run takes it
    finally:
        os.close(fd)


class OutputLock:
    """The exclusive lock of one output folder (see the module docstring)."""

    def __init__(self, output_dir: str | Path, command: str) -> None:
        self.output_dir = Path(output_dir).expanduser()
        self.path = self.output_dir / LOCK_NAME
        self.command = command
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`OutputLockedError` naming its holder."""
        if fcntl is None:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                error = _holder(fd, self.output_dir)
                os.close(fd)
                raise error from None
            except OSError as err:
                os.close(fd)
                _unsupported(self.output_dir, err)
                return
            if self._still_there(fd):
                break
            os.close(fd)  # its holder finished and removed the file after it was opened
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started": datetime.datetime.now().astimezone().isoformat(" ", "seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self.fd = fd

    def _still_there(self, fd: int) -> bool:
        """Whether the locked file is still the one at :attr:`path` (not removed meanwhile)."""
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Remove the file, then unlock: a run that opened it meanwhile sees it gone."""
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


@contextlib.contextmanager
def output_lock(output_dir: str | Path, command: str, accelerator: Any = None) -> Iterator[None]:
    """Hold ``output_dir``'s lock for the block. With an ``accelerator`` only its main
    process takes it, and every process raises when it is taken (so no rank waits for a
    main process that stopped)."""
    lock = OutputLock(output_dir, command)
    message = None
    if accelerator is None or accelerator.is_main_process:
        try:
            lock.acquire()
        except OutputLockedError as err:
            message = str(err)
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        message = broadcast_object_list([message])[0]
    if message is not None:
        raise OutputLockedError(message)
    try:
        yield
    finally:
        lock.release()
