"""Data-level weights: statistical checks on known distributions, and every error path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from rsft.data_level.weights import (
    balance_weights,
    column_weights,
    density_ratio_weights,
    function_weights,
)

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # Tiny logistic fits are dominated by BLAS thread start-up on a shared 2-core box.
    with threadpool_limits(1):
        yield


# --------------------------------------------------------------------------- density ratio


def test_density_ratio_recovers_gaussian_shift():
    """Source N(0, I), target N((1, 1), I): the true log ratio is x1 + x2 - 1."""
    rng = np.random.default_rng(0)
    xs = rng.normal(0.0, 1.0, (2000, 2))
    xt = rng.normal(1.0, 1.0, (2000, 2))
    dr = density_ratio_weights(xs, xt, seed=0)

    assert dr.weights.shape == (2000,) and dr.weights.dtype == np.float64
    true_log_w = xs.sum(axis=1) - 1.0
    assert np.corrcoef(np.log(dr.weights), true_log_w)[0, 1] > 0.95
    assert spearmanr(dr.weights, true_log_w).statistic > 0.95
    # Reweighting moves the source mean from ~0 to the target mean (ESS ~ n/7: loose tol).
    weighted_mean = (dr.weights[:, None] * xs).sum(axis=0) / dr.weights.sum()
    np.testing.assert_allclose(weighted_mean, [1.0, 1.0], atol=0.2)
    assert abs(dr.weights.mean() - 1.0) < 0.15  # E_source[w] = 1 for a true ratio
    # Bayes AUC for a mean shift d between unit Gaussians is Phi(|d| / sqrt(2)) = Phi(1) ~ 0.84.
    assert 0.8 < dr.auc < 0.88

    fresh = rng.normal(0.0, 1.0, (500, 2))
    assert np.corrcoef(np.log(dr.predict(fresh)), fresh.sum(axis=1) - 1.0)[0, 1] > 0.95


def test_same_distribution_gives_auc_half_and_weights_near_one():
    rng = np.random.default_rng(1)
    dr = density_ratio_weights(rng.normal(size=(500, 3)), rng.normal(size=(500, 3)))
    assert abs(dr.auc - 0.5) < 0.07
    assert np.median(np.abs(np.log(dr.weights))) < 0.15


def test_auc_is_out_of_fold():
    """Few samples, many features: in-sample the classifier 'separates' identical domains.

    The all-data classifier scored on its own training data reaches AUC > 0.9; the reported
    AUC must stay near 0.5, which only cross-fitting gives.
    """
    rng = np.random.default_rng(2)
    xs, xt = rng.normal(size=(30, 120)), rng.normal(size=(30, 120))
    dr = density_ratio_weights(xs, xt, calibration="isotonic", seed=2)
    x, y = np.concatenate([xs, xt]), np.r_[np.zeros(30), np.ones(30)]
    assert roc_auc_score(y, dr.classifier.predict_proba(x)[:, 1]) > 0.9  # the leak exists
    assert dr.auc < 0.65


def test_source_weights_come_from_models_that_never_saw_the_sample():
    """Rebuild the cross-fit by hand: each source weight is the odds of its fold's model."""
    rng = np.random.default_rng(3)
    xs, xt = rng.normal(size=(40, 5)), rng.normal(0.5, 1.0, size=(60, 5))
    dr = density_ratio_weights(xs, xt, seed=7, n_folds=4)

    x, y = np.concatenate([xs, xt]), np.r_[np.zeros(40, dtype=int), np.ones(60, dtype=int)]
    expected = np.empty(40)
    for train, test in StratifiedKFold(4, shuffle=True, random_state=7).split(x, y):
        assert not np.isin(test, train).any()
        p = clone(dr.classifier).fit(x[train], y[train]).predict_proba(x[test])[:, 1]
        src = test < 40
        expected[test[src]] = p[src] / (1 - p[src]) * 40 / 60
    np.testing.assert_allclose(dr.weights, expected, rtol=1e-10)
    # ...and not the all-data classifier's in-sample predictions.
    assert not np.allclose(dr.weights, dr.predict(xs))


def test_density_ratio_is_reproducible():
    rng = np.random.default_rng(4)
    xs, xt = rng.normal(size=(50, 2)), rng.normal(1.0, 1.0, size=(50, 2))
    a = density_ratio_weights(xs, xt, seed=3).weights
    np.testing.assert_array_equal(a, density_ratio_weights(xs, xt, seed=3).weights)


@pytest.mark.parametrize(
    ("source", "target", "kwargs", "match"),
    [
        (np.full((10, 2), np.nan), np.zeros((10, 2)), {}, r"source_features has 10 row"),
        (np.zeros((10, 2)), np.zeros((10, 3)), {}, r"2 columns .* 3"),
        (np.zeros(10), np.zeros((10, 1)), {}, r"2-D .*reshape"),
        (np.zeros((10, 2)), np.zeros((3, 2)), {}, r"target has 3 sample.*lower n_folds"),
        (np.zeros((10, 2)), np.zeros((10, 2)), {"n_folds": 1}, r"n_folds must be"),
        (np.zeros((10, 2)), np.zeros((10, 2)), {"calibration": "platt"}, r"calibration"),
        ([["a", "b"]] * 10, np.zeros((10, 2)), {}, r"source_features must be numeric"),
    ],
)
def test_density_ratio_input_errors(source, target, kwargs, match):
    with pytest.raises(ValueError, match=match):
        density_ratio_weights(source, target, **kwargs)


