"""Why a training run stops before its end: not bugs but outcomes (``rsft train`` prints
``training stopped: <message>`` and exits 1), each message saying what to change."""

from __future__ import annotations


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class NothingTrainedError(RuntimeError):
    """Rejection accepted no sample in the whole run: not a single step was taken."""
