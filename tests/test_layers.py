"""Layers import downwards only: training never loads the comparison built on top of it."""

import subprocess
import sys


def test_training_does_not_import_compare():
    code = (
        "import sys, rsft.training.trainer, rsft.plots; "
        "print(sorted(m for m in sys.modules if m.startswith('rsft.compare')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_generation_level_asks_one_module_whether_there_is_a_gpu():
    """``model.device`` is resolved in rsft.models.devices; no generation module asks torch."""
    from pathlib import Path

    generation = Path(__file__).parents[1] / "src" / "rsft" / "generation"
    asking = [
        str(f.relative_to(generation))
        for f in sorted(generation.rglob("*.py"))
        if "cuda.is_available" in f.read_text() or "cuda.device_count" in f.read_text()
    ]
    assert asking == []
