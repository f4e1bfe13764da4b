"""examples/face_verification end to end at a small size: the data script, then `rsft
compare` with the shipped config (ArcFace on long-tailed identities; plain, identity-balanced
rejection and a user acceptance function; verification accuracy on pairs)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch

from rsft.cli.main import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "face_verification"


@pytest.fixture
def example_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.chdir(tmp_path)
    make = runpy.run_path(str(EXAMPLE / "make_data.py"), run_name="faces_make_data")
    sizes = ["--size", "12", "--ids", "6", "--head", "24", "--min-count", "3"]
    assert make["main"](["data/faces", *sizes, "--val-pairs", "20", "--test-pairs", "40"]) == 0
    return tmp_path


def test_compare_plain_balance_and_a_user_function(example_dir, capsys):
    overrides = ["seeds=[0]", "output_dir=runs/faces", "base.epochs=1", "base.progress=false"]
    code = main(["compare", "--config", str(EXAMPLE / "compare.yaml"), *overrides])
    assert code == 0
    table = capsys.readouterr().out
    for method in ("plain", "rsft-balance", "rsft-sqrt"):
        assert f"| {method}" in table
    assert "task.metric face_model:verification_accuracy" in table
    records = json.loads((example_dir / "runs/faces/results.json").read_text())["records"]
    rates = {r["method"]: r["acceptance_rate"] for r in records}
    assert rates["plain"] == 1 and rates["rsft-balance"] < rates["rsft-sqrt"] < 1
    for r in records:
        assert r["test_size"] == 40  # one score per pair
        assert set(r["test_correct"]) <= {0.0, 1.0}


def test_verification_accuracy_judges_pairs_with_a_cross_validated_threshold():
    import sys

    sys.path.insert(0, str(EXAMPLE))
    try:
        from face_model import sqrt_balance, verification_accuracy
    finally:
        sys.path.remove(str(EXAMPLE))
    # 20 pairs: same pairs (even k) have cosine 1, different ones cosine 0, but pair 3 lies.
    emb = []
    for k in range(20):
        first = torch.tensor([1.0, 0.0])
        second = first if k % 2 == 0 or k == 3 else torch.tensor([0.0, 1.0])
        emb += [first, second]
    labels = torch.tensor([i for k in range(20) for i in (k, k if k % 2 == 0 else k + 100)])
    batch = {"labels": labels, "index": torch.arange(40)}
    right = verification_accuracy({"embeddings": torch.stack(emb)}, batch)
    assert right.tolist() == [1.0] * 3 + [0.0] + [1.0] * 16
    with pytest.raises(ValueError, match="metric_on: split"):
        verification_accuracy(
            {"embeddings": torch.stack(emb)}, {**batch, "index": batch["index"].flip(0)}
        )
    assert sqrt_balance([{"identity": 0}] * 4 + [{"identity": 1}]) == [0.5] * 4 + [1.0]
