"""The generation level: training samples are generated, then kept by the rejection rule.

``explicit``: exact rejection sampling from distributions with known densities.
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


def __getattr__(name: str):
    # The pipeline pulls in TRL, datasets and transformers (seconds to import): load it only
    # when asked for, so `rejection_sample` stays a light import.
    if name == "RFTPipeline":
        from rsft.generation.pipeline import RFTPipeline

        return RFTPipeline
    raise AttributeError(f"module 'rsft.generation' has no attribute {name!r}")


__all__ = [
    "RejectionBudgetError",
    "RejectionResult",
    "RFTConfig",
    "RFTPipeline",
    "class_conditional_sample",
    "rejection_sample",
]
