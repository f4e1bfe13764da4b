"""Fixtures of the plot tests: the compare records of tests/compare/compare_records.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "compare"))
from compare_records import param_records, records  # noqa: E402, F401  (fixtures)
