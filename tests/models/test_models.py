import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    ResNetConfig,
    ResNetForImageClassification,
)

from rsft.models import apply_freeze, find_blocks, find_head, load_classifier, save_classifier


class TinyNet(nn.Module):
    def __init__(self, num_labels: int = 3, hidden: int = 8):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(4, hidden), nn.Linear(hidden, hidden)])
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, x):
        for b in self.blocks:
            x = torch.relu(b(x))
        return self.classifier(x)


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_import_path_model_gets_a_new_head(monkeypatch):
    monkeypatch.setattr("rsft.models.loading.import_object", lambda path, what: TinyNet)
    clf = load_classifier("anything:TinyNet", num_labels=5, kwargs={"hidden": 6})
    assert clf.head == "classifier" and clf.model.classifier.out_features == 5
    assert clf.logits({"features": torch.zeros(2, 4), "labels": torch.zeros(2)}).shape == (2, 5)


@pytest.mark.parametrize(
    ("policy", "kwargs", "expected"),
    [
        (
            "none",
            {},
            {
                "blocks.0.weight",
                "blocks.0.bias",
                "blocks.1.weight",
                "blocks.1.bias",
                "classifier.weight",
                "classifier.bias",
            },
        ),
        ("all_but_head", {}, {"classifier.weight", "classifier.bias"}),
        (
            "last_n",
            {"train_last_n": 1},
            {"blocks.1.weight", "blocks.1.bias", "classifier.weight", "classifier.bias"},
        ),
        (
            "patterns",
            {"freeze_patterns": ["blocks.0.*"]},
            {"blocks.1.weight", "blocks.1.bias", "classifier.weight", "classifier.bias"},
        ),
        (
            "all_but_head",
            {"trainable_patterns": ["*.bias"]},
            {"blocks.0.bias", "blocks.1.bias", "classifier.weight", "classifier.bias"},
        ),
    ],
)
def test_freeze_policies(policy, kwargs, expected):
    model = TinyNet()
    counts = apply_freeze(model, policy, "classifier", **kwargs)
    assert _trainable(model) == expected
    assert counts["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_freeze_errors():
    with pytest.raises(ValueError, match="only 2 blocks"):
        apply_freeze(TinyNet(), "last_n", "classifier", train_last_n=3)
    with pytest.raises(ValueError, match="no parameter to train"):
        apply_freeze(TinyNet(), "patterns", "classifier", freeze_patterns=["*"])


def test_transformers_resnet_folder(tmp_path):
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=4)
    ResNetForImageClassification(config).save_pretrained(tmp_path / "resnet")
    clf = load_classifier(str(tmp_path / "resnet"), 3, classes=["a", "b", "c"])
    assert clf.is_transformers and clf.head == "classifier"
    logits = clf.logits({"pixel_values": torch.randn(2, 3, 32, 32)})
    assert logits.shape == (2, 3)
    assert clf.model.config.id2label[2] == "c"
    blocks = find_blocks(clf.model)
    assert blocks and blocks[-1].startswith("resnet.encoder.stages")


def test_transformers_bert_folder_and_roundtrip(tmp_path):
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=2,
    )
    BertForSequenceClassification(config).save_pretrained(tmp_path / "bert")
    clf = load_classifier(str(tmp_path / "bert"), 2)
    assert find_head(clf.model) == "classifier"
    assert find_blocks(clf.model) == ["bert.encoder.layer.0", "bert.encoder.layer.1"]
    apply_freeze(clf.model, "last_n", clf.head, train_last_n=1)
    assert all(n.startswith(("classifier", "bert.encoder.layer.1")) for n in _trainable(clf.model))
    ids = torch.randint(0, 50, (2, 7))
    before = clf.logits({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    save_classifier(clf, tmp_path / "saved", ["neg", "pos"])
    again = load_classifier(str(tmp_path / "saved"), 2)
    again.model.eval(), clf.model.eval()
    after = again.logits({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert torch.allclose(
        clf.logits({"input_ids": ids, "attention_mask": torch.ones_like(ids)}), after, atol=1e-6
    )
    assert before.shape == after.shape


def test_rsft_checkpoint_of_a_torch_module_roundtrips(tmp_path):
    clf = load_classifier("rsft.tasks.digits:DigitsNet", 10)
    save_classifier(clf, tmp_path / "ckpt", [str(i) for i in range(10)])
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    again = load_classifier(str(tmp_path / "ckpt"), 10)
    x = torch.randn(3, 64)
    clf.model.eval(), again.model.eval()
    assert torch.equal(clf.logits({"features": x}), again.logits({"features": x}))
    # New task, new classes: the head is replaced, the backbone kept.
    four = load_classifier(str(tmp_path / "ckpt"), 4)
    assert four.logits({"features": x}).shape == (3, 4)
    assert torch.equal(four.model.blocks[0][0].weight, clf.model.blocks[0][0].weight)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_classifier(str(tmp_path / "nope"), 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a transformers model folder"):
        load_classifier(str(tmp_path / "empty"), 2)
    with pytest.raises(ValueError, match="cannot import module"):
        load_classifier("no_such_pkg.models:Net", 2)
