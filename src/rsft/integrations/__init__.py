"""Recipes for using rsft's rejection sampling inside other training loops.

- :mod:`rsft.integrations.hf_trainer`: :class:`RejectionTrainer`, a ``transformers.Trainer``
  that trains each epoch on the samples a :class:`~rsft.data_level.RejectionSampler` accepts.
"""

from rsft.integrations.hf_trainer import RejectionTrainer

__all__ = ["RejectionTrainer"]
