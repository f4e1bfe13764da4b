"""Why a training run stops before its end: not bugs but outcomes (``rsft train`` prints
``training stopped: <message>`` and exits 1), each message saying what to change."""

from __future__ import annotations

from typing import Any


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""

    @classmethod
    def at(cls, loss: float, state: Any, fix: str, last: Any) -> NonFiniteLossError:
        """The error for ``loss`` at ``state``'s step: where, what to change, and the last
        checkpoint to go back to."""
        return cls(
            f"the training loss is {loss} at epoch {state.epoch + 1}, step "
            f"{state.step_in_epoch + 1} (global step {state.global_step + 1}). "
            f"{fix} Last checkpoint: {last or 'none'}."
        )


class NothingTrainedError(RuntimeError):
    """Rejection accepted no sample in the whole run: not a single step was taken."""
