"""Write files atomically: readers see the old file or the new one, never half of one.

Results, checkpoint pointers and manifests all go through here, so a run killed at any
moment leaves nothing truncated behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


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
