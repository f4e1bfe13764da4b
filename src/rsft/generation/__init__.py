"""The generation level: training samples are generated, then kept by the rejection rule.

One round of :class:`~rsft.generation.pipeline.RFTPipeline` (``rsft rft``): generate
(:mod:`.engines`) → score (:mod:`.scoring`) → accept (``selection``) → deduplicate (``dedup``)
→ fine-tune (:mod:`.sft`, TRL) → evaluate (``evaluation``, ``metrics``). The round's own
modules live here; ``config`` holds its options.

Exact rejection sampling from distributions with known densities lives with the rule
(:mod:`rsft.rule.explicit`); its names are importable from here too.
"""

from rsft.generation.config import RFTConfig
from rsft.rule.explicit import (
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
