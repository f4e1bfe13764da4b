"""Unit tests of the model-aware pieces: scorers, the online envelope, the accept queue."""

from __future__ import annotations

import math
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rsft.config import ConfigError
from rsft.data_level.online import (
    AcceptQueue,
    ConfidenceScorer,
    FunctionScorer,
    LossPercentileScorer,
    OnlineEnvelope,
    ScoreError,
    make_scorer,
)
from rsft.rule import EnvelopeError
from rsft.training.config import RejectionConfig

MODULE = "rsft_online_test_fns"


@pytest.fixture
def user_fns(monkeypatch):
    """A throwaway module of weight functions, importable as ``rsft_online_test_fns:name``."""
    mod = types.ModuleType(MODULE)
    monkeypatch.setitem(sys.modules, MODULE, mod)

    def add(name, value):
        setattr(mod, name, value)
        return f"{MODULE}:{name}"

    return add


def _batch(n=4, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=gen)
    labels = torch.randint(0, classes, (n,), generator=gen)
    batch = {
        "features": torch.randn(n, 5, generator=gen),
        "labels": labels,
        "index": torch.arange(10, 10 + n),
    }
    return logits, labels, batch


# --------------------------------------------------------------------------- confidence


def test_confidence_weight_is_one_over_the_true_label_probability():
    logits, labels, batch = _batch(6)
    scorer = ConfidenceScorer()
    raw = scorer.raw(logits, labels, batch)
    p = torch.softmax(logits.double(), -1)[torch.arange(6), labels]
    assert torch.allclose(raw.double(), -torch.log(p), atol=1e-6)
    log_w = scorer.log_weights(raw)
    assert log_w.dtype == torch.float64
    assert torch.allclose(log_w.exp(), 1 / p, rtol=1e-5)  # w = 1 / p(y|x)
    assert not scorer.fixed_envelope


def test_confidence_is_finite_for_a_confidently_wrong_model():
    logits = torch.tensor([[1000.0, -1000.0], [-1000.0, 1000.0]])
    raw = ConfidenceScorer().raw(logits, torch.tensor([1, 1]), {})
    assert torch.isfinite(raw).all()
    assert raw[0] == pytest.approx(2000.0) and raw[1] == pytest.approx(0.0)


# --------------------------------------------------------------------------- loss percentile


def _hand_percentiles(history, losses, beta, floor):
    """P(L' <= L) over the recent losses (this round included), ** beta, at least floor."""
    out = []
    for loss in losses:
        pct = sum(h <= loss for h in history) / len(history)
        out.append(max(floor, pct**beta))
    return out


def test_loss_percentile_raw_is_the_per_sample_cross_entropy():
    logits, labels, batch = _batch(5)
    raw = LossPercentileScorer().raw(logits, labels, batch)
    assert torch.allclose(raw, F.cross_entropy(logits, labels, reduction="none"))


@pytest.mark.parametrize("beta", [1.0, 2.0, 0.5])
def test_loss_percentile_matches_a_hand_computation(beta):
    scorer = LossPercentileScorer(beta=beta, floor=0.0, window=100)
    first = [0.5, 0.1, 0.9, 0.3]
    second = [0.2, 0.9, 1.5, 0.05]
    # Round 1: percentiles among its own four losses.
    a = scorer.log_weights(torch.tensor(first)).exp().tolist()
    assert a == pytest.approx(_hand_percentiles(first, first, beta, 0.0))
    assert a == pytest.approx([(3 / 4) ** beta, (1 / 4) ** beta, 1.0, (2 / 4) ** beta])
    # Round 2: among all eight (ties count as <=: 0.9 is at 7/8).
    b = scorer.log_weights(torch.tensor(second)).exp().tolist()
    assert b == pytest.approx(_hand_percentiles(first + second, second, beta, 0.0))
    assert b == pytest.approx([(3 / 8) ** beta, (7 / 8) ** beta, 1.0, (1 / 8) ** beta])
    assert scorer.fixed_envelope  # the weights are probabilities: M = 1


