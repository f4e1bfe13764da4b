"""The generation level: training samples are generated, then kept by the rejection rule.

``explicit``: exact rejection sampling from distributions with known densities (seed 002).
``pipeline``: rejection-sampling fine-tuning of a language model, round after round:
generate → score (``verifiers``) → accept (``selection``) → deduplicate (``dedup``) →
fine-tune (``sft``, TRL) → evaluate (``metrics``).
"""

from rsft.generation.config import RFTConfig
from rsft.generation.explicit import (
    RejectionBudgetError,
    RejectionResult,
    class_conditional_sample,
    rejection_sample,
)
from rsft.generation.pipeline import RFTPipeline

__all__ = [
    "RejectionBudgetError",
    "RejectionResult",
    "RFTConfig",
    "RFTPipeline",
    "class_conditional_sample",
    "rejection_sample",
]
