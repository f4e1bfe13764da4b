import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from rsft.data import DataConfig, DataError, load_split

CFG = DataConfig(resize=32, crop=24)


def test_image_folder_loads_with_default_transform(image_folder):
    split = load_split(image_folder, CFG)
    assert split.classes == ["cat", "dog", "eel"]
    assert split.input_kind == "pixel_values"
    assert split.format == "imagefolder"
    assert len(split) == 12
    assert split.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4

    item = split.dataset[5]
    assert item["pixel_values"].shape == (3, 24, 24)
    assert item["pixel_values"].dtype == torch.float32
    assert item["labels"].dtype == torch.long and int(item["labels"]) == 1
    assert item["index"] == 5
    # Normalized with ImageNet mean/std: values leave [0, 1] on both sides.
    pixels = torch.stack([split.dataset[i]["pixel_values"] for i in range(len(split))])
    assert pixels.min() < -1 and pixels.max() > 1.5

    batch = next(iter(DataLoader(split.dataset, batch_size=5, collate_fn=split.collate)))
    assert batch["pixel_values"].shape == (5, 3, 24, 24)
    assert batch["labels"].tolist() == [0, 0, 0, 0, 1]
    assert batch["index"].tolist() == [0, 1, 2, 3, 4]


def test_image_folder_columns_and_examples(image_folder):
    split = load_split(image_folder, CFG)
    paths = split.column("path")
    assert paths[0] == str(image_folder / "cat" / "0.png")
    assert split.column("label")[4:8] == ["dog"] * 4
    rows = split.examples()
    assert rows[11] == {"path": str(image_folder / "eel" / "3.png"), "label": "eel"}
    with pytest.raises(DataError, match=r"'group'.*Available columns: \['path', 'label'\]"):
        split.column("group")


def test_class_named_like_a_split_is_not_dropped(tmp_path, make_image_folder):
    # datasets treats folders named train/test as splits when given data_dir.
    root = make_image_folder(tmp_path / "d", classes=("test", "train", "zebra"), per_class=2)
    split = load_split(root, CFG)
    assert split.classes == ["test", "train", "zebra"]
    assert len(split) == 6


def test_eval_split_maps_onto_training_classes(tmp_path, make_image_folder):
    root = make_image_folder(tmp_path / "eval", classes=("dog",), per_class=2)
    split = load_split(root, CFG, classes=["cat", "dog", "eel"])
    assert split.labels.tolist() == [1, 1]
    assert split.classes == ["cat", "dog", "eel"]


def test_eval_split_with_unknown_class_folder(tmp_path, make_image_folder):
    root = make_image_folder(tmp_path / "eval", classes=("cat", "fox"), per_class=2)
    with pytest.raises(DataError) as err:
        load_split(root, CFG, classes=["cat", "dog", "eel"])
    message = str(err.value)
    assert "'fox' (2 images)" in message and str(root) in message
    assert "['cat', 'dog', 'eel']" in message


def test_empty_class_folder_is_named(image_folder):
    (image_folder / "fox").mkdir()
    with pytest.raises(DataError, match=r"fox.*hold no images"):
        load_split(image_folder, CFG)


def test_corrupt_image_is_named_by_path(image_folder):
    bad = image_folder / "dog" / "x.png"
    bad.write_bytes(b"definitely not a png")
    with pytest.raises(DataError, match="cannot be read") as err:
        load_split(image_folder, CFG)
    assert str(bad) in str(err.value)


def test_single_class_training_folder(tmp_path, make_image_folder):
    root = make_image_folder(tmp_path / "one", classes=("cat",), per_class=2)
    with pytest.raises(DataError, match="at least 2 classes"):
        load_split(root, CFG)


def test_missing_path_and_images_outside_class_folders(tmp_path, image_folder, write_image):
    with pytest.raises(DataError, match="does not exist"):
        load_split(tmp_path / "nope", CFG)
    write_image(image_folder / "loose.png", np.random.default_rng(1))
    with pytest.raises(DataError, match="directly in"):
        load_split(image_folder, CFG)


def test_unlabelled_folder_of_loose_images(tmp_path, write_image):
    rng = np.random.default_rng(2)
    for i in range(3):
        write_image(tmp_path / "target" / f"{i}.jpg", rng)
    split = load_split(tmp_path / "target", CFG, labelled=False)
    assert split.labels is None and split.classes == []
    item = split.dataset[0]
    assert "labels" not in item and item["pixel_values"].shape == (3, 24, 24)


def test_caller_processor_is_used(image_folder):
    from transformers import ViTImageProcessorPil

    processor = ViTImageProcessorPil(size={"height": 16, "width": 16})
    split = load_split(image_folder, CFG, processor=processor)
    assert split.dataset[0]["pixel_values"].shape == (3, 16, 16)
