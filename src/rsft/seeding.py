"""Every random stream of a run, derived from the run's one seed.

A stream is a name from :data:`STREAMS` plus its integer keys (an epoch, a round, a chunk).
Its seed comes from numpy's ``SeedSequence`` with the run's seed as entropy and the name and
keys as the spawn key, so streams of different names or keys are independent, whatever the
numbers. Arithmetic on seeds (``seed * c + epoch + offset``) could not promise that: it made
the model-aware coins of epoch e the sampler's coins of epoch e + 7919. The derivation is a
pure function of its inputs: every process computes the same seeds, and a resumed run the
same draws.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch


class Stream(NamedTuple):
    keys: tuple[str, ...]  # what each integer key counts, in order
    bits: int  # the seed's width: 32 where a consumer needs it (numpy, engines' request seeds)
    use: str


STREAMS: dict[str, Stream] = {
    "sampler": Stream(("epoch",), 63, "RejectionSampler: the epoch's coins, then its shuffle"),
    "model_aware": Stream(("epoch",), 63, "model-aware rounds: one log u per sample and epoch"),
    "param_step": Stream(("step",), 63, "parameter level: a step's seed (Metropolis, MeZO)"),
    "param_noise": Stream(("tensor", "piece"), 63, "a tensor piece's noise, from the step's seed"),
    "metropolis_coins": Stream((), 63, "Metropolis: the accept coins of the chain"),
    "generate": Stream(("round", "chunk"), 32, "LLM pipeline: a generation chunk's sampling"),
    "select": Stream(("round",), 63, "LLM pipeline: the accept rule's coins and tie-breaks"),
    "control": Stream(("round",), 63, "LLM pipeline: the random control's pick"),
    "sft": Stream(("round",), 32, "LLM pipeline: the fine-tuning seed (transformers)"),
    "eval": Stream((), 32, "LLM pipeline: sampled evaluation, the same every round"),
}
"""The streams, each with its keys. Adding one never changes another's seeds."""


def _name_words(name: str) -> tuple[int, ...]:
    """The name as four 32-bit words (of its SHA-256): distinct names, distinct spawn keys."""
    digest = hashlib.sha256(name.encode()).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))


def stream_seed(seed: int, name: str, *keys: int) -> int:
    """The seed of stream ``name`` at ``keys`` in the run of ``seed`` (any integer).

    The spawn key is the name's words, the seed's sign (SeedSequence takes non-negative
    entropy), then the keys; every stream has a fixed number of keys, so no two (name, keys)
    pairs give the same spawn key.
    """
    stream = STREAMS.get(name)
    if stream is None:
        raise ValueError(f"unknown random stream {name!r}: one of {', '.join(STREAMS)}.")
    if len(keys) != len(stream.keys):
        raise ValueError(
            f"stream {name!r} takes {len(stream.keys)} key(s) ({', '.join(stream.keys) or 'none'})"
            f", got {len(keys)}."
        )
    for key in keys:
        if isinstance(key, bool) or not isinstance(key, int | np.integer) or key < 0:
            raise ValueError(f"stream {name!r}: keys are integers >= 0, got {keys}.")
    return _derive(int(seed), name, tuple(map(int, keys)), stream.bits)


@lru_cache(maxsize=4096)  # a parameter-level step asks for each tensor's seed more than once
def _derive(seed: int, name: str, keys: tuple[int, ...], bits: int) -> int:
    spawn = (*_name_words(name), int(seed < 0), *keys)
    words = np.random.SeedSequence(abs(seed), spawn_key=spawn).generate_state(2, np.uint32)
    return (int(words[0]) | int(words[1]) << 32) >> (64 - bits)


def torch_generator(
    seed: int, name: str, *keys: int, device: torch.device | str | None = None
) -> torch.Generator:
    """A torch generator seeded for stream ``name`` at ``keys`` (see :func:`stream_seed`).

    torch's CPU generator (mt19937) keeps only the low 32 bits of a seed, so two CPU streams
    coincide with probability 2^-32 a pair; CUDA's (Philox) keeps all 64.
    """
    gen = torch.Generator() if device is None else torch.Generator(device=device)
    return gen.manual_seed(stream_seed(seed, name, *keys))
