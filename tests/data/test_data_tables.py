import json

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from rsft.data import DataConfig, DataError, infer_format, load_split


@pytest.fixture
def csv_file(tmp_path):
    frame = pd.DataFrame(
        {
            "x1": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            "x2": [1, 2, 3, 4, 5, 6],
            "label": ["b", "a", "b", "c", "a", "c"],
            "group": ["g1", "g2", "g1", "g2", "g1", "g2"],
        }
    )
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    return path


CSV_CFG = DataConfig(feature_columns=["x1", "x2"])


def test_csv_scalar_features_and_string_labels(csv_file):
    split = load_split(csv_file, CSV_CFG)
    assert split.format == "csv" and split.input_kind == "features"
    assert split.classes == ["a", "b", "c"]
    assert split.labels.tolist() == [1, 0, 1, 2, 0, 2]
    item = split.dataset[3]
    assert item["features"].dtype == torch.float32
    assert torch.allclose(item["features"], torch.tensor([0.4, 4.0]))
    assert int(item["labels"]) == 2 and item["index"] == 3

    batch = next(iter(DataLoader(split.dataset, batch_size=4, collate_fn=split.collate)))
    assert batch["features"].shape == (4, 2)
    assert batch["labels"].tolist() == [1, 0, 1, 2]

    assert split.column("group") == ["g1", "g2", "g1", "g2", "g1", "g2"]
    assert split.examples()[0] == {"x1": 0.1, "x2": 1, "label": "b", "group": "g1"}


def test_parquet_list_column_and_int_labels(tmp_path):
    path = tmp_path / "train.parquet"
    pd.DataFrame(
        {
            "emb": [[float(i), 0.0, 1.0] for i in range(5)],
            "w": [1.0, 2.0, 3.0, 4.0, 5.0],
            "label": [10, 2, 10, 2, 1],
        }
    ).to_parquet(path)
    split = load_split(path, DataConfig(feature_columns=["emb", "w"]))
    assert split.classes == ["1", "2", "10"]  # ints sort numerically
    assert split.labels.tolist() == [2, 1, 2, 1, 0]
    assert split.dataset[4]["features"].tolist() == [4.0, 0.0, 1.0, 5.0]


def test_eval_labels_map_onto_classes_and_unknown_label_errors(tmp_path, csv_file):
    path = tmp_path / "eval.csv"
    pd.DataFrame({"x1": [1.0, 2.0, 3.0], "x2": [1, 2, 3], "label": ["c", "a", "z"]}).to_csv(
        path, index=False
    )
    with pytest.raises(DataError) as err:
        load_split(path, CSV_CFG, classes=["a", "b", "c"])
    message = str(err.value)
    assert "'z' (1 row)" in message and str(path) in message and "['a', 'b', 'c']" in message

    ok = tmp_path / "ok.csv"
    pd.DataFrame({"x1": [1.0], "x2": [1], "label": ["c"]}).to_csv(ok, index=False)
    assert load_split(ok, CSV_CFG, classes=["a", "b", "c"]).labels.tolist() == [2]


def test_missing_columns_list_available(csv_file):
    with pytest.raises(DataError, match=r"'x3' not found.*\['x1', 'x2', 'label', 'group'\]"):
        load_split(csv_file, DataConfig(feature_columns=["x1", "x3"]))
    with pytest.raises(DataError, match=r"label column 'y' not found.*'group'"):
        load_split(csv_file, DataConfig(feature_columns=["x1"], label_column="y"))
    split = load_split(csv_file, CSV_CFG)
    with pytest.raises(DataError, match=r"'weight' not found.*'group'"):
        split.column("weight")


def test_nan_feature_errors(tmp_path):
    path = tmp_path / "nan.csv"
    path.write_text("x,label\n1.0,a\n,b\n3.0,a\n")
    with pytest.raises(DataError, match=r"'x'.*1 row.*non-finite.*row 1"):
        load_split(path, DataConfig(feature_columns=["x"]))


def test_non_numeric_and_ragged_features_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    rows = [{"s": "hi", "v": [1, 2], "label": i % 2} for i in range(4)]
    rows[2]["v"] = [1, 2, 3]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match=r"'s'.*not numbers"):
        load_split(path, DataConfig(feature_columns=["s"]))
    with pytest.raises(DataError, match=r"'v'.*ragged.*row 2"):
        load_split(path, DataConfig(feature_columns=["v"]))


