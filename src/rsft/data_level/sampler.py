"""A ``torch.utils.data.Sampler`` that draws each epoch's accepted indices by rejection.

Weights known before training (density ratio, balance, a column) let the whole epoch be
decided up front: sample ``i`` is kept with probability ``min(1, w_i / M)``. Rejected samples
are never loaded or forwarded, so an epoch costs about ``a`` of a plain one.

Every rank draws the same coins from the same seed, then takes its own shard, so DDP sees one
accepted set. The draw depends only on ``(seed, epoch)``: resuming needs just those two.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from rsft.rule import Envelope, RejectionStats, accept, acceptance_prob, log_weights
from rsft.seeding import torch_generator


class RejectionSampler(Sampler[int]):
    """Accept index ``i`` with probability ``min(1, w_i / M)``, reshuffled each epoch.

    ``weights=None`` accepts everything: a plain shuffled (and sharded) sampler, so plain
    fine-tuning and RSFT run the same loop.
    """

    def __init__(
        self,
        weights: Sequence[float] | torch.Tensor | None = None,
        envelope: Envelope | None = None,
        *,
        num_samples: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        if weights is None:
            if num_samples is None:
                raise ValueError("give either weights or num_samples.")
            self.log_w = torch.zeros(num_samples, dtype=torch.float64)
        else:
            self.log_w = log_weights(torch.as_tensor(weights))
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}.")
        self.envelope = envelope or Envelope()
        self.log_m = self.envelope.log_m(self.log_w)  # raises for a fixed M below the weights
        self.seed = int(seed)
        self.shuffle = shuffle
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.epoch = 0
        self._skip = 0
        self._cache: tuple[int, torch.Tensor] | None = None

    # -- the draw ---------------------------------------------------------------------
    def accepted_indices(self, epoch: int | None = None) -> torch.Tensor:
        """All ranks' accepted indices for ``epoch``, in training order (before sharding)."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        gen = torch_generator(self.seed, "sampler", epoch)
        mask = accept(self.log_w, self.log_m, gen)
        idx = torch.nonzero(mask).flatten()
        if self.shuffle:
            idx = idx[torch.randperm(len(idx), generator=gen)]
        self._cache = (epoch, idx)
        return idx

    def _shard(self, idx: torch.Tensor) -> torch.Tensor:
        if self.num_replicas == 1:
            return idx
        n = len(idx)
        if self.drop_last:
            idx = idx[: n - n % self.num_replicas]
        elif n % self.num_replicas and n:
            # Pad by repeating the list as often as needed, as DistributedSampler does, so
            # every rank gets ceil(n / replicas) indices and runs as many steps: fewer
            # accepted samples than replicas still pad every rank. Nothing accepted leaves
            # every rank empty (the same 0 steps everywhere).
            pad = self.num_replicas - n % self.num_replicas
            idx = torch.cat([idx, idx.repeat(math.ceil(pad / n))[:pad]])
        return idx[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self._shard(self.accepted_indices())[self._skip :].tolist())

    def __len__(self) -> int:
        return max(0, len(self._shard(self.accepted_indices())) - self._skip)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._skip = 0

    def skip(self, n: int) -> None:
        """Leave out this rank's first ``n`` indices of the epoch (resuming mid-epoch)."""
        self._skip = int(n)

    # -- reporting and resuming --------------------------------------------------------
    def stats(self, epoch: int | None = None) -> RejectionStats:
        """Acceptance statistics of one epoch's draw (over the whole pool, all ranks).

        One epoch only: ``epoch`` (default: the epoch last set with :meth:`set_epoch`, so
        after training, the last one). For a whole run, merge the epochs:
        ``total = RejectionStats()`` then ``total.merge(sampler.stats(e))`` for each ``e``.
        """
        mask = torch.zeros(len(self.log_w), dtype=torch.bool)
        mask[self.accepted_indices(epoch)] = True
        return RejectionStats().update(self.log_w, self.log_m, mask)

    @property
    def expected_acceptance(self) -> float:
        return float(acceptance_prob(self.log_w, self.log_m).mean())

    def state_dict(self) -> dict:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "num_samples": len(self.log_w),
            "log_m": self.log_m,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["num_samples"] != len(self.log_w):
            raise ValueError(
                f"the checkpoint's sampler covers {state['num_samples']} samples but the training "
                f"data has {len(self.log_w)}: resume with the same data as the interrupted run."
            )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.log_m = float(state["log_m"])
        self._cache = None
