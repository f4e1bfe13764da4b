import pandas as pd
import pytest
from transformers import BertTokenizerFast

from rsft.data import DataConfig, DataError, load_split

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "very"]


@pytest.fixture
def tokenizer(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    return BertTokenizerFast(vocab=str(vocab))


@pytest.fixture
def text_csv(tmp_path):
    path = tmp_path / "reviews.csv"
    pd.DataFrame(
        {
            "review": ["good movie", "very very bad movie", "bad", "very good"],
            "sentiment": ["pos", "neg", "neg", "pos"],
        }
    ).to_csv(path, index=False)
    return path


def test_text_is_tokenized_and_padded(text_csv, tokenizer):
    cfg = DataConfig(text_column="review", label_column="sentiment", max_length=5)
    split = load_split(text_csv, cfg, processor=tokenizer)
    assert split.input_kind == "text" and split.classes == ["neg", "pos"]
    item = split.dataset[0]
    assert item["input_ids"].tolist() == [2, 5, 7, 3]  # [CLS] good movie [SEP]

    batch = split.collate([split.dataset[i] for i in range(3)])
    assert batch["input_ids"].shape == (3, 5)  # truncated to max_length, padded to longest
    assert batch["input_ids"][2].tolist() == [2, 6, 3, 0, 0]
    assert batch["attention_mask"][2].tolist() == [1, 1, 1, 0, 0]
    assert batch["labels"].tolist() == [1, 0, 0]


def test_text_needs_a_tokenizer(text_csv):
    from rsft.data import default_image_processor

    cfg = DataConfig(text_column="review", label_column="sentiment")
    with pytest.raises(DataError, match=r"need a tokenizer \(got none\)"):
        load_split(text_csv, cfg)
    with pytest.raises(DataError, match="got BitImageProcessorPil"):
        load_split(text_csv, cfg, processor=default_image_processor(cfg))


def test_missing_text_column_lists_columns(text_csv, tokenizer):
    cfg = DataConfig(text_column="body", label_column="sentiment")
    with pytest.raises(DataError, match=r"text column 'body'.*\['review', 'sentiment'\]"):
        load_split(text_csv, cfg, processor=tokenizer)


def test_unlabelled_text_without_label_column(tmp_path, tokenizer):
    path = tmp_path / "target.csv"
    pd.DataFrame({"review": ["good", "bad movie"]}).to_csv(path, index=False)
    split = load_split(path, DataConfig(text_column="review"), labelled=False, processor=tokenizer)
    batch = split.collate([split.dataset[0], split.dataset[1]])
    assert "labels" not in batch and batch["input_ids"].shape == (2, 4)