def test_loss_percentile_floor_and_beta():
    scorer = LossPercentileScorer(beta=3.0, floor=0.2, window=100)
    losses = [float(i) for i in range(10)]  # percentiles 0.1, 0.2, ..., 1.0
    a = scorer.log_weights(torch.tensor(losses)).exp()
    expected = torch.tensor([max(0.2, ((i + 1) / 10) ** 3) for i in range(10)], dtype=torch.float64)
    assert torch.allclose(a, expected)
    assert a.min() == pytest.approx(0.2)  # the floor: 0.1**3, 0.2**3, ... are lifted to 0.2
    assert (a[5:] > 0.2).all()  # 0.6**3 = 0.216 and above are untouched


def test_loss_percentile_window_forgets_old_losses():
    scorer = LossPercentileScorer(beta=1.0, floor=0.0, window=4)
    scorer.log_weights(torch.tensor([10.0, 10.0, 10.0, 10.0]))  # all higher than what follows
    a = scorer.log_weights(torch.tensor([1.0, 2.0])).exp().tolist()
    # Ranked among the window before it slides (4 tens) plus the round: [10]*4 + [1, 2].
    assert a == pytest.approx([1 / 6, 2 / 6])
    assert scorer.history.tolist() == [10.0, 10.0, 1.0, 2.0]  # then the window keeps 4
    b = scorer.log_weights(torch.tensor([3.0])).exp().tolist()
    assert b == pytest.approx([3 / 5])  # among [10, 10, 1, 2, 3]: the oldest tens are gone


def test_loss_percentile_zero_floor_never_gives_minus_infinity():
    scorer = LossPercentileScorer(beta=50.0, floor=0.0, window=10)
    log_w = scorer.log_weights(torch.tensor([float(i) for i in range(10)]))
    assert torch.isfinite(log_w).all()
    assert (log_w <= 0).all()


def test_loss_percentile_state_round_trip():
    a = LossPercentileScorer(beta=2.0, floor=0.05, window=8)
    a.log_weights(torch.tensor([0.3, 0.1, 0.7]))
    b = LossPercentileScorer(beta=2.0, floor=0.05, window=8)
    b.load_state_dict(a.state_dict())
    nxt = torch.tensor([0.2, 0.5])
    assert torch.equal(a.log_weights(nxt), b.log_weights(nxt))


# --------------------------------------------------------------------------- user function


def test_function_scorer_passes_inputs_without_labels_or_index(user_fns):
    seen = {}

    def fn(inputs, labels, logits):
        seen.update(inputs=inputs, labels=labels, logits=logits)
        return np.arange(len(labels), dtype=np.float32) + 1  # numpy is accepted

    scorer = FunctionScorer(user_fns("fn", fn))
    logits, labels, batch = _batch(4)
    raw = scorer.raw(logits.requires_grad_(), labels, batch)
    assert set(seen["inputs"]) == {"features"}
    assert torch.equal(seen["inputs"]["features"], batch["features"])
    assert torch.equal(seen["labels"], labels)
    assert not seen["logits"].requires_grad  # detached
    assert raw.dtype == torch.float64 and raw.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert torch.allclose(scorer.log_weights(raw), torch.log(raw))


def test_function_scorer_zero_weight_is_minus_infinity(user_fns):
    scorer = FunctionScorer(user_fns("fn", lambda i, y, z: [0.0, 2.0, 0.0, 1.0]))
    logits, labels, batch = _batch(4)
    log_w = scorer.log_weights(scorer.raw(logits, labels, batch))
    assert log_w[0] == -math.inf and log_w[2] == -math.inf
    assert log_w[1] == pytest.approx(math.log(2.0)) and log_w[3] == 0.0


