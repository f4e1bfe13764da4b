"""The ``rejection`` section of a training config: which samples the model learns from.

The data level of RSFT: where each sample's weight comes from, and whether it rejects samples
or weights their loss. Checked when the config is read, before any model or data loads.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

from rsft.config import ConfigError, check_number, opt, section
from rsft.rule import Envelope


@section("rejection.envelope")
@dataclass
class EnvelopeConfig:
    policy: Literal["max", "quantile", "fixed"] = opt(
        "max",
        help="How M is set: max (the largest weight: exact), quantile (a high quantile: "
        "more accepted, weights above it counted as violations), fixed (value).",
    )
    quantile: float = opt(
        0.99,
        gt=0,
        le=1,
        fix="Try 0.99, or policy: max for the exact M.",
        only_with=("policy", ("quantile",)),
        help="With policy: quantile, which quantile of all the weights (zeros included): "
        "about 1 - quantile of the samples are violations.",
    )
    value: float | None = opt(
        None, only_with=("policy", ("fixed",)), help="With policy: fixed, the envelope M."
    )
    on_violation: Literal["error", "count"] | None = opt(
        None, help="What a weight above M does: error (the default for fixed) or count."
    )

    def __post_init__(self) -> None:
        positive = self.value is not None and math.isfinite(self.value) and self.value > 0
        if self.policy == "fixed" and not positive:
            raise ConfigError(
                f"rejection.envelope.value: policy 'fixed' needs a positive finite value M, got "
                f"{self.value}. Set rejection.envelope.value, or use policy: max."
            )
        try:  # the rule's own checks, should they ever hold more than the ones above
            Envelope(self.policy, self.quantile, self.value, self.on_violation)
        except ValueError as err:
            raise ConfigError(f"rejection.envelope: {err}") from err


MODEL_AWARE = ("confidence", "loss_percentile", "model_function")


@section("rejection")
@dataclass
class RejectionConfig:
    """Which samples the model learns from (the data level of RSFT)."""

    weights: Literal[
        "none",
        "density_ratio",
        "balance",
        "function",
        "column",
        "confidence",
        "loss_percentile",
        "model_function",
    ] = opt(
        "none",
        help="Weight source. Known before training: none (plain fine-tuning); density_ratio "
        "(p_target/p_source from a domain classifier on the model's features); balance (equal "
        "total weight per group); function (your fn(example)); column (a weight column). "
        "Model-aware, scored by a no-grad forward of the current model every batch: "
        "confidence (w = 1/p(y|x), the inverse of the model's probability of the true "
        "label: the samples it is least sure of weigh most); loss_percentile "
        "(Selective-Backprop: the loss's percentile among recent losses, to the power beta); "
        "model_function (your fn(inputs, labels, logits) -> weights).",
    )
    mode: Literal["reject", "weight"] = opt(
        "reject",
        help="reject: keep each sample with probability min(1, w/M), redrawn every "
        "epoch; weight: keep every sample and weight its loss by w (importance weighting).",
    )
    envelope: EnvelopeConfig = opt(factory=EnvelopeConfig, help="The envelope M.")
    target_unlabelled: str | None = opt(
        None,
        only_with=("weights", ("density_ratio",)),
        help="density_ratio: unlabelled samples of the target task (a folder or table).",
    )
    calibration: Literal["sigmoid", "isotonic"] = opt(
        "sigmoid",
        only_with=("weights", ("density_ratio",)),
        help="density_ratio: probability calibration of the domain classifier.",
    )
    balance_column: str | None = opt(
        None,
        help="balance: the group column (class, modality, speaker, domain); default: "
        "data.group_column, else the label.",
    )
    balance_target: dict[str | int, float] | None = opt(
        None,
        help="balance: each group's target share of the total weight, >= 0 (0 drops the "
        "group) and summing to 1, keyed by the group's label (default: equal shares).",
    )
    function: str | None = opt(
        None,
        only_with=("weights", ("function", "model_function")),
        help="function: import path 'pkg.module:fn' of fn(example: dict) -> float; "
        "model_function: of fn(inputs: dict, labels, logits) -> one weight per sample. rsft "
        "imports and runs that code (docs/security.md).",
    )
    batched: bool = opt(
        False,
        only_with=("weights", ("function",)),
        help="function: call fn(list of examples) -> list of floats.",
    )
    column: str | None = opt(
        None,
        only_with=("weights", ("column",)),
        help="column: the weight column of the training table.",
    )
    seed: int | None = opt(None, help="Seed of the acceptance coins (default: the run's seed).")
    beta: float = opt(
        1.0,
        gt=0,
        only_with=("weights", ("loss_percentile",)),
        help="loss_percentile: acceptance = percentile ** beta.",
    )
    floor: float = opt(
        0.01,
        ge=0,
        le=1,
        only_with=("weights", ("loss_percentile",)),
        help="loss_percentile: the smallest acceptance probability.",
    )
    window: int = opt(
        1024,
        ge=1,
        help="Model-aware sources: how many recent samples the loss percentiles and the online "
        "envelope M are taken over (M follows the data as it drifts).",
    )
    unbiased: bool = opt(
        False,
        help="Model-aware, mode reject: weight each accepted sample's loss by 1/a "
        "(self-normalized in the batch), so the step estimates the full-batch gradient.",
    )

    @property
    def model_aware(self) -> bool:
        """True when the weights depend on the current model (scored during training)."""
        return self.weights in MODEL_AWARE

    def _check_balance_target(self) -> None:
        """The shares balance_weights needs, checked before the data loads (only which groups
        occur must wait for it)."""
        target = self.balance_target
        if target is None:
            return
        fix = (
            "Give each group's share of the total weight, e.g. {a: 0.7, b: 0.3}, or leave "
            "rejection.balance_target unset (null) for equal shares."
        )
        if not isinstance(target, dict) or not target:
            raise ConfigError(f"rejection.balance_target: expected groups and shares. {fix}")
        for group, share in target.items():
            name = f"rejection.balance_target.{group}"
            if not isinstance(share, numbers.Real) or isinstance(share, bool):
                raise ConfigError(f"{name}: expected a number, got {share!r}.")
            check_number(name, share, ge=0, fix="A share is >= 0; 0 drops the group.")
        total = math.fsum(target.values())
        # balance_weights' own tolerance: shares written to 3 decimals still sum to 1.
        if not math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-3):
            raise ConfigError(
                f"rejection.balance_target: the shares sum to {total:g}, not 1. {fix}"
            )

    def __post_init__(self) -> None:
        self._check_balance_target()
        needs = {
            "density_ratio": "target_unlabelled",
            "function": "function",
            "model_function": "function",
            "column": "column",
        }
        key = needs.get(self.weights)
        if key and not getattr(self, key):
            raise ConfigError(f"rejection.weights: {self.weights} needs rejection.{key}.")
        if self.weights == "none" and self.mode == "weight":
            raise ConfigError("rejection.mode: weight needs a weight source (rejection.weights).")
