"""Recipes for using rsft's rejection sampling inside other training loops.

- :mod:`rsft.integrations.hf_trainer`: :class:`RejectionTrainer`, a ``transformers.Trainer``
  that trains each epoch on the samples a :class:`~rsft.data_level.RejectionSampler` accepts,
  and :func:`text_features`, for density-ratio weights of text.
"""

from rsft.integrations.hf_trainer import RejectionTrainer, text_features

__all__ = ["RejectionTrainer", "text_features"]
