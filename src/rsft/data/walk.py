"""Walk a folder the way rsft reads it: every file once, links checked before they are used.

``os.walk(followlinks=True)`` follows a link to a folder above it (``cat/loop -> ..``) again
and again until the path is too long to resolve: 8 images became 328, the dog images read
as cats, and with two such links the walk never ends. Without ``followlinks`` it drops
linked folders silently. :func:`walk_files` follows links, refuses a folder it reaches a
second time (a loop, or a link to a folder it reads anyway), naming the link and its
target, and with ``follow_links=False`` refuses a link that leads out of the folder.
Folders are told apart by (device, inode), so no path is resolved twice to find a loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rsft.data.validate import DataError

# The option that lets an image folder's links lead out of it (see DataConfig).
FOLLOW_LINKS = "data.follow_links"


def _everything(name: str) -> bool:
    return True


def _identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)  # follows links: the folder a link leads to
    return st.st_dev, st.st_ino


def _within(path: str, folder: str) -> bool:
    """Whether the resolved ``path`` is ``folder`` or lies below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _loop(link: Path) -> DataError | None:
    """The error for ``link`` if it leads to a folder above it (or to its own folder)."""
    target = os.path.realpath(link)
    if not _within(os.path.realpath(link.parent), target):
        return None
    return DataError(
        f"{link} is a link to {target}, a folder above it: reading it would read the same "
        "images again and again, each time one folder deeper (under the wrong class), without "
        "end. Remove the link."
    )


def _reached_twice(folder: Path, first: Path) -> DataError:
    """The error for ``folder``, which is the folder already read as ``first``."""
    swap = first.is_symlink() and not folder.is_symlink()
    link, other = (first, folder) if swap else (folder, first)
    return _loop(link) or DataError(
        f"{link} is a link to {os.path.realpath(link)}, a folder that is read already as "
        f"{other}: its images would be read twice, once under each path (and class folder). "
        "Remove the link, or keep only one of the two."
    )


def _check_inside(link: Path, real_root: str, root: Path) -> None:
    target = os.path.realpath(link)
    if _within(target, real_root):
        return
    raise _loop(link) or DataError(
        f"{link} is a link to {target}, outside {root}. rsft follows links that lead out of "
        f"the folder only when asked: set {FOLLOW_LINKS}: true if the data there belongs to "
        "this folder (e.g. a class folder that is a link to a dataset elsewhere), or remove "
        "the link."
    )


def walk_files(
    root: Path,
    *,
    follow_links: bool = True,
    keep_dir: Callable[[str], bool] = _everything,
    keep_file: Callable[[str], bool] = _everything,
) -> list[Path]:
    """Every file under ``root`` whose name ``keep_file`` keeps, in folders ``keep_dir``
    keeps, in ``os.walk`` order (a folder's files by name, then its subfolders by name).

    Links inside ``root`` are followed; links out of it only with ``follow_links``, else a
    kept file or folder that is such a link is a :class:`DataError` naming it. A folder
    reached twice (a link to a folder above it, or to one read anyway) is always one.
    """
    real_root = os.path.realpath(root)
    seen: dict[tuple[int, int], Path] = {}
    files: list[Path] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        key = _identity(folder)
        if key in seen:
            raise _reached_twice(folder, seen[key])
        seen[key] = folder
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            raise DataError(
                f"cannot list folder {folder} ({err.strerror or err}); make it readable, or "
                "remove it."
            ) from err
        subfolders = []
        for entry in entries:
            is_dir = entry.is_dir()  # follows links
            if not (keep_dir if is_dir else keep_file)(entry.name):
                continue
            path = Path(entry.path)
            if not follow_links and entry.is_symlink():
                _check_inside(path, real_root, root)
            (subfolders if is_dir else files).append(path)
        stack.extend(reversed(subfolders))
    return files