@pytest.mark.parametrize(
    "out, expected",
    [
        pytest.param([1.0, float("nan"), 1.0, 1.0], ["returned nan for sample 11"], id="nan"),
        pytest.param([1.0, 1.0, float("inf"), 1.0], ["returned inf for sample 12"], id="inf"),
        pytest.param([1.0, 1.0, 1.0, -0.5], ["returned -0.5 for sample 13"], id="negative"),
        pytest.param([[1.0]] * 4, ["returned shape (4, 1) for a batch of 4"], id="column"),
        pytest.param([1.0] * 3, ["returned shape (3,) for a batch of 4"], id="too-few"),
        pytest.param(1.0, ["returned shape () for a batch of 4"], id="scalar"),
    ],
)
def test_function_scorer_refuses_bad_weights(user_fns, out, expected):
    path = user_fns("bad", lambda i, y, z: out)
    logits, labels, batch = _batch(4)
    with pytest.raises(ScoreError) as info:
        FunctionScorer(path).raw(logits, labels, batch)
    msg = str(info.value)
    assert path in msg
    for part in expected:
        assert part in msg
    assert "finite and >= 0" in msg or "one non-negative number per sample" in msg


def test_function_scorer_wraps_the_users_exception(user_fns):
    def fn(inputs, labels, logits):
        return inputs["pixel_values"]

    path = user_fns("fn", fn)
    logits, labels, batch = _batch(4)
    with pytest.raises(ScoreError, match="raised KeyError: 'pixel_values'") as info:
        FunctionScorer(path).raw(logits, labels, batch)
    assert path in str(info.value)
    assert isinstance(info.value.__cause__, KeyError)


def test_function_scorer_import_errors(user_fns):
    with pytest.raises(ValueError, match="cannot import module 'rsft_no_such_module'"):
        FunctionScorer("rsft_no_such_module:fn")
    with pytest.raises(ValueError, match="has no 'missing'"):
        FunctionScorer(f"{MODULE}:missing")
    with pytest.raises(ValueError, match="is not callable"):
        FunctionScorer(user_fns("NOT_CALLABLE", 3.0))


def test_make_scorer_picks_the_configured_source(user_fns):
    path = user_fns("fn", lambda i, y, z: [1.0] * len(y))
    assert isinstance(make_scorer(RejectionConfig(weights="confidence")), ConfidenceScorer)
    lp = make_scorer(RejectionConfig(weights="loss_percentile", beta=2.0, floor=0.1, window=7))
    assert isinstance(lp, LossPercentileScorer)
    assert (lp.beta, lp.floor, lp.window) == (2.0, 0.1, 7)
    fs = make_scorer(RejectionConfig(weights="model_function", function=path))
    assert isinstance(fs, FunctionScorer) and fs.path == path
    with pytest.raises(ValueError, match="not a model-aware weight source"):
        make_scorer(SimpleNamespace(weights="balance"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weights": "loss_percentile", "window": 0}, "rejection.window must be >= 1"),
        ({"weights": "loss_percentile", "floor": 2.0}, r"rejection.floor must be in \[0, 1\]"),
        ({"weights": "loss_percentile", "floor": -0.1}, r"rejection.floor must be in \[0, 1\]"),
        ({"weights": "loss_percentile", "beta": 0.0}, "rejection.beta must be > 0"),
        ({"weights": "model_function"}, "model_function needs rejection.function"),
    ],
)
def test_bad_model_aware_options_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        RejectionConfig(**kwargs)


def test_model_aware_sources_are_flagged():
    for w in ("confidence", "loss_percentile"):
        assert RejectionConfig(weights=w).model_aware
    assert RejectionConfig(weights="model_function", function="m:f").model_aware
    assert not RejectionConfig(weights="balance").model_aware
    assert not RejectionConfig().model_aware


# --------------------------------------------------------------------------- envelope


def test_envelope_max_follows_a_sliding_window():
    env = OnlineEnvelope("max", 0.99, None, window=3)
    assert env.update(torch.log(torch.tensor([1.0, 5.0], dtype=torch.float64))) == pytest.approx(
        math.log(5.0)
    )
    # 5 is still among the last three.
    assert env.update(torch.log(torch.tensor([2.0], dtype=torch.float64))) == pytest.approx(
        math.log(5.0)
    )
    # Now the window is [2, 3, 1]: the old maximum 5 has left it, M falls (drift).
    log_m = env.update(torch.log(torch.tensor([3.0, 1.0], dtype=torch.float64)))
    assert log_m == pytest.approx(math.log(3.0))
    assert [math.exp(x) for x in env.recent] == pytest.approx([2.0, 3.0, 1.0])


