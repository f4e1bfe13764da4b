"""The data level: choose which training samples the model learns from."""

from rsft.data_level.sampler import RejectionSampler

__all__ = ["RejectionSampler"]