def test_density_ratio_nan_names_the_row():
    xt = np.zeros((10, 2))
    xt[7, 1] = np.inf
    with pytest.raises(ValueError, match=r"target_features .*first rows \[7\]"):
        density_ratio_weights(np.zeros((10, 2)), xt)


def test_predict_checks_columns():
    rng = np.random.default_rng(5)
    dr = density_ratio_weights(rng.normal(size=(20, 2)), rng.normal(size=(20, 2)))
    with pytest.raises(ValueError, match="3 columns .* fitted on 2"):
        dr.predict(np.zeros((4, 3)))


# --------------------------------------------------------------------------- balance


def test_balance_uniform_makes_group_totals_equal():
    groups = ["a"] * 70 + ["b"] * 20 + ["c"] * 10
    w = balance_weights(groups)
    totals = {g: w[np.array(groups) == g].sum() for g in "abc"}
    np.testing.assert_allclose(list(totals.values()), [100 / 3] * 3)
    assert w.sum() == pytest.approx(100)


def test_balance_matches_target_dict():
    groups = np.array([0] * 50 + [1] * 30 + [2] * 20)
    target = {0: 0.2, 1: 0.3, 2: 0.5}
    w = balance_weights(groups, target)
    for g, p in target.items():
        assert w[groups == g].sum() / w.sum() == pytest.approx(p, abs=1e-12)


def test_balance_zero_probability_drops_a_group():
    w = balance_weights(["x", "y", "y"], {"x": 0.0, "y": 1.0, "absent": 0.0})
    np.testing.assert_allclose(w, [0.0, 1.5, 1.5])


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ({"a": 0.5}, r"\['b'\] occur in the data but not in target"),
        ({"a": 0.4, "b": 0.4, "z": 0.2}, r"group 'z' .* no sample has that group"),
        ({"a": 0.5, "b": 0.6}, r"sum to 1.1"),
        ({"a": -0.5, "b": 1.5}, r"'a' is -0.5"),
        ({"a": float("nan"), "b": 1.0}, r"'a' is nan"),
        ({"a": 0.0, "b": 0.0}, r"sum to 0"),
    ],
)
def test_balance_target_errors(target, match):
    with pytest.raises(ValueError, match=match):
        balance_weights(["a", "b", "b"], target)


def test_balance_empty_and_unhashable():
    with pytest.raises(ValueError, match="empty"):
        balance_weights([])
    with pytest.raises(ValueError, match="hashable"):
        balance_weights([["a"], ["b"]])


# --------------------------------------------------------------------------- column


def test_column_weights_pass_through():
    w = column_weights([1, 0, 2.5])
    assert w.dtype == np.float64
    np.testing.assert_array_equal(w, [1.0, 0.0, 2.5])


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([1.0, 2.0, -3.0], r"weight column: 1 weight\(s\) are negative \(first at index \[2\]"),
        ([1.0, np.nan, 1.0], r"weight column: .*NaN or infinite \(first at index \[1\]"),
        ([1.0, "heavy", 1.0], r"weight column: value at index 1 is 'heavy' \(str\)"),
        ([1.0, None], r"value at index 1 is None"),
        ([0, 0, 0], r"every weight is zero"),
        ([], r"no samples"),
        ([[1.0, 2.0]], r"1-D"),
    ],
)
def test_column_weights_errors(values, match):
    with pytest.raises(ValueError, match=match):
        column_weights(values)


# --------------------------------------------------------------------------- function

EXAMPLES = [{"text": "ab", "label": 1}, {"text": "abcd", "label": 0}, {"text": "a"}]


@pytest.fixture
def fns(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))


def test_function_weights_unbatched_and_batched_agree(fns):
    w = function_weights("weight_fns:length", EXAMPLES)
    np.testing.assert_array_equal(w, [2.0, 4.0, 1.0])
    np.testing.assert_array_equal(function_weights("weight_fns:length_numpy", EXAMPLES), w)
    np.testing.assert_array_equal(
        function_weights("weight_fns:batched_length", EXAMPLES, batched=True), w
    )


def test_function_raising_names_sample_and_chains(fns):
    with pytest.raises(ValueError, match=r"'weight_fns:needs_label' raised KeyError at sample 2"):
        function_weights("weight_fns:needs_label", EXAMPLES)
    try:
        function_weights("weight_fns:needs_label", EXAMPLES)
    except ValueError as err:
        assert isinstance(err.__cause__, KeyError)


@pytest.mark.parametrize(
    ("path", "batched", "match"),
    [
        ("weight_fns:batched_too_short", True, r"returned 2 weights for 3 samples"),
        ("weight_fns:batched_scalar", True, r"returned float; it must return a sequence"),
        ("weight_fns:returns_text", False, r"value at index 0 is 'ab' \(str\), not a number"),
        ("weight_fns:NOT_CALLABLE", False, r"is a float, not callable"),
        ("weight_fns:no_such_fn", False, r"has no 'no_such_fn'"),
        ("no_such_module_for_rsft:fn", False, r"cannot import module"),
        ("not an import path", False, r"not an import path"),
    ],
)
def test_function_weights_errors(fns, path, batched, match):
    with pytest.raises(ValueError, match=match):
        function_weights(path, EXAMPLES, batched=batched)


def test_function_negative_weight_names_function_and_index(fns):
    with pytest.raises(
        ValueError, match=r"'weight_fns:signed': 1 weight\(s\) are negative .*\[1\]"
    ):
        function_weights("weight_fns:signed", [{"value": 1}, {"value": -2}])
