"""Per-sample weights for the data level, known before training.

Each function returns one float64 weight ``w = p_target / p_source`` per sample, validated
by :func:`rsft.rule.log_weights` so that NaN, infinite, negative or all-zero weights fail
here, naming the sample, instead of silently biasing the rejection step later.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from sklearn.base import ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rsft.imports import import_object
from rsft.rule import log_weights

_EPS = 1e-6  # probability clip: keeps the odds P(t|x)/P(s|x) finite and non-zero
_MIN_PER_DOMAIN = 4  # below this a calibrated classifier cannot be cross-fitted at all


def _validated(weights: np.ndarray, source: str) -> np.ndarray:
    """Run the rule's own checks, prefixing errors with where the weights came from."""
    if weights.size == 0:
        raise ValueError(f"{source}: no samples, so no weights. Check the data is not empty.")
    try:
        log_weights(torch.from_numpy(weights))
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err
    return weights


def _as_float_array(values: Any, source: str) -> np.ndarray:
    """1-D float64 array from numbers, naming the first entry that is not a real number."""
    try:
        arr = np.asarray(values)
    except ValueError:  # ragged, e.g. a list holding a list
        arr = np.empty(len(values), dtype=object)
        arr[:] = list(values)
    if arr.ndim != 1:
        raise ValueError(f"{source}: expected one number per sample (1-D), got shape {arr.shape}.")
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64)
    # The original items, not arr: numpy turns [1.0, "x"] into strings and blames index 0.
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    for i, v in enumerate(items):
        if not isinstance(v, numbers.Real):
            raise ValueError(
                f"{source}: value at index {i} is {v!r} ({type(v).__name__}), not a number. "
                "Weights must be numeric; fix or drop that sample."
            )
    return arr.astype(np.float64)


# --------------------------------------------------------------------------- density ratio


def _features(x: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric features (n_samples, n_features): {err}") from err
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (n_samples, n_features), got shape {arr.shape}. "
            "For a single feature use x.reshape(-1, 1)."
        )
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(
            f"{name} has {int(bad.sum())} row(s) with NaN or infinite values (first rows "
            f"{rows}). Impute or drop them before estimating the density ratio."
        )
    return arr


@dataclass
class DensityRatio:
    """Estimated ``w(x) = p_target(x) / p_source(x)`` from a domain classifier.

    ``weights`` are for the source samples, from out-of-fold predictions so a sample's own
    label never informs its weight. ``auc`` is the out-of-fold ROC AUC of the classifier:
    0.5 means the domains look identical (weights near 1), near 1.0 means little overlap
    (a few huge weights, low acceptance). ``classifier`` is refitted on all data and scores
    new samples through :meth:`predict`.
    """

    weights: np.ndarray
    auc: float
    classifier: ClassifierMixin
    n_source: int
    n_target: int
    n_features: int

    def predict(self, features: Any) -> np.ndarray:
        """Weights for new samples (not seen in fitting), from the all-data classifier."""
        x = _features(features, "features")
        if x.shape[1] != self.n_features:
            raise ValueError(
                f"features have {x.shape[1]} columns but the classifier was fitted on "
                f"{self.n_features}; use the same feature extractor."
            )
        p = self.classifier.predict_proba(x)[:, 1]
        return _validated(_odds(p, self.n_source, self.n_target), "density ratio")


def _odds(p_target: np.ndarray, n_source: int, n_target: int) -> np.ndarray:
    """Prior-corrected odds: the classifier saw n_t:n_s, the ratio must not depend on it."""
    p = np.clip(p_target, _EPS, 1.0 - _EPS)
    return (p / (1.0 - p)) * (n_source / n_target)


def density_ratio_weights(
    source_features: Any,
    target_features: Any,
    *,
    seed: int = 0,
    calibration: Literal["sigmoid", "isotonic"] = "sigmoid",
    n_folds: int = 5,
) -> DensityRatio:
    """Weights for source samples that reweight them towards the target distribution.

    A calibrated logistic domain classifier (1 = target, 0 = source) gives ``P(t|x)``; the
    density ratio is its odds times ``n_source / n_target``. Source weights are cross-fitted
    over ``n_folds`` stratified folds, because in-sample probabilities are overconfident and
    would inflate exactly the weights of the samples the classifier memorised.
    """
    if calibration not in ("sigmoid", "isotonic"):
        raise ValueError(f"calibration must be 'sigmoid' or 'isotonic', got {calibration!r}.")
    if not isinstance(n_folds, numbers.Integral) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}.")
    xs = _features(source_features, "source_features")
    xt = _features(target_features, "target_features")
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(
            f"source_features have {xs.shape[1]} columns but target_features have "
            f"{xt.shape[1]}: both domains must be embedded by the same feature extractor."
        )
    need = max(n_folds, _MIN_PER_DOMAIN)
    for name, n in (("source", len(xs)), ("target", len(xt))):
        if n < need:
            raise ValueError(
                f"{name} has {n} sample(s); cross-fitting with n_folds={n_folds} needs at "
                f"least {need} per domain. Add samples or lower n_folds."
            )

    x = np.concatenate([xs, xt])
    y = np.concatenate([np.zeros(len(xs), dtype=int), np.ones(len(xt), dtype=int)])
    # Inner folds calibrate; the smallest outer training fold holds >= 2 per class.
    inner = StratifiedKFold(
        min(3, need - math.ceil(need / n_folds)), shuffle=True, random_state=seed
    )
    base = CalibratedClassifierCV(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        method=calibration,
        cv=inner,
    )

    oof = np.empty(len(y), dtype=np.float64)
    outer = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    for train, test in outer.split(x, y):
        model = clone(base).fit(x[train], y[train])
        oof[test] = model.predict_proba(x[test])[:, 1]

    classifier = clone(base).fit(x, y)
    weights = _odds(oof[: len(xs)], len(xs), len(xt))
    return DensityRatio(
        weights=_validated(weights, "density ratio"),
        auc=float(roc_auc_score(y, oof)),
        classifier=classifier,
        n_source=len(xs),
        n_target=len(xt),
        n_features=xs.shape[1],
    )


