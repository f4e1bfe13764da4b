"""Resolve a user's object named by import path ("package.module:name"), never by eval."""

from __future__ import annotations

import importlib
from typing import Any


def import_object(path: str, what: str = "object") -> Any:
    """Import ``package.module:attr`` (or ``package.module.attr``) and return the attribute.

    ``what`` names the role in error messages ("weight function", "model class", ...).
    """
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"{what} must be an import path like 'my_pkg.my_module:my_fn'.")
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(
            f"{what} {path!r} is not an import path: write it as 'my_pkg.my_module:my_name'."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"cannot import module {module_name!r} for {what} {path!r}: {err}. Check the "
            "spelling and that the module is installed or on PYTHONPATH."
        ) from err
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module_name!r} has no {part!r} (from {what} {path!r}).")
        obj = getattr(obj, part)
    return obj
