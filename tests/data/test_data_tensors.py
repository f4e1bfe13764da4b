"""data.format: tensors — a .safetensors file of named tensors, read without unpickling."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from rsft.data import DataConfig, DataError, load_split


def _write(path, **tensors):
    save_file(tensors, str(path))
    return str(path)


@pytest.fixture
def seg_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    return _write(
        tmp_path / "seg.safetensors",
        pixel_values=torch.randn(10, 3, 8, 8, generator=g),
        mask=torch.randint(0, 3, (10, 8, 8), generator=g).to(torch.uint8),
        group=torch.arange(10) % 2,
    )


def test_inputs_label_and_columns(seg_file):
    split = load_split(seg_file, DataConfig(label_column="mask"))  # format from the suffix
    assert split.format == "tensors" and len(split) == 10
    assert split.classes == ["0", "1", "2"]
    item = split.dataset[3]
    assert set(item) == {"pixel_values", "labels", "index"}
    assert item["pixel_values"].shape == (3, 8, 8) and item["labels"].dtype == torch.int64
    batch = split.collate([split.dataset[i] for i in range(4)])
    assert batch["labels"].shape == (4, 8, 8) and batch["pixel_values"].shape == (4, 3, 8, 8)
    assert split.column("group") == [0, 1] * 5  # 1-D tensors are columns
    assert split.examples()[1] == {"group": 1}


def test_labels_map_onto_the_training_classes(tmp_path):
    train = _write(
        tmp_path / "train.safetensors", x=torch.randn(4, 2), label=torch.tensor([3, 7, 7, 9])
    )
    split = load_split(train, DataConfig())
    assert split.classes == ["3", "7", "9"]
    assert split.labels.tolist() == [0, 1, 1, 2]
    assert split.column("label") == [3, 7, 7, 9]  # the raw values, for balance weighting
    test = _write(tmp_path / "test.safetensors", x=torch.randn(2, 2), label=torch.tensor([9, 3]))
    assert load_split(test, DataConfig(), classes=split.classes).labels.tolist() == [2, 0]
    bad = _write(tmp_path / "bad.safetensors", x=torch.randn(2, 2), label=torch.tensor([9, 5]))
    with pytest.raises(DataError, match=r"label value\(s\) \[5\].*not among the training classes"):
        load_split(bad, DataConfig(), classes=split.classes)


def test_named_inputs_are_passed_by_name(tmp_path):
    path = _write(
        tmp_path / "pairs.safetensors",
        a=torch.randn(3, 4),
        b=torch.randn(3, 4),
        extra=torch.randn(3, 5),
        label=torch.tensor([0, 1, 0]),
    )
    split = load_split(path, DataConfig(input_tensors=["a", "b"]))
    assert set(split.dataset[0]) == {"a", "b", "labels", "index"}
    unlabelled = load_split(path, DataConfig(), labelled=False)  # default: every ndim >= 2
    assert set(unlabelled.dataset[0]) == {"a", "b", "extra", "index"}


@pytest.mark.parametrize(
    "tensors, cfg, match",
    [
        (
            {"x": torch.randn(4, 2), "label": torch.tensor([0, 1, 0])},
            {},
            r"disagree on the number of samples.*'label': 3, 'x': 4",
        ),
        ({"x": torch.randn(4, 2)}, {}, r"label tensor 'label' not found.*Its tensors: \{'x'"),
        (
            {"x": torch.randn(2, 2), "label": torch.tensor([0.0, 1.0])},
            {},
            "labels must be integers",
        ),
        ({"x": torch.randn(2, 2), "label": torch.tensor([1, 1])}, {}, "at least 2 classes"),
        (
            {"x": torch.tensor([[0.0], [float("nan")]]), "label": torch.tensor([0, 1])},
            {},
            r"'x'.*1 sample\(s\) with NaN or infinite values \(first at sample 1\)",
        ),
        ({"v": torch.randn(2), "label": torch.tensor([0, 1])}, {}, "no model input"),
        (
            {"x": torch.randn(2, 2), "label": torch.tensor([0, 1])},
            {"input_tensors": ["y"]},
            r"input tensor\(s\) \['y'\] not found",
        ),
        (
            {"x": torch.randn(2, 2), "label": torch.tensor([0, 1])},
            {"input_tensors": ["x", "label"]},
            "would see the answer",
        ),
        (
            {"x": torch.randn(2, 2), "label": torch.tensor([0, 1])},
            {"feature_columns": ["x"]},
            "feature_columns/text_column are set",
        ),
        ({"x": torch.zeros(()), "label": torch.tensor([0, 1])}, {}, "are scalars"),
    ],
)
def test_bad_tensor_files_fail_at_load_with_a_fix(tmp_path, tensors, cfg, match):
    path = _write(tmp_path / "bad.safetensors", **tensors)
    with pytest.raises(DataError, match=match):
        load_split(path, DataConfig(**cfg))


def test_a_pickle_is_refused_and_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled')",))

    path = tmp_path / "data.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(DataError, match="cannot read .* as safetensors"):
        load_split(path, DataConfig())


def test_tensors_need_a_file(tmp_path):
    with pytest.raises(DataError, match="needs a file"):
        load_split(tmp_path, DataConfig(format="tensors"))
    with pytest.raises(ValueError, match="input_tensors is an empty list"):
        DataConfig(input_tensors=[])


def test_labels_map_onto_training_classes_in_their_order_not_numeric_order():
    """A table's classes may come as strings in another order ("10" before "2"): each value
    gets the id of its class's position, and unknown values are still refused."""
    from rsft.data.tensors import encode_tensor_labels

    values = torch.tensor([[2, 10], [0, 1]])
    ids, classes = encode_tensor_labels(values, ["0", "1", "10", "2"], "in test")
    assert classes == ["0", "1", "10", "2"]
    assert ids.tolist() == [[3, 2], [0, 1]]
    with pytest.raises(DataError, match=r"label value\(s\) \[5\]"):
        encode_tensor_labels(torch.tensor([5, 1]), ["0", "1", "10", "2"], "in test")
