"""docs/reliability.md names every case of the reliability suite, and no other.

The page is what a reviewer reads: one section per test file of this folder, each with a
table whose rows start with a case id in backticks and end with its status ("new" or "held
before"), and a totals table at the top. A case id is a test's parametrize id, or the test
function's name when it is not parametrized. These tests read the ids from the test modules
(their parametrize marks, without running pytest's collection) and fail when the page misses
one, names one that is gone, or has totals that disagree with its rows. The slow test checks
that reading against pytest's own collection.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PAGE = ROOT / "docs" / "reliability.md"
STATUSES = ("new", "held before")
_PARAM = type(pytest.param(None))  # what pytest.param returns


def _test_files() -> list[Path]:
    return sorted(p for p in HERE.glob("test_*.py") if p.name != Path(__file__).name)


def _module(path: Path) -> ModuleType:
    """The test module at ``path``: the one pytest imported, else a fresh import."""
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == str(path):
            return module
    name = f"_reliability_index_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it runs
        spec.loader.exec_module(module)
    return sys.modules[name]


def _param_ids(test: str, mark: pytest.Mark) -> list[str]:
    """The ids pytest gives the cases of one parametrize mark; explicit ones only."""
    argnames = mark.args[0] if mark.args else mark.kwargs["argnames"]
    values = mark.args[1] if len(mark.args) > 1 else mark.kwargs["argvalues"]
    ids = mark.kwargs.get("ids")
    if isinstance(argnames, str):
        argnames = [a for a in re.split(r"\s*,\s*", argnames.strip()) if a]
    single = len(argnames) == 1
    found = []
    for i, value in enumerate(values):
        if isinstance(value, _PARAM) and value.id is not None:
            found.append(value.id)
        elif isinstance(ids, (list, tuple)):
            found.append(ids[i])
        elif callable(ids) and single:
            found.append(ids(value.values[0] if isinstance(value, _PARAM) else value))
        else:
            pytest.fail(
                f"{test}: give its cases explicit ids (ids=[...] or pytest.param(id=...)), "
                "so that docs/reliability.md can name each one"
            )
    return found


def suite_ids(path: Path) -> list[str]:
    """The case ids of one test file, in the order they are defined."""
    ids = []
    for name, fn in vars(_module(path)).items():
        if not (name.startswith("test") and inspect.isfunction(fn)):
            continue
        marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
        assert len(marks) <= 1, f"{name}: one parametrize per test, so each case has one id"
        ids += _param_ids(name, marks[0]) if marks else [name]
    repeated = [i for i, n in Counter(ids).items() if n > 1]
    assert not repeated, f"{path.name}: ids {repeated} name more than one test; rename them"
    return ids


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def page_sections() -> dict[str, list[tuple[str, str]]]:
    """Test file name -> (case id, status) of each row of its section's table."""
    sections = re.split(r"^## ", PAGE.read_text(), flags=re.MULTILINE)[1:]
    found: dict[str, list[tuple[str, str]]] = {}
    for text in sections:
        files = set(re.findall(r"tests/reliability/(test_\w+\.py)", text))
        assert len(files) == 1, f"section {text.splitlines()[0]!r} names {files or 'no'} file"
        rows = [_cells(line) for line in text.splitlines() if line.startswith("| `")]
        found[files.pop()] = [(cells[0].strip("`"), cells[-1]) for cells in rows]
    return found


def page_totals() -> dict[str, tuple[int, int, int]]:
    """The totals table: test file name (or "all") -> (cases, new, held before)."""
    totals = {}
    head = PAGE.read_text().split("\n## ", 1)[0]
    for line in head.splitlines():
        cells = _cells(line) if line.startswith("|") else []
        if len(cells) == 5 and cells[2].isdigit():
            key = cells[1].strip("`") or cells[0]
            totals[key] = (int(cells[2]), int(cells[3]), int(cells[4]))
    return totals


@pytest.mark.parametrize("path", _test_files(), ids=lambda p: p.name)
def test_the_page_lists_each_case_of_the_file(path):
    rows = page_sections().get(path.name)
    assert rows is not None, f"docs/reliability.md has no section for {path.name}"
    listed = [case for case, _ in rows]
    ids = suite_ids(path)
    missing = [i for i in ids if i not in listed]
    gone = [i for i in listed if i not in ids]
    assert not missing, f"docs/reliability.md lacks these cases of {path.name}: {missing}"
    assert not gone, f"docs/reliability.md lists cases {path.name} no longer has: {gone}"
    twice = [i for i, n in Counter(listed).items() if n > 1]
    assert not twice, f"docs/reliability.md lists {twice} more than once"


def test_each_row_has_a_status_and_the_totals_add_up():
    sections = page_sections()
    assert set(sections) == {p.name for p in _test_files()}, "a section names no test file"
    totals = page_totals()
    counted = {}
    for name, rows in sections.items():
        statuses = [status for _, status in rows]
        odd = [(case, s) for case, s in rows if not s.startswith(STATUSES)]
        assert not odd, f"{name}: the status column must start with {STATUSES}: {odd}"
        new = sum(s.startswith("new") for s in statuses)
        counted[name] = (len(rows), new, len(rows) - new)
    counted["all"] = tuple(sum(c[k] for c in counted.values()) for k in range(3))
    assert totals == counted, "the totals table at the top of docs/reliability.md is off"


def test_the_page_is_linked():
    for doc in ("README.md", "docs/ARCHITECTURE.md"):
        assert "reliability.md" in (ROOT / doc).read_text(), doc


@pytest.mark.slow
def test_the_ids_read_here_are_the_ones_pytest_collects():
    """pytest's own collection (in a fresh process, the slow rows included) gives the ids
    that these tests read from the parametrize marks."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    files = [str(p.relative_to(ROOT)) for p in _test_files()]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "", *files],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    collected: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        found = re.match(r"tests/reliability/(test_\w+\.py)::(\w+)(?:\[(.*)\])?$", line)
        if found:
            file, test, param = found.groups()
            collected.setdefault(file, []).append(param if param is not None else test)
    assert collected == {p.name: suite_ids(p) for p in _test_files()}
