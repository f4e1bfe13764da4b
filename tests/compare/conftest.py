"""Fixtures of the compare tests: records as ``rsft compare`` writes them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from compare_records import param_records, records  # noqa: E402, F401  (fixtures)