def test_json_lines_and_unlabelled_split(tmp_path):
    path = tmp_path / "target.jsonl"
    path.write_text("\n".join(json.dumps({"x": [i, i + 1], "group": i % 2}) for i in range(3)))
    split = load_split(path, DataConfig(feature_columns=["x"]), labelled=False)
    assert split.format == "json" and split.labels is None and split.classes == []
    item = split.dataset[2]
    assert "labels" not in item and item["features"].tolist() == [2.0, 3.0]
    assert split.column("group") == [0, 1, 0]
    batch = split.collate([split.dataset[i] for i in range(3)])
    assert set(batch) == {"features", "index"}


def test_hf_saved_dataset_with_class_label(tmp_path):
    features = datasets.Features(
        {"f": datasets.Value("float32"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    ds = datasets.Dataset.from_dict({"f": [0.5, 1.5, 2.5], "label": [1, 0, 1]}, features=features)
    ds.save_to_disk(str(tmp_path / "saved"))
    cfg = DataConfig(feature_columns=["f"])
    assert infer_format(tmp_path / "saved", cfg) == "hf"
    split = load_split(tmp_path / "saved", cfg)
    assert split.format == "hf" and split.classes == ["neg", "pos"]
    assert split.labels.tolist() == [1, 0, 1]

    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dict"))
    with pytest.raises(DataError, match="several splits"):
        load_split(tmp_path / "dict", cfg)


def test_table_of_image_paths(tmp_path, make_image_folder):
    root = make_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=2)
    path = tmp_path / "images.csv"
    rel = [f"imgs/{c}/{i}.png" for c in "ab" for i in range(2)]
    pd.DataFrame({"image": rel, "label": ["a", "a", "b", "b"]}).to_csv(path, index=False)
    split = load_split(path, DataConfig(resize=20, crop=16))
    assert split.input_kind == "pixel_values"
    assert split.dataset[3]["pixel_values"].shape == (3, 16, 16)
    assert split.column("path")[0] == str(root / "a" / "0.png")
    assert split.examples()[0]["path"] == str(root / "a" / "0.png")

    (root / "b" / "1.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="cannot be read") as err:
        load_split(path, DataConfig(resize=20, crop=16))
    assert str(root / "b" / "1.png") in str(err.value)


def test_format_errors(tmp_path):
    odd = tmp_path / "data.txt"
    odd.write_text("x")
    with pytest.raises(DataError, match="data.format"):
        load_split(odd, DataConfig())
    with pytest.raises(DataError, match="needs a folder"):
        load_split(odd, DataConfig(format="imagefolder"))
    with pytest.raises(ValueError, match="not supported"):
        DataConfig(format="xls")
    empty = tmp_path / "empty.csv"
    empty.write_text("x,label\n")
    with pytest.raises(DataError, match="no samples"):
        load_split(empty, DataConfig(feature_columns=["x"]))


def test_table_without_input_column(csv_file):
    with pytest.raises(DataError, match="no model input"):
        load_split(csv_file, DataConfig())


def test_missing_label_values(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("x,label\n1.0,1\n2.0,\n3.0,2\n")
    with pytest.raises(DataError, match=r"1 row\(s\) have no label.*row 1"):
        load_split(path, DataConfig(feature_columns=["x"]))
    # The float column pandas makes of "1, NaN, 2" still matches int class names.
    path.write_text("x,label\n1.0,1\n2.0,2\n")
    split = load_split(path, DataConfig(feature_columns=["x"]), classes=["1", "2"])
    assert split.labels.tolist() == [0, 1]


def test_features_are_float32_numpy_compatible(csv_file):
    split = load_split(csv_file, CSV_CFG)
    stacked = np.stack([split.dataset[i]["features"].numpy() for i in range(len(split))])
    assert stacked.shape == (6, 2)


def test_hf_saved_dataset_with_embedded_images(tmp_path):
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)) for _ in range(4)]
    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=["x", "y"])}
    )
    ds = datasets.Dataset.from_dict({"img": images, "label": [0, 1, 0, 1]}, features=features)
    ds.save_to_disk(str(tmp_path / "saved"))
    split = load_split(tmp_path / "saved", DataConfig(image_column="img", resize=20, crop=16))
    assert split.input_kind == "pixel_values" and split.classes == ["x", "y"]
    assert split.dataset[1]["pixel_values"].shape == (3, 16, 16)
    assert split.column("label") == [0, 1, 0, 1]
