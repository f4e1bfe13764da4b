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