def test_envelope_quantile_of_the_window():
    env = OnlineEnvelope("quantile", 0.5, None, window=100)
    log_w = torch.log(torch.tensor([1.0, 2.0, 3.0, 4.0, 100.0], dtype=torch.float64))
    assert env.update(log_w) == pytest.approx(math.log(3.0))  # the median, not the outlier
    env = OnlineEnvelope("quantile", 0.75, None, window=100)
    x = torch.arange(1, 101, dtype=torch.float64)
    assert env.update(x) == pytest.approx(float(torch.quantile(x, 0.75)))


def test_envelope_fixed_refuses_a_weight_above_it_unless_counted():
    env = OnlineEnvelope("fixed", 0.99, 2.5, window=4)  # on_violation: error, the default
    assert env.update(torch.log(torch.tensor([2.5, 1.0], dtype=torch.float64))) == pytest.approx(
        math.log(2.5)
    )
    with pytest.raises(EnvelopeError, match=r"M=2.5 is below 1 weight"):
        env.update(torch.tensor([100.0], dtype=torch.float64))
    env = OnlineEnvelope("fixed", 0.99, 2.5, window=4, on_violation="count")
    assert env.update(torch.tensor([100.0], dtype=torch.float64)) == pytest.approx(math.log(2.5))
    assert len(env.recent) == 0


def test_envelope_window_keeps_zero_weights():
    """The window is the last scored samples, zeros included (a quantile ranks them all);
    M comes from the positive ones, and a window of zeros alone has no M yet."""
    env = OnlineEnvelope("max", 0.99, None, window=3)
    assert env.update(torch.full((4,), -math.inf, dtype=torch.float64)) == 0.0  # nothing yet
    log_m = env.update(torch.tensor([-math.inf, 0.5, -math.inf], dtype=torch.float64))
    assert log_m == pytest.approx(0.5)
    assert env.recent.tolist() == [-math.inf, 0.5, -math.inf]
    env = OnlineEnvelope("quantile", 0.5, None, window=4)
    log_w = torch.log(torch.tensor([0.0, 0.0, 0.0, 2.0, 4.0], dtype=torch.float64))
    assert env.update(log_w) == pytest.approx(math.log(2.0))  # the median of [0, 0, 2, 4]


def test_envelope_state_round_trip():
    a = OnlineEnvelope("max", 0.99, None, window=3)
    a.update(torch.tensor([1.0, 4.0, 2.0], dtype=torch.float64))
    b = OnlineEnvelope("max", 0.99, None, window=3)
    b.load_state_dict(a.state_dict())
    nxt = torch.tensor([0.5], dtype=torch.float64)
    assert a.update(nxt) == b.update(nxt) == pytest.approx(4.0)
    assert b.window == 3 and len(b.recent) == 3


# --------------------------------------------------------------------------- queue


def test_queue_is_fifo_and_pops_at_most_what_it_holds():
    q = AcceptQueue()
    q.extend([5, 3, 9], [1.0, 2.0, 0.5])
    q.extend([1], [4.0])
    assert len(q) == 4
    assert q.pop(3) == [(5, 1.0), (3, 2.0), (9, 0.5)]
    assert q.pop(3) == [(1, 4.0)]
    assert q.pop(3) == [] and len(q) == 0


def test_queue_state_round_trip():
    q = AcceptQueue()
    q.extend([7, 2], [1.5, 0.25])
    r = AcceptQueue()
    r.load_state_dict(q.state_dict())
    assert r.pop(10) == [(7, 1.5), (2, 0.25)]
    assert all(isinstance(i, int) for i, _ in q.pop(10))
