"""Every Python snippet in the README and docs/ runs as written.

A page's snippets run in order as one script (a page reads top to bottom: a later snippet
may use an earlier one's names), in a fresh folder with the data the page's commands would
have made (``rsft prepare digits`` / ``rsft prepare arithmetic``), as ``python page.py``:
with ``__name__ == "__main__"``, so a snippet that needs worker processes shows its guard.
The snippets that run the RFT pipeline on SmolLM2 take minutes and are marked slow; a
snippet that cannot run as written says why just before it (``<!-- not run: reason -->``).
The recipes (docs/recipes) have tests of their own: tests/docs/test_recipes.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(  # a block may be indented (in a list): its lines then share the indent
    r"(<!-- not run: (?P<why>[^>]*?) -->\n)?"
    r"^(?P<indent>[ \t]*)```python\n(?P<code>.*?)^(?P=indent)```",
    re.DOTALL | re.MULTILINE,
)
SLOW_DATA = "data/arithmetic"  # SmolLM2 rounds: minutes


def snippets(page: Path) -> list[tuple[str, str | None]]:
    """(code, the reason it is not run or None) of every python block, in order."""
    text = page.read_text(encoding="utf-8")
    return [(textwrap.dedent(m["code"]), m["why"]) for m in BLOCK.finditer(text)]


def _run(page: Path, codes: list[str], where: Path) -> str:
    script = where / f"{page.stem.lower()}_snippets.py"
    script.write_text("\n\n".join(codes), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["MPLBACKEND"] = "Agg"
    out = subprocess.run(
        [sys.executable, str(script)], cwd=where, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, (
        f"{page.name}'s snippets failed:\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}"
    )
    return out.stdout


def _prepare(needs: str, where: Path) -> None:
    from rsft.cli.main import main

    task = needs.split("/")[1]
    cwd = os.getcwd()
    os.chdir(where)
    try:
        assert main(["prepare", task, "--out", needs]) == 0
    finally:
        os.chdir(cwd)


def _needed(codes: list[str]) -> list[str]:
    return [d for d in ("data/digits", SLOW_DATA) if any(d in c for c in codes)]


FAST = [p for p in PAGES if any(w is None and SLOW_DATA not in c for c, w in snippets(p))]
SLOW = [p for p in PAGES if any(w is None and SLOW_DATA in c for c, w in snippets(p))]


def test_every_page_with_snippets_is_run_and_skips_say_why():
    with_code = {p.name for p in PAGES if snippets(p)}
    assert {"README.md", "generation.md", "param_level.md"} <= with_code
    not_run = {p.name for p in PAGES if snippets(p) and all(w for _, w in snippets(p))}
    assert with_code - not_run == {p.name for p in FAST + SLOW}
    for page in PAGES:
        for code, why in snippets(page):
            assert why is None or len(why) > 20, (page.name, code[:60])


@pytest.mark.parametrize("page", FAST, ids=lambda p: p.name)
def test_the_snippets_of_a_page_run_as_written(page, tmp_path):
    codes = []
    for code, why in snippets(page):
        if why is not None:
            continue
        if SLOW_DATA in code:
            break  # this and what follows: the slow test
        codes.append(code)
    for needs in _needed(codes):
        _prepare(needs, tmp_path)
    _run(page, codes, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("page", SLOW, ids=lambda p: p.name)
def test_the_rft_snippets_run_as_written(page, tmp_path):
    codes = [code for code, why in snippets(page) if why is None]
    for needs in _needed(codes):
        _prepare(needs, tmp_path)
    printed = _run(page, codes, tmp_path)
    assert "| round |" in printed  # each RFT snippet prints its round table
