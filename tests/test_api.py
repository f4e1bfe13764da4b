"""The Python API: the main names importable from ``rsft``, cheaply, and visible to IDEs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import rsft

INIT = Path(rsft.__file__)


def test_the_main_names_are_importable_from_rsft():
    from rsft import Callback, Metropolis, RFTConfig, RFTPipeline, rejection_sample

    assert RFTPipeline.__module__ == "rsft.generation.pipeline"
    assert (Callback.__name__, Metropolis.__name__, RFTConfig.__name__) == (
        "Callback",
        "Metropolis",
        "RFTConfig",
    )
    assert callable(rejection_sample)


def test_every_exported_name_resolves_and_dir_lists_it():
    for name in rsft.__all__:
        assert getattr(rsft, name) is not None, name
    assert set(rsft.__all__) <= set(dir(rsft))
    assert set(rsft.__all__) - {"__version__"} == set(rsft._API)


def test_type_checkers_see_every_name():
    """Each lazily imported name is also imported under TYPE_CHECKING, from its module."""
    tree = ast.parse(INIT.read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.dump(n))
    seen = {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert seen == rsft._API


def test_the_package_is_marked_typed():
    assert (INIT.parent / "py.typed").is_file()


def test_import_rsft_loads_neither_torch_nor_a_level():
    heavy = "('torch', 'rsft.generation', 'rsft.training')"
    code = f"import sys, rsft; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
