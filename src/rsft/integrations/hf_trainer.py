"""Rejection-sampling fine-tuning with the Hugging Face ``transformers.Trainer``.

Recipe::

    from rsft.data_level import RejectionSampler
    from rsft.integrations import RejectionTrainer
    from rsft.rule import Envelope

    sampler = RejectionSampler(weights, Envelope("max"), seed=0)  # num_replicas=1, always
    trainer = RejectionTrainer(
        model=model, args=training_args, train_dataset=train_ds, rejection_sampler=sampler
    )
    trainer.train()

Each epoch ``e`` trains on exactly ``sampler.accepted_indices(e)``, in that order: sample ``i``
is kept with probability ``min(1, w_i / M)`` and the rest are never loaded.

**Density-ratio weights for text.** :func:`text_features` gives one feature vector per text
from the model about to be fine-tuned (the input of its classification head, as ``rsft train``
uses); ``density_ratio_weights(text_features(model, tok, train_texts), text_features(model,
tok, target_texts)).weights`` are then the weights ``p_target / p_source`` of the training
rows.

**Distributed training (DDP, FSDP, DeepSpeed).** The Trainer hands its dataloader to
accelerate, which shards *batches* across processes itself. Build the sampler with
``num_replicas=1, rank=0`` (the defaults) on every process: all ranks draw the same accepted set
from the same ``(seed, epoch)`` and accelerate gives each its share. A sampler that shards
itself (``num_replicas > 1``) would be sharded twice and is refused. As with any sampler under
accelerate, when the accepted count does not divide evenly the last batches are completed with
samples from the start of the epoch (accelerate's ``even_batches``).

**What this subclass changes in ``Trainer``** (written against transformers 5.x):

- ``_get_train_sampler`` returns the rejection sampler.
- The epoch reaches the sampler: transformers calls ``train_dataloader.set_epoch(epoch)`` at the
  start of every epoch and accelerate's ``DataLoaderShard.set_epoch`` forwards it to the
  sampler (also through the ``BatchSamplerShard`` used under DDP). ``_run_epoch`` sets it
  explicitly as well, so the draw never depends on that forwarding.
- Epoch lengths: the stock Trainer measures ``len(train_dataloader)`` once, before the first
  epoch, and uses it for every epoch, for ``max_steps`` and for the learning-rate schedule. A
  rejection draw accepts a different number of samples each epoch, so a longer epoch would be
  cut short (and the run stopped early at ``max_steps``). This subclass counts each epoch's
  batches from its own draw (the draw depends only on ``(seed, epoch)``, so the whole run is
  known up front): ``max_steps``, the scheduler, the per-epoch loop bounds and the
  ``resume_from_checkpoint`` position all use the real per-epoch lengths.
- Options that would replace or bypass the sampler are refused with a clear error:
  ``train_sampling_strategy`` other than ``"random"`` (``"group_by_length"``,
  ``"batch_rebalance"``, ``"sequential"``), an ``IterableDataset``, and a dataset whose length
  differs from the number of weights.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import transformers
from torch import nn
from torch.utils.data import DataLoader, IterableDataset
from transformers import Trainer

from rsft.data.split import Collate, ItemDataset
from rsft.data.tables import TextInputs
from rsft.data_level.sampler import RejectionSampler
from rsft.models.heads import find_head
from rsft.models.loading import Classifier, extract_features
from rsft.rule import Envelope

logger = logging.getLogger(__name__)

# The Trainer internals this recipe hooks; checked at construction so a transformers release that
# renames them fails loudly instead of silently training on the wrong epoch lengths.
_HOOKS = ("_get_train_sampler", "set_initial_training_values", "_init_training_state", "_run_epoch")


class RejectionTrainer(Trainer):
    """A ``transformers.Trainer`` whose training sampler is a :class:`RejectionSampler`.

    Give either a ready ``rejection_sampler`` or ``sample_weights`` (one per row of
    ``train_dataset``) with an optional ``envelope`` (default: M = the largest weight) and
    ``sampler_seed`` (default: ``args.data_seed``, else ``args.seed``). Every other argument is
    passed to ``transformers.Trainer`` unchanged.

    Under DDP the sampler must have ``num_replicas=1``: every rank draws the same accepted set
    and accelerate shards the batches across processes (see the module docstring).
    """

    def __init__(
        self,
        *args: Any,
        rejection_sampler: RejectionSampler | None = None,
        sample_weights: Sequence[float] | torch.Tensor | None = None,
        envelope: Envelope | None = None,
        sampler_seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        missing = [name for name in _HOOKS if not hasattr(Trainer, name)]
        if missing:
            raise RuntimeError(
                f"RejectionTrainer hooks Trainer.{', Trainer.'.join(missing)}, which transformers "
                f"{transformers.__version__} does not have: it supports transformers 5.x."
            )
        super().__init__(*args, **kwargs)
        if (rejection_sampler is None) == (sample_weights is None):
            raise ValueError("give RejectionTrainer either rejection_sampler or sample_weights.")
        if rejection_sampler is None:
            if sampler_seed is None:
                data_seed = getattr(self.args, "data_seed", None)
                sampler_seed = data_seed if data_seed is not None else self.args.seed
            rejection_sampler = RejectionSampler(sample_weights, envelope, seed=sampler_seed)
        elif envelope is not None or sampler_seed is not None:
            raise ValueError(
                "envelope and sampler_seed go with sample_weights; a ready rejection_sampler "
                "already has its own."
            )
        if rejection_sampler.num_replicas != 1 or rejection_sampler.rank != 0:
            raise ValueError(
                f"the rejection sampler is sharded (num_replicas={rejection_sampler.num_replicas}, "
                f"rank={rejection_sampler.rank}), but Trainer hands its dataloader to accelerate, "
                "which shards the batches across processes itself. Build the sampler with "
                "num_replicas=1, rank=0 on every process: all ranks draw the same accepted set "
                "and accelerate gives each its share."
            )
        strategy = getattr(self.args, "train_sampling_strategy", "random")
        if strategy != "random" or getattr(self.args, "group_by_length", False):
            hint = (
                " For a fixed order, build the sampler with shuffle=False."
                if strategy == "sequential"
                else ""
            )
            raise ValueError(
                f"train_sampling_strategy={strategy!r} replaces the training sampler, so the "
                "rejection sampler would never be used. Leave it at 'random' (the default) with "
                f"RejectionTrainer.{hint}"
            )
        self.rejection_sampler = rejection_sampler
        self._epoch_update_steps: list[int] = []
        if self.train_dataset is not None:
            self._check_dataset(self.train_dataset)

    # -- the sampler ------------------------------------------------------------------
    def _check_dataset(self, dataset: Any) -> None:
        if isinstance(dataset, IterableDataset):
            raise ValueError(
                "RejectionTrainer needs a map-style train_dataset (with __len__ and indexing): "
                "an IterableDataset is read in its own order and no sampler is used."
            )
        n_weights = int(self.rejection_sampler.log_w.shape[0])
        if len(dataset) != n_weights:
            raise ValueError(
                f"train_dataset has {len(dataset)} rows but the rejection sampler has {n_weights} "
                "weights: give one weight per row, in the dataset's order."
            )

    def _get_train_sampler(self, train_dataset: Any = None) -> RejectionSampler:
        dataset = self.train_dataset if train_dataset is None else train_dataset
        self._check_dataset(dataset)
        return self.rejection_sampler

    # -- per-epoch lengths --------------------------------------------------------------
    def _batches_in_epoch(self, dataloader: Any, epoch: int) -> int:
        """Batches this process's dataloader yields in ``epoch`` (the sampler's epoch is kept)."""
        sampler = self.rejection_sampler
        current = sampler.epoch
        sampler.set_epoch(epoch)
        try:
            return len(dataloader) * self.get_sp_size()
        finally:
            sampler.set_epoch(current)

    def set_initial_training_values(self, args: Any, dataloader: Any) -> tuple:
        (
            num_train_epochs,
            _,
            num_examples,
            num_train_samples,
            total_train_batch_size,
            _,
            max_steps,
        ) = super().set_initial_training_values(args, dataloader)
        accum = args.gradient_accumulation_steps

        def update_steps(epoch: int) -> int:
            return math.ceil(self._batches_in_epoch(dataloader, epoch) / accum)

        plan: list[int] = []
        if args.max_steps > 0:
            # Epochs until max_steps is reached (every sample has a positive chance, so it is).
            while sum(plan) < args.max_steps:
                plan.append(update_steps(len(plan)))
            max_steps = args.max_steps
        else:
            whole = int(args.num_train_epochs)
            fraction = args.num_train_epochs - whole
            plan = [update_steps(e) for e in range(math.ceil(args.num_train_epochs))]
            max_steps = sum(plan[:whole]) + (math.ceil(fraction * plan[whole]) if fraction else 0)
            accepted = [len(self.rejection_sampler.accepted_indices(e)) for e in range(len(plan))]
            num_train_samples = sum(accepted[:whole]) + (
                fraction * accepted[whole] if fraction else 0
            )
        if max_steps <= 0:
            raise ValueError(
                "the rejection sampler accepts no sample in any epoch of this run: check the "
                "weights and the envelope."
            )
        self._epoch_update_steps = plan
        num_train_epochs = len(plan)
        first = self._batches_in_epoch(dataloader, 0)
        return (
            num_train_epochs,
            max(plan[0], 1),
            num_examples,
            num_train_samples,
            total_train_batch_size,
            first,
            max_steps,
        )

    def _init_training_state(
        self, max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
    ) -> tuple[int, int]:
        epochs_trained, steps_trained = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
        )
        if resume_from_checkpoint is not None:
            # Locate global_step in the real per-epoch lengths, not in multiples of epoch 0's.
            remaining, epochs_trained = self.state.global_step, 0
            plan = self._epoch_update_steps
            while epochs_trained < len(plan) and remaining >= plan[epochs_trained]:
                remaining -= plan[epochs_trained]
                epochs_trained += 1
            steps_trained = 0
            if not self.args.ignore_data_skip:
                steps_trained = remaining * self.args.gradient_accumulation_steps
        return epochs_trained, steps_trained

    def _run_epoch(
        self,
        model: Any,
        epoch: int,
        train_dataloader: Any,
        steps_in_epoch: int,
        num_update_steps_per_epoch: int,
        **kwargs: Any,
    ) -> None:
        self.rejection_sampler.set_epoch(epoch)
        if hasattr(train_dataloader, "set_epoch"):
            train_dataloader.set_epoch(epoch)
        steps_in_epoch = len(train_dataloader)
        accepted = len(self.rejection_sampler.accepted_indices(epoch))
        logger.info(
            "rejection sampling, epoch %d: %d of %d samples accepted (%d batches on this process)",
            epoch,
            accepted,
            len(self.rejection_sampler.log_w),
            steps_in_epoch,
        )
        if steps_in_epoch == 0:
            # The stock loop would read an empty epoch as an exhausted iterator and stop training.
            logger.warning("rejection sampling accepted no sample in epoch %d: skipping it.", epoch)
            self.control = self.callback_handler.on_epoch_end(self.args, self.state, self.control)
            return
        num_update_steps_per_epoch = math.ceil(
            steps_in_epoch / self.args.gradient_accumulation_steps
        )
        super()._run_epoch(
            model=model,
            epoch=epoch,
            train_dataloader=train_dataloader,
            steps_in_epoch=steps_in_epoch,
            num_update_steps_per_epoch=num_update_steps_per_epoch,
            **kwargs,
        )


def text_features(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
    head: str | None = None,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """One feature vector per text: the input of ``model``'s classification head.

    ``model`` is a transformers sequence classifier (the one about to be fine-tuned, e.g.
    ``AutoModelForSequenceClassification.from_pretrained(folder, num_labels=k)``); its head
    (``head``, else ``classifier``, ``score``, ... or the last Linear) reads one vector per
    text, which is what ``rsft train`` hands its domain classifier. Texts are tokenized with
    ``tokenizer`` (truncated to ``max_length``) and run in eval mode without gradients.
    Returns a float32 array of shape ``(len(texts), features)``, in the order of ``texts``,
    ready for :func:`rsft.data_level.weights.density_ratio_weights`.
    """
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("text_features needs a non-empty list of strings.")
    if getattr(tokenizer, "pad_token", None) is None:
        raise ValueError(
            "the tokenizer has no padding token, so texts cannot be batched; set one first, "
            "e.g. tokenizer.pad_token = tokenizer.eos_token."
        )
    device = device if device is not None else next(model.parameters()).device
    clf = Classifier(model, find_head(model, head), is_transformers=True)
    dataset = ItemDataset(len(texts), TextInputs(texts, tokenizer, max_length), labels=None)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=Collate(tokenizer))
    return extract_features(clf, loader, device).numpy()
