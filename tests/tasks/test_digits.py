"""The embedded digits task: splits, styles, priors, the shift being real, DigitsNet."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from rsft.tasks.digits import (
    NUM_CLASSES,
    SPLITS,
    DigitsNet,
    build_digits_task,
    render_examples,
)

LABELLED = [s for s in SPLITS if s != "target_unlabelled"]


def _read(path):
    return pq.read_table(path).to_pydict()


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    paths = build_digits_task(tmp_path_factory.mktemp("digits"), seed=0)
    return {name: _read(path) for name, path in paths.items()}


def _pixels(split):
    return np.asarray(split["pixels"], dtype=np.float32)


def _priors(labels):
    return np.bincount(np.asarray(labels), minlength=NUM_CLASSES) / len(labels)


def test_writes_all_splits(tmp_path):
    paths = build_digits_task(tmp_path, seed=0)
    assert set(paths) == set(SPLITS)
    for name, path in paths.items():
        assert path == tmp_path / f"{name}.parquet"
        assert path.exists()


def test_sizes_and_columns(task):
    assert 550 <= len(task["pretrain"]["digit_id"]) <= 650
    assert 650 <= len(task["pool"]["digit_id"]) <= 750
    assert 80 <= len(task["target_val"]["digit_id"]) <= 120
    assert 180 <= len(task["target_unlabelled"]["digit_id"]) <= 220
    assert len(task["target_test"]["digit_id"]) >= 150
    for name in LABELLED:
        assert set(task[name]) == {"pixels", "label", "style", "digit_id"}
        assert set(task[name]["label"]) <= set(range(NUM_CLASSES))
    assert set(task["target_unlabelled"]) == {"pixels", "style", "digit_id"}
    for split in task.values():
        pixels = _pixels(split)
        assert pixels.shape[1] == 64
        assert np.isfinite(pixels).all()


def test_splits_disjoint_and_within_load_digits(task):
    seen: set[int] = set()
    for split in task.values():
        ids = split["digit_id"]
        assert len(set(ids)) == len(ids)
        assert seen.isdisjoint(ids)
        seen.update(ids)
    assert min(seen) >= 0 and max(seen) < 1797


def test_every_class_in_pretrain_and_pool(task):
    assert set(task["pretrain"]["label"]) == set(range(NUM_CLASSES))
    assert set(task["pool"]["label"]) == set(range(NUM_CLASSES))
    # Pretrain is (roughly) class-balanced.
    assert np.allclose(_priors(task["pretrain"]["label"]), 0.1, atol=0.02)


def test_styles(task):
    assert set(task["pretrain"]["style"]) == {"source"}
    for name in ("target_val", "target_unlabelled", "target_test"):
        assert set(task[name]["style"]) == {"target"}
    styles = np.asarray(task["pool"]["style"])
    assert set(styles) == {"source", "target"}
    assert abs((styles == "target").mean() - 0.25) < 0.05


def test_target_priors_differ_from_pool(task):
    target = _priors(task["target_test"]["label"] + task["target_val"]["label"])
    pool = _priors(task["pool"]["label"])
    # Target favours 0-4, the pool favours 5-9.
    assert target[:5].sum() > 0.65
    assert pool[:5].sum() < 0.4
    assert 0.5 * np.abs(target - pool).sum() > 0.25  # total variation distance


def test_deterministic_for_seed(tmp_path):
    a = build_digits_task(tmp_path / "a", seed=3)
    b = build_digits_task(tmp_path / "b", seed=3)
    c = build_digits_task(tmp_path / "c", seed=4)
    for name in SPLITS:
        assert _read(a[name]) == _read(b[name])
    assert _read(a["pool"])["digit_id"] != _read(c["pool"])["digit_id"]


def test_shift_is_real(task):
    """A classifier fit on source images is much worse on the target domain."""
    from sklearn.linear_model import LogisticRegression

    pre, pool, test = task["pretrain"], task["pool"], task["target_test"]
    clf = LogisticRegression(max_iter=1000).fit(_pixels(pre), pre["label"])
    held_out_source = np.asarray(pool["style"]) == "source"
    src_acc = clf.score(_pixels(pool)[held_out_source], np.asarray(pool["label"])[held_out_source])
    tgt_acc = clf.score(_pixels(test), test["label"])
    # Measured at seed 0: source ~0.96, target ~0.43.
    assert src_acc > 0.9
    assert src_acc - tgt_acc > 0.25


@pytest.mark.parametrize("shape", [(5, 64), (5, 1, 8, 8)])
def test_digitsnet_forward_shapes(shape):
    torch.manual_seed(0)
    net = DigitsNet(num_labels=7, width=8)
    out = net(torch.randn(*shape))
    assert out.shape == (5, 7)
    assert isinstance(net.blocks, torch.nn.ModuleList) and len(net.blocks) == 3
    assert net.classifier.in_features == 16 and net.classifier.out_features == 7


def test_digitsnet_rejects_bad_shape():
    with pytest.raises(ValueError):
        DigitsNet()(torch.randn(2, 3, 8, 8))


@pytest.fixture
def one_thread():
    """Tiny nets train faster on one thread, and far faster when the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_digitsnet_learns_a_little(task, one_thread):
    torch.manual_seed(0)
    net = DigitsNet(width=16)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x = torch.tensor(_pixels(task["pretrain"]))
    y = torch.tensor(task["pretrain"]["label"])
    net.train()
    for _ in range(3):
        for i in range(0, len(x), 50):
            loss = torch.nn.functional.cross_entropy(net(x[i : i + 50]), y[i : i + 50])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(x).argmax(1) == y).float().mean().item()
    assert acc > 0.7


def test_render_examples(tmp_path):
    path = render_examples(tmp_path / "examples.png", n=4)
    assert path.exists() and path.stat().st_size > 0
