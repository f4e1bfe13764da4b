"""The rejection rule: accept a draw with probability min(1, p / (M q)), in log space."""

from rsft.rule.acceptance import (
    accept,
    accept_given,
    acceptance_log_prob,
    acceptance_prob,
    log_uniform,
    log_weights,
)
from rsft.rule.envelope import Envelope, EnvelopeError
from rsft.rule.stats import RejectionStats

__all__ = [
    "Envelope",
    "EnvelopeError",
    "RejectionStats",
    "accept",
    "accept_given",
    "acceptance_log_prob",
    "acceptance_prob",
    "log_uniform",
    "log_weights",
]
