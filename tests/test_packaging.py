"""What the wheel ships: every package-data pattern in pyproject.toml matches a file."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_data_pattern_matches_a_file():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    where = setuptools["packages"]["find"]["where"]
    for package, patterns in setuptools.get("package-data", {}).items():
        folders = [ROOT / w / package.replace(".", "/") for w in where]
        for pattern in patterns:
            assert any(any(f.glob(pattern)) for f in folders), (package, pattern)


def test_no_extra_puts_vllm_beside_rsft():
    """vLLM pins its own torch and transformers: it gets its own environment (make vllm-env)."""
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for name, requirements in extras["optional-dependencies"].items():
        assert not [r for r in requirements if r.lower().startswith("vllm")], name
