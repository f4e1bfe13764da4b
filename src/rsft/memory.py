"""Peak tensor memory of a block of work, measured on the device it runs on.

CUDA: the caching allocator's peak (``torch.cuda.max_memory_allocated``), reset on entry.
CPU: torch has no allocator statistics, so the block runs under the profiler with memory
recording, and the peak is the largest running sum of the bytes every op allocated and freed,
in time order. Both give the peak *above* what was allocated on entry (weights and anything
already held are excluded), so a training step and an inference pass on the same model can
be compared. The profiler costs time: measure a step or two, not a whole run. On CPU, freeing
inside the block a tensor that was allocated before it (outside any profiling) does not
lower the count, so the figure is then an upper bound; a training step frees only what it
allocated itself, and is measured exactly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.profiler import ProfilerActivity, profile


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Some torch builds print a line to stderr whenever the profiler starts or stops."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class PeakMemory:
    """``with PeakMemory(device) as m: ...``, then ``m.peak_bytes``: the peak above the start,
    and ``m.net_bytes``: what the block still holds at its end (e.g. optimizer state)."""

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device or "cpu")
        self.peak_bytes: int | None = None
        self.net_bytes: int | None = None
        self._start = 0
        self._prof: profile | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            with _quiet_stderr():
                self._prof.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._start
            self.net_bytes = torch.cuda.memory_allocated(self.device) - self._start
            return
        assert self._prof is not None
        with _quiet_stderr():
            self._prof.__exit__(*exc)
        if exc[0] is not None:
            return
        changes = sorted(
            (e.time_range.start, e.self_cpu_memory_usage)
            for e in self._prof.events()
            if e.self_cpu_memory_usage
        )
        running = peak = 0
        for _, change in changes:
            running += change
            peak = max(peak, running)
        self.peak_bytes, self.net_bytes = peak, running
        self._prof = None


def parameter_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())