# --------------------------------------------------------------------------- balance


def balance_weights(
    groups: Sequence[Hashable], target: Mapping[Hashable, float] | None = None
) -> np.ndarray:
    """``w = target(g) / empirical(g)``: after weighting, group totals follow ``target``.

    ``target=None`` is uniform over the groups present (class/speaker/domain balance). A dict
    must give every group present a probability (0 drops that group) and sum to 1.
    """
    labels = list(groups)
    if not labels:
        raise ValueError("balance: groups is empty; pass one group label per sample.")
    try:
        counts = Counter(labels)
    except TypeError as err:
        raise ValueError(f"balance: group labels must be hashable (str, int, ...): {err}") from err
    n = len(labels)

    if target is None:
        probs = {g: 1.0 / len(counts) for g in counts}
    else:
        probs = {}
        for g, p in target.items():
            if not isinstance(p, numbers.Real) or not math.isfinite(p) or p < 0:
                raise ValueError(
                    f"balance: target probability of group {g!r} is {p!r}; it must be a "
                    "finite number >= 0."
                )
            if g not in counts and p > 0:
                raise ValueError(
                    f"balance: target gives group {g!r} probability {p:g} but no sample has "
                    f"that group (groups present: {sorted(map(repr, counts))}). No weighting "
                    "can create samples; remove it or fix the label."
                )
            probs[g] = float(p)
        missing = [g for g in counts if g not in probs]
        if missing:
            raise ValueError(
                f"balance: groups {missing[:5]!r} occur in the data but not in target; give "
                "each a probability (0 to drop it)."
            )
        total = sum(probs[g] for g in counts)
        if not math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-3):
            raise ValueError(f"balance: target probabilities sum to {total:g}, not 1.")
        probs = {g: probs[g] / total for g in counts}  # exact proportions despite rounding

    per_group = {g: probs[g] * n / c for g, c in counts.items()}
    return _validated(np.array([per_group[g] for g in labels], dtype=np.float64), "balance")


# --------------------------------------------------------------------------- column / function


def column_weights(values: Any) -> np.ndarray:
    """A weight column the user computed: checked, never trusted."""
    return _validated(_as_float_array(values, "weight column"), "weight column")


def function_weights(
    fn_path: str, examples: Sequence[Mapping[str, Any]], *, batched: bool = False
) -> np.ndarray:
    """Weights from the user's function named by import path ``"pkg.mod:fn"``.

    Unbatched: ``fn(example) -> float`` per sample. Batched: ``fn(examples) -> floats`` of the
    same length. Errors name the function and the sample, so a bad row can be found.
    """
    fn = import_object(fn_path, "weight function")
    if not callable(fn):
        raise ValueError(f"weight function {fn_path!r} is a {type(fn).__name__}, not callable.")
    source = f"weight function {fn_path!r}"
    examples = list(examples)

    if batched:
        try:
            out = fn(examples)
        except Exception as err:
            raise ValueError(
                f"{source} raised {type(err).__name__} on the batch of {len(examples)} "
                f"samples: {err}"
            ) from err
        if isinstance(out, (str, bytes)) or not hasattr(out, "__len__"):
            raise ValueError(
                f"{source} (batched) returned {type(out).__name__}; it must return a sequence "
                f"of {len(examples)} numbers, one per example."
            )
        if len(out) != len(examples):
            raise ValueError(
                f"{source} (batched) returned {len(out)} weights for {len(examples)} samples; "
                "it must return exactly one per example."
            )
        values: Any = out.tolist() if hasattr(out, "tolist") else list(out)
    else:
        values = []
        for i, example in enumerate(examples):
            try:
                values.append(fn(example))
            except Exception as err:
                raise ValueError(
                    f"{source} raised {type(err).__name__} at sample {i}: {err}"
                ) from err
        # numpy/torch scalars returned per sample become plain numbers
        values = [
            v.item() if hasattr(v, "item") and getattr(v, "ndim", 1) == 0 else v for v in values
        ]

    arr = np.empty(len(values), dtype=object)
    arr[:] = values  # keeps nested returns (lists) as bad entries instead of a 2-D array
    return _validated(_as_float_array(arr, source), source)
