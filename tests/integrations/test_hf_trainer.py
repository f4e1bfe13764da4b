"""RejectionTrainer: transformers.Trainer trains each epoch on exactly the accepted rows."""

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch
from datasets import Dataset
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    TrainerCallback,
    TrainingArguments,
)

from rsft.data_level import RejectionSampler
from rsft.integrations import RejectionTrainer
from rsft.rule import Envelope

N_ROWS, SEQ_LEN, BATCH = 64, 12, 8
# Even rows can never be accepted; odd rows are kept with probability 0.5 / M = 0.5, so each
# epoch's draw differs. With seed 0, epoch 0 accepts 16 rows (2 batches) and epoch 1 accepts 23
# (3 batches): the stock Trainer, which sizes every epoch from epoch 0, would drop epoch 1's
# last batch.
WEIGHTS = [0.0 if i % 2 == 0 else 0.5 for i in range(N_ROWS)]
ENVELOPE = Envelope("fixed", value=1.0)
SEED = 1  # a seed whose epochs take 2, 3 and 3 batches: the second longer than the first


def _model() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=SEQ_LEN,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def _dataset() -> Dataset:
    gen = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, 50, (N_ROWS, SEQ_LEN), generator=gen)
    return Dataset.from_dict(
        {
            "input_ids": input_ids.tolist(),
            "attention_mask": [[1] * SEQ_LEN] * N_ROWS,
            "labels": (input_ids[:, 0] % 2).tolist(),
            "idx": list(range(N_ROWS)),
        }
    )


def _args(tmp_path, **overrides) -> TrainingArguments:
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=2,
        per_device_train_batch_size=BATCH,
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        remove_unused_columns=False,  # keep `idx` so the recorder can read it
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


class _EpochCounter(TrainerCallback):
    """Counts epochs independently of the sampler, so a lost set_epoch would show."""

    def __init__(self) -> None:
        self.epoch = -1

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch += 1


class _RecordingTrainer(RejectionTrainer):
    """Records the row indices of every batch that reaches the loss."""

    def __init__(self, *args, **kwargs):
        self.counter = _EpochCounter()
        super().__init__(*args, callbacks=[self.counter], **kwargs)
        self.seen: dict[int, list[int]] = {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        idx = inputs.pop("idx")
        self.seen.setdefault(self.counter.epoch, []).extend(idx.tolist())
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def test_each_epoch_trains_on_exactly_the_accepted_rows(tmp_path):
    sampler = RejectionSampler(WEIGHTS, ENVELOPE, seed=SEED)
    accepted = [sampler.accepted_indices(e).tolist() for e in range(2)]
    batches = [math.ceil(len(a) / BATCH) for a in accepted]
    assert batches[1] > batches[0], "the fixture must make epoch 1 longer than epoch 0"

    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer = _RecordingTrainer(
        model=model, args=_args(tmp_path), train_dataset=_dataset(), rejection_sampler=sampler
    )
    trainer.train()

    assert sorted(trainer.seen) == [0, 1]
    zero_weight = {i for i, w in enumerate(WEIGHTS) if w == 0}
    for epoch in (0, 1):
        seen = trainer.seen[epoch]
        assert not zero_weight & set(seen), "a zero-weight row was trained on"
        assert set(seen) == set(accepted[epoch])
        assert seen == accepted[epoch]  # each accepted row once, in the sampler's order
    assert trainer.seen[0] != trainer.seen[1]
    assert trainer.state.global_step == trainer.state.max_steps == sum(batches)

    after = dict(model.named_parameters())
    changed = [n for n, p in before.items() if not torch.equal(p, after[n].detach())]
    assert len(changed) == len(before), f"unchanged: {set(before) - set(changed)}"


def test_resume_finds_the_position_in_uneven_epochs(tmp_path):
    # Epochs of 2, 3 and 3 steps: the checkpoint at step 4 is 2 steps into epoch 1, where the
    # stock arithmetic (4 // 2) would put it at the start of epoch 2.
    sampler = RejectionSampler(WEIGHTS, ENVELOPE, seed=SEED)
    steps = [math.ceil(len(sampler.accepted_indices(e)) / BATCH) for e in range(3)]
    assert steps == [2, 3, 3]
    args = _args(tmp_path, num_train_epochs=3, save_strategy="steps", save_steps=4)
    first = _RecordingTrainer(
        model=_model(), args=args, train_dataset=_dataset(), rejection_sampler=sampler
    )
    first.train()

    resumed = _RecordingTrainer(
        model=_model(),
        args=args,
        train_dataset=_dataset(),
        rejection_sampler=RejectionSampler(WEIGHTS, ENVELOPE, seed=SEED),
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    # Callbacks count from the resumed epoch: its epoch 0 is the run's epoch 1.
    assert resumed.seen[0] == first.seen[1][2 * BATCH :]
    assert resumed.seen[1] == first.seen[2]
    assert resumed.state.global_step == sum(steps)


def test_sample_weights_build_the_sampler(tmp_path):
    trainer = RejectionTrainer(
        model=_model(),
        args=_args(tmp_path, data_seed=5),
        train_dataset=_dataset(),
        sample_weights=WEIGHTS,
        envelope=ENVELOPE,
    )
    assert trainer.rejection_sampler.seed == 5
    assert trainer.get_train_dataloader().batch_sampler.sampler is trainer.rejection_sampler


@pytest.mark.parametrize("strategy", ["group_by_length", "batch_rebalance", "sequential"])
def test_sampler_replacing_options_are_refused(tmp_path, strategy):
    with pytest.raises(ValueError, match="replaces the training sampler"):
        RejectionTrainer(
            model=_model(),
            args=_args(tmp_path, train_sampling_strategy=strategy),
            train_dataset=_dataset(),
            sample_weights=WEIGHTS,
            envelope=ENVELOPE,
        )


def test_a_sharded_sampler_is_refused(tmp_path):
    sampler = RejectionSampler(WEIGHTS, ENVELOPE, seed=SEED, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="num_replicas=1"):
        RejectionTrainer(
            model=_model(),
            args=_args(tmp_path),
            train_dataset=_dataset(),
            rejection_sampler=sampler,
        )


def test_weights_must_match_the_dataset(tmp_path):
    with pytest.raises(ValueError, match="one weight per row"):
        RejectionTrainer(
            model=_model(),
            args=_args(tmp_path),
            train_dataset=_dataset(),
            sample_weights=WEIGHTS[:-1],
            envelope=ENVELOPE,
        )
