"""examples/segmentation end to end at a small size: the data script, then `rsft compare`
with the shipped config (plain and density-ratio rejection of a U-Net, mean IoU per image)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from rsft.cli.main import main
from rsft.models import load_classifier

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "segmentation"


@pytest.fixture
def example_dir(tmp_path, monkeypatch):
    """A working folder with the example's data, its modules importable (as the README's
    PYTHONPATH makes them)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.chdir(tmp_path)
    make = runpy.run_path(str(EXAMPLE / "make_data.py"), run_name="segmentation_make_data")
    sizes = ["--size", "16", "--pool", "48", "--val", "8", "--test", "16", "--target", "24"]
    assert make["main"](["data/segmentation", *sizes, "--target-share", "0.25"]) == 0
    return tmp_path


def test_compare_plain_and_density_ratio_rejection(example_dir, capsys):
    overrides = [
        "seeds=[0]",
        "output_dir=runs/seg",
        "base.epochs=1",
        "base.model.kwargs={width: 8}",
        "base.eval_batch_size=64",
        "base.progress=false",
    ]
    code = main(["compare", "--config", str(EXAMPLE / "compare.yaml"), *overrides])
    assert code == 0
    table = capsys.readouterr().out
    for method in ("plain", "rsft-density", "iw-density"):
        assert f"| {method}" in table
    assert "task.metric seg_model:mean_iou" in table
    records = json.loads((example_dir / "runs/seg/results.json").read_text())["records"]
    by_method = {r["method"]: r for r in records}
    for r in records:
        assert 0 <= r["test_accuracy"] <= 1 and r["test_size"] == 16
        assert all(0 <= s <= 1 for s in r["test_correct"])
    rsft = by_method["rsft-density"]
    assert rsft["domain_auc"] > 0.5 and rsft["acceptance_rate"] < 1
    # budget: samples: every method backpropagates about as many images as one plain epoch.
    assert rsft["backpropagated"] == pytest.approx(by_method["plain"]["backpropagated"], rel=0.4)


def test_the_saved_model_names_the_example_class(example_dir):
    """A model trained from an import path outside rsft loads back only with trust."""
    code = main(
        ["train", "model.path=seg_model:TinyUNet", "model.kwargs={width: 8}", "model.freeze=none"]
        + ["data.train=data/segmentation/train.safetensors", "data.label_column=mask"]
        + ["task.loss=seg_model:pixel_cross_entropy", "task.metric=seg_model:mean_iou"]
        + ["epochs=1", "output_dir=runs/one", "progress=false"]
    )
    assert code == 0
    with pytest.raises(ValueError, match="model.trust_remote_code: true"):
        load_classifier("runs/one/model", 3)
    clf = load_classifier("runs/one/model", 3, trust_remote_code=True)
    assert type(clf.model).__name__ == "TinyUNet" and clf.head == "head"
