"""Write files atomically: readers see the old file or the new one, never half of one.

Results, checkpoint pointers and manifests all go through here, so a run killed at any
moment leaves nothing truncated behind. A full disk is one error line naming the file
(:class:`DiskFullError`), raised by these writers and by the other saves wrapped in
:func:`writing`: the run resumes when it is started again after space is freed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
LOW_SPACE = 16 * 2**20  # bytes free below which a failed write is taken for a full disk
# What torch.save's C++ writer says when a write to a path fails: it keeps no errno.
TORCH_WRITE_FAILED = ("inline_container", "PytorchStreamWriter", "iostream error")


class DiskFullError(RuntimeError):
    """A file could not be written: its disk, or the user's quota, is full."""


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    """``err`` and the exceptions it was raised from or while handling."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _free_bytes(path: Path) -> float:
    """Free space on the disk that holds ``path`` (or its nearest existing parent)."""
    for folder in (path, *path.parents):
        if folder.exists():
            with contextlib.suppress(OSError):
                return shutil.disk_usage(folder).free
            break
    return float("inf")


def is_disk_full(err: BaseException, path: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``err``, raised while writing ``path``, means that its disk or quota is full.

    Python says so with an OSError (ENOSPC, EDQUOT), maybe as the cause of a library's own
    error; safetensors (Rust) names the OS error in its message; torch.save given a path only
    says that the write failed, which a disk left without space explains.
    """
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            return True
        if any(f"(os error {code})" in str(e) for code in DISK_FULL):
            return True
    torch_write = isinstance(err, RuntimeError) and any(m in str(err) for m in TORCH_WRITE_FAILED)
    return torch_write and path is not None and _free_bytes(Path(path)) < LOW_SPACE


def disk_full_error(path: str | os.PathLike[str] | None, err: BaseException) -> DiskFullError:
    """The error line of a full disk: which file, and that a rerun resumes."""
    path = path or next(
        (e.filename for e in _chain(err) if isinstance(e, OSError) and e.filename), None
    )
    where = f"writing {path}" if path else "writing a file"
    return DiskFullError(
        f"no space left on the disk (or over the disk quota) while {where}. Free some space, "
        "then run the same command again: it resumes from what was saved completely (a "
        "half-written file is never used)."
    )


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Raise :class:`DiskFullError` naming ``path`` when its disk fills up meanwhile."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as err:
        if not is_disk_full(err, path):
            raise
        raise disk_full_error(path, err) from err


def default_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the umask (0644 under umask 022)."""
    try:  # Linux: read it without changing it (os.umask would briefly change it for all threads)
        status = Path("/proc/self/status").read_text()
        mask = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o22)
        os.umask(mask)
    return 0o666 & ~mask


def share_files(folder: str | os.PathLike[str]) -> None:
    """Give every file under ``folder`` the usual mode (:func:`default_file_mode`).

    Writers that write a private temporary file and rename it into place (safetensors does,
    so does :func:`atomic_target`) leave it 0600: a saved model others cannot read.
    """
    mode = default_file_mode()
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (new files, renames) to disk; POSIX only, elsewhere a no-op."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it replaces ``path`` in one rename.

    Same directory so ``os.replace`` is a rename on one filesystem (atomic on POSIX): readers
    see either the old complete file or the new one, never a half-written result.
    """
    target = Path(path)
    with writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            # mkstemp makes 0600 files; results are meant to be shared, so keep the old mode
            # when replacing a file and give a new one the usual mode (the umask's).
            mode = target.stat().st_mode & 0o777 if target.exists() else default_file_mode()
            os.chmod(tmp, mode)
            os.replace(tmp, target)
            fsync_dir(target.parent)  # the rename itself survives a power loss
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (temp file + fsync + ``os.replace``).

    An interrupted run (Ctrl-C, OOM kill) then never leaves a truncated results file that a
    later ``compare`` or a reader would trust. Text is written verbatim (no newline
    translation). Returns the path written.
    """
    target = Path(path)
    with atomic_target(target) as tmp:
        with open(tmp, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    return target


def atomic_write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> Path:
    """Write one JSON object per line, atomically (the generation level's data files)."""
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike[str]) -> list[Any]:
    """The rows of a JSON-lines file (blank lines skipped): what atomic_write_jsonl wrote."""

    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
