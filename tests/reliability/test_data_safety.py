"""Data safety: checkpoints, resuming, and DDP shards never lose or silently change a run.

Each row of ``CASES`` is one input or fault and what rsft does with it; ``test_data_safety``
runs every row (``check`` is the function that does it, below the table). The faults are
injected in-process (an exception that nothing catches stands for kill -9); the real SIGKILL
of an ``rsft train`` process is tests/training/test_resume.py.
"""

from __future__ import annotations

import builtins
import copy
import functools
import importlib.util
import inspect
import io
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import safetensors.torch
import torch

from rsft.compare.runner import CompareConfig, run_compare
from rsft.config import ConfigError, from_dict
from rsft.data_level import RejectionSampler
from rsft.rule import Envelope
from rsft.training import Callback, FineTuner, NothingTrainedError, TrainConfig, model_aware
from rsft.training import checkpoint as ckpt
from rsft.training.resume import find_resumable, path_digest

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location(
    "_training_conftest", HERE.parent / "training" / "conftest.py"
)
_training = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_training)  # its write_table: the tiny separable tables


@dataclass(frozen=True)
class Case:
    id: str
    input: str
    expected: str
    check: Callable[..., None]
    slow: bool = False


# ------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train ~5x faster on one thread when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(tmp_path: Path, **top) -> dict:
    """A quick run: an MLP on a 64-row table, 8 steps per epoch, 2 epochs, a checkpoint
    every 4 steps (so step 8 is saved twice: at the 4-step mark and at the epoch end)."""
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    cfg = {
        "model": {"path": "rsft.tasks.mlp:MLP", "kwargs": {"in_features": 64, "hidden": 16}},
        "data": {
            "train": _training.write_table(data / "train.parquet", weights=[0.0, 1.0] * 32),
            "eval": _training.write_table(data / "eval.parquet", n=30, seed=1),
            "test": _training.write_table(data / "test.parquet", n=30, seed=2),
            "feature_columns": ["pixels"],
        },
        "optim": {"name": "sgd", "lr": 0.05},
        "epochs": 2,
        "batch_size": 8,
        "checkpoint_every": 4,
        "output_dir": str(tmp_path / "run"),
        "progress": False,
    }
    return {**cfg, **top}


def _tuner(cfg: dict, out: Path | None = None) -> FineTuner:
    cfg = copy.deepcopy(cfg)
    if out is not None:
        cfg["output_dir"] = str(out)
    return FineTuner(from_dict(TrainConfig, cfg))


def _saved(path: Path | None) -> tuple | None:
    """Which save a checkpoint is: (epoch, step in epoch, global step)."""
    if path is None:
        return None
    s = json.loads((path / "trainer_state.json").read_text())
    return s["epoch"], s["step_in_epoch"], s["global_step"]


def _same_run(a: dict, b: dict) -> None:
    assert a["step_losses"] == b["step_losses"]
    assert json.dumps(a["history"]) == json.dumps(b["history"])  # NaN-safe
    assert a["test_accuracy"] == b["test_accuracy"]


# ------------------------------------------------------------------ fault injection (item 4)


class Killed(BaseException):
    """kill -9 at a filesystem step: nothing catches it (not an Exception, not an OSError)."""


class Faults:
    """Every filesystem call a save makes goes through here. While armed, the calls are
    counted as steps; at step ``at`` the process "dies": that call and every later one raise
    :class:`Killed`. With ``torn``, the dying call is a file write that leaves half a file.
    """

    MUTATING_OS = ("replace", "rename", "mkdir", "rmdir", "unlink", "remove", "fsync", "chmod")
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps: list[tuple[str, str]] = []
        self.at: int | None = None
        self.torn = self.armed = self.dead = self._inside = False
        for name in self.MUTATING_OS:
            monkeypatch.setattr(os, name, self._plain(name, getattr(os, name)))
        real_os_open = os.open

        def os_open(path, flags, *args, **kwargs):
            if flags & self.WRITE_FLAGS:
                self._step("os.open", path)
            return real_os_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", os_open)
        real_open = builtins.open

        def open_(file, mode="r", *args, **kwargs):
            if any(c in mode for c in "wax+") and self._step("open", file, torn_ok=True):
                return _TornFile(real_open(file, mode, *args, **kwargs), self)
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)
        for module, name in ((safetensors.torch, "save_file"), (torch, "save")):
            monkeypatch.setattr(module, name, self._write(name, getattr(module, name)))

    def run(self, fn: Callable[[], None], at: int | None = None, torn: bool = False) -> bool:
        """Run ``fn`` armed; True if it was killed."""
        self.steps, self.at, self.torn, self.dead, self.armed = [], at, torn, False, True
        try:
            fn()
            return False
        except Killed:
            return True
        finally:
            self.armed = False

    def _step(self, name: str, path, torn_ok: bool = False) -> bool:
        """Count a step; raise Killed when it is the fatal one. True: tear this write."""
        if not self.armed or self._inside:
            return False
        if self.dead:
            raise Killed(name)
        self.steps.append((name, str(path)))
        if len(self.steps) == self.at:
            if self.torn and torn_ok:
                return True
            self.dead = True
            raise Killed(name)
        return False

    def _plain(self, name: str, fn: Callable) -> Callable:
        def wrapped(*args, **kwargs):
            self._step(f"os.{name}", args[0] if args else "")
            return fn(*args, **kwargs)

        return wrapped

    def _write(self, name: str, fn: Callable) -> Callable:
        def wrapped(obj, path, *args, **kwargs):
            if not isinstance(path, (str, os.PathLike)):  # a file: its open was the step
                return fn(obj, path, *args, **kwargs)
            torn = self._step(name, path, torn_ok=True)
            self._inside = True
            try:
                fn(obj, path, *args, **kwargs)
            finally:
                self._inside = False
            if torn:  # the write reached the disk only half way
                size = os.path.getsize(path)
                os.truncate(path, size // 2)
                self.dead = True
                raise Killed(name)

        return wrapped


class _TornFile:
    """A file whose first write stops half way: the process died writing it."""

    def __init__(self, fh, faults: Faults) -> None:
        self._fh, self._faults = fh, faults

    def write(self, data):
        self._fh.write(data[: len(data) // 2])
        self._fh.flush()
        self._faults.dead = True
        raise Killed("write")

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()


def _files(path: Path | None) -> dict[str, bytes] | None:
    return None if path is None else {f.name: f.read_bytes() for f in sorted(path.iterdir())}


def _kill_every_step_of_a_save(tmp_path: Path, monkeypatch, target: int, train_all=False) -> None:
    """Run to the ``target``-th save; kill that save at each of its filesystem steps (and
    tear each file it writes), every time in a copy of the run's folder as it was. In each
    copy, resuming must take the last complete checkpoint, byte for byte: the previous one
    until the new folder is renamed into place, the new one after. Some copies (all with
    ``train_all``) then resume and must train to the uninterrupted run's results, leaving
    nothing behind but the last two checkpoints."""
    cfg = _config(tmp_path)
    faults = Faults(monkeypatch)
    tuner = _tuner(cfg, tmp_path / "full")
    save, calls, killed = tuner.save_checkpoint, [0], []

    def sweep(state: dict) -> None:
        calls[0] += 1
        if calls[0] == target:
            killed.extend(_kill_each_step(tmp_path, faults, tuner, lambda: save(state)))
        save(state)

    monkeypatch.setattr(tuner, "save_checkpoint", sweep)
    full = tuner.train()
    assert len(killed) > 30, "a save has dozens of filesystem steps"
    for i, (out, expected) in enumerate(killed):
        cfg_k = from_dict(TrainConfig, dict(cfg, output_dir=str(out)))
        found = find_resumable(cfg_k, tuner.data_digest)
        assert _files(found) == expected, out.name
        if train_all or i in (0, len(killed) - 1) or out.name.endswith(("-commit", "-torn")):
            resumed = _tuner(cfg, out)
            _same_run(resumed.train(), full)
            left = sorted(p.name for p in (out / "checkpoints").iterdir())
            assert len(left) == 3 and left[0] == "latest", left


def _kill_each_step(tmp_path: Path, faults: Faults, tuner: FineTuner, save: Callable) -> list:
    """(folder, files of the checkpoint to resume) for a kill at each step of ``save``."""
    before = tmp_path / "before"
    shutil.copytree(tuner.output_dir, before)
    real_dir, out = tuner.output_dir, tmp_path / "uninterrupted"
    try:
        tuner.output_dir = out
        shutil.copytree(before, out)
        assert not faults.run(save)
        steps = list(faults.steps)
        old, new = _files(ckpt.latest_checkpoint(before)), _files(ckpt.latest_checkpoint(out))
        # The commit: the new checkpoint's folder renamed into place.
        commit = next(
            i
            for i, (f, p) in enumerate(steps, 1)
            if f == "os.replace" and Path(p).name.startswith(".tmp-")
        )
        writes = [i for i, (f, _) in enumerate(steps, 1) if f in ("open", "save_file", "save")]
        killed = []
        for k, torn in [(k, False) for k in range(1, len(steps) + 1)] + [(k, True) for k in writes]:
            name = f"kill-{k}" + (
                "-torn" if torn else "-commit" if k in (commit, commit + 1) else ""
            )
            out = tuner.output_dir = tmp_path / name
            shutil.copytree(before, out)
            assert faults.run(save, at=k, torn=torn), (k, steps)
            killed.append((out, new if k > commit else old))
        return killed
    finally:
        tuner.output_dir = real_dir


def check_kill_during_first_save(tmp_path, monkeypatch) -> None:
    _kill_every_step_of_a_save(tmp_path, monkeypatch, target=1)


def check_kill_during_repeated_step_save(tmp_path, monkeypatch) -> None:
    _kill_every_step_of_a_save(tmp_path, monkeypatch, target=3)


def check_kill_every_step_and_train_each(tmp_path, monkeypatch) -> None:
    _kill_every_step_of_a_save(tmp_path, monkeypatch, target=3, train_all=True)


def _crashed_run(tmp_path: Path, step: int = 13) -> tuple[dict, dict]:
    """(config, uninterrupted results) of a run in tmp_path/run that died after ``step``
    (an exception nothing catches: no cleanup, no save). With ``step`` 13 its last two
    checkpoints are step 8 (the epoch end) and step 12."""
    cfg = _config(tmp_path)
    full = _tuner(cfg, tmp_path / "full").train()
    tuner = _tuner(cfg)

    class Dies(Callback):  # after the step (and any checkpoint it was due)
        def on_step_end(self, trainer, state, result) -> None:
            if state.global_step == step:
                raise Killed("after step")

    tuner.add_callback(Dies())
    with pytest.raises(Killed):
        tuner.train()
    assert not (Path(cfg["output_dir"]) / "results.json").exists()
    return cfg, full


def check_latest_names_a_deleted_checkpoint(tmp_path) -> None:
    cfg, full = _crashed_run(tmp_path)
    newest = ckpt.latest_checkpoint(cfg["output_dir"])
    (newest.parent / "latest").write_text("step-00000099-save000099")
    with pytest.warns(UserWarning, match="step-00000099-save000099, which is missing"):
        tuner = _tuner(cfg)
    assert tuner.resume_from == newest
    _same_run(tuner.train(), full)


def check_newest_checkpoint_lost_a_file(tmp_path) -> None:
    cfg, full = _crashed_run(tmp_path)
    newest = ckpt.latest_checkpoint(cfg["output_dir"])
    assert _saved(newest) == (1, 4, 12)
    (newest / "model.safetensors").unlink()
    with pytest.warns(UserWarning, match="missing or incomplete"):
        tuner = _tuner(cfg)
    assert _saved(tuner.resume_from) == (1, 0, 8)  # the one before, complete
    _same_run(tuner.train(), full)


def check_no_checkpoint_is_complete(tmp_path) -> None:
    cfg, _ = _crashed_run(tmp_path)
    root = Path(cfg["output_dir"]) / "checkpoints"
    older, newer = sorted(root.glob("step-*"))
    (older / "optimizer.pt").write_bytes(b"")  # truncated
    (newer / "manifest.json").unlink()  # never sealed (or written by rsft before manifests)
    with pytest.raises(ckpt.CheckpointError, match=f"none is complete.*{newer.name}.*never"):
        _tuner(cfg)
    assert len(list(root.glob("step-*"))) == 2, "nothing was deleted"


def check_mid_epoch_resume_keeps_the_epoch_loss(tmp_path) -> None:
    cfg, full = _crashed_run(tmp_path, step=6)  # resumes from step 4, mid-epoch 1
    resumed = _tuner(cfg)
    assert _saved(resumed.resume_from) == (0, 4, 4)
    result = resumed.train()
    _same_run(result, full)
    assert result["history"][0]["train_loss"] == pytest.approx(
        sum(full["step_losses"][:8]) / 8, rel=1e-12
    )


def check_results_without_checkpoints(tmp_path) -> None:
    cfg = _config(tmp_path)
    _tuner(cfg).train()
    out = Path(cfg["output_dir"])
    results = (out / "results.json").read_bytes()
    shutil.rmtree(out / "checkpoints")
    with pytest.raises(ConfigError, match="finished run's results.json.*new output_dir"):
        _tuner(cfg)
    assert (out / "results.json").read_bytes() == results
    assert _tuner({**cfg, "resume": "never"}).resume_from is None  # starting over: on request


def check_data_edited_in_place(tmp_path, field: str = "train") -> None:
    cfg = _config(tmp_path)
    _tuner(cfg).train()
    path = cfg["data"][field]
    _training.write_table(Path(path), seed=7, n=64 if field == "train" else 30)
    with pytest.raises(ConfigError, match=rf"data\.{field} \({path}\) changed since"):
        _tuner(cfg)


def check_compare_after_data_edit(tmp_path) -> None:
    cfg = _config(tmp_path, epochs=1)
    base = {k: v for k, v in cfg.items() if k != "output_dir"}
    compare = {"base": base, "methods": {"plain": {}}, "seeds": [0]}
    compare["output_dir"] = str(tmp_path / "compare")
    first = run_compare(from_dict(CompareConfig, compare))["records"][0]
    again = run_compare(from_dict(CompareConfig, compare))["records"][0]
    assert again == first  # finished: reused, not rerun
    _training.write_table(Path(cfg["data"]["test"]), seed=7, n=30)
    edited = run_compare(from_dict(CompareConfig, compare))["records"][0]
    assert edited["test_loss"] != first["test_loss"]  # rerun, on the edited data


def check_image_folder_digest(tmp_path) -> None:
    folder = tmp_path / "images"
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            (folder / label / f"{i}.png").write_bytes(bytes([i]) * 100)
    digest = path_digest(folder)
    assert path_digest(folder) == digest and digest["files"] == 6
    edited = folder / "dog" / "0.png"

    def edit() -> None:  # the same size, a second later
        t = edited.stat().st_mtime_ns
        edited.write_bytes(bytes([9]) * 100)
        os.utime(edited, ns=(t + 10**9, t + 10**9))

    changes = [
        lambda: (folder / "cat" / "3.png").write_bytes(b"new"),  # added
        lambda: (folder / "cat" / "3.png").unlink(),  # removed again: back to the start
        edit,
        lambda: (folder / "dog" / "1.png").rename(folder / "cat" / "1b.png"),  # relabelled
    ]
    seen = [digest]
    for change in changes:
        change()
        seen.append(path_digest(folder))
    assert seen[1] != seen[0] and seen[2] == seen[0]
    assert len({d["listing_sha256"] for d in seen[2:]}) == 3


def check_sigkill_mid_epoch(tmp_path, killer) -> None:
    """The real thing: SIGKILL an `rsft train` process mid-epoch, run the command again."""
    cfg = _config(tmp_path, checkpoint_every=3, batch_size=4)
    cfg["model"] = {"path": "rsft_test_models:SlowNet", "kwargs": {"width": 8}, "freeze": "none"}
    proc = _training.launch_train(cfg, tmp_path / "killed.yaml")
    out = Path(cfg["output_dir"])
    killer(proc, lambda: _training.checkpoint_step(out) >= 3)
    at = _training.checkpoint_step(out)
    assert 3 <= at < 16, "killed in the first epoch (16 steps)"
    _training.finish_both(cfg, out, tmp_path, at)  # the same losses, history and accuracy


# ------------------------------------------------------------------ DDP shards (item 10)


def _shards(weights: list[float], replicas: int, envelope: Envelope | None = None) -> list[list]:
    out = []
    for rank in range(replicas):
        w = torch.tensor(weights, dtype=torch.float64)
        s = RejectionSampler(w, envelope, seed=3, num_replicas=replicas, rank=rank)
        out.append(list(s))
    return out


def check_shards_have_equal_lengths() -> None:
    for replicas in (1, 2, 3, 4, 7, 8):
        for n in (0, 1, 2, 3, 5, 6, 7, 8, 9, 15, 16, 17, 40):
            if n:
                weights = [1.0] * n + [0.0] * (50 - n)  # exactly the first n are accepted
                env = None
            else:  # a = 1e-300: no float64 coin is that small, nothing is accepted
                weights, env = [1e-300] * 50, Envelope("fixed", value=1.0)
            shards = _shards(weights, replicas, env)
            lengths = [len(s) for s in shards]
            per_rank = -(-n // replicas)  # ceil(n / replicas)
            assert lengths == [per_rank] * replicas, (n, replicas, lengths)
            assert {i for s in shards for i in s} == set(range(n))


def check_one_huge_weight_three_replicas() -> None:
    weights = [1e12] + [1e-6] * 99  # M = max: only sample 0 is (almost surely) accepted
    shards = _shards(weights, 3)
    assert shards == [[0], [0], [0]]


def check_envelope_accepts_nothing(tmp_path) -> None:
    cfg = _config(tmp_path)
    cfg["rejection"] = {
        "weights": "column",
        "column": "w",
        "envelope": {"policy": "fixed", "value": 1e9},
    }
    with pytest.raises(ConfigError, match=r"accept 3\.2e-08 of 64 samples.*envelope\.value"):
        _tuner(cfg)


def check_no_epoch_accepts_anything(tmp_path, monkeypatch) -> None:
    cfg = _config(tmp_path)
    tuner = _tuner(cfg)
    monkeypatch.setattr(
        tuner.sampler, "accepted_indices", lambda epoch=None: torch.zeros(0, dtype=torch.long)
    )
    with pytest.raises(NothingTrainedError, match="accepted 0 samples in 2 epoch"):
        tuner.train()
    assert not (Path(cfg["output_dir"]) / "results.json").exists()


class _Rank:
    """What ModelAwareRejection asks of accelerate: the world size, the rank, the device."""

    def __init__(self, world: int, rank: int) -> None:
        self.num_processes, self.process_index, self.device = world, rank, torch.device("cpu")


def _model_aware(
    tmp_path: Path, world: int
) -> tuple[FineTuner, list[model_aware.ModelAwareRejection]]:
    cfg = _config(tmp_path, batch_size=2)
    cfg["rejection"] = {"weights": "confidence", "window": 20}
    tuner = _tuner(cfg)
    ranks = [
        model_aware.ModelAwareRejection(tuner.config, tuner.train_split, tuner.clf, _Rank(world, r))
        for r in range(world)
    ]
    return tuner, ranks


class _Gather:
    """gather_object for N ranks run one after another: every rank gets all the pairs."""

    def __init__(self, pairs: list) -> None:
        self.pairs, self.sent = pairs, []

    def __call__(self, mine: list) -> list:
        self.sent.append(mine)
        return list(self.pairs)


def check_model_aware_round_smaller_than_world(tmp_path, monkeypatch) -> None:
    """Rounds of 1..2N-1 indices on N = 3 processes: every rank queues what one process
    does, a rank without a sample to score included."""
    world = 3
    tuner, ranks = _model_aware(tmp_path, world)
    one = model_aware.ModelAwareRejection(tuner.config, tuner.train_split, tuner.clf, _Rank(1, 0))
    model = tuner.clf.model
    start = 0
    for size in (1, 2, 4, 5, 1):
        indices = list(range(start, start + size))
        start += size
        shares = [r.raw_scores(model, indices[k::world]) for k, r in enumerate(ranks)]
        pairs = [(k + world * j, v) for k in range(world) for j, v in enumerate(shares[k])]
        gather = _Gather(pairs)
        monkeypatch.setattr(model_aware, "gather_object", gather)
        for r in ranks:
            assert r.score_round(model, indices, 0, 0) == size
        one.score_round(model, indices, 0, 0)
        # Each rank sent its own share (none when the round has fewer samples than ranks).
        assert gather.sent == [[p for p in pairs if p[0] % world == k] for k in range(world)]
    assert start > 0 and len(one.queue) > 0
    for r in ranks:
        assert r.queue.state_dict() == one.queue.state_dict()


def check_model_aware_final_small_step(tmp_path) -> None:
    """A final step of q < G queued samples on N processes: every rank steps (one synced
    backward each), the nonzero-weight samples are the queue, each once."""
    for world in (2, 3, 4):
        tuner, ranks = _model_aware(tmp_path / str(world), world)
        for q in range(1, 2 * world + 2):
            for r in ranks:
                r.queue.extend(list(range(q)), [1.0 + i for i in range(q)])
            trained, sizes = [], []
            while any(len(r.queue) for r in ranks):
                steps = [r.next_step(final=True) for r in ranks]
                assert all(steps), (world, q)  # every rank takes every step
                trained += [
                    i for st in steps for idx, w in st for i, x in zip(idx, w.tolist()) if x
                ]
                sizes.append({r.last_step_size for r in ranks})
            assert sorted(trained) == list(range(q)), (world, q)
            assert [len(s) for s in sizes] == [1] * len(sizes)  # ranks agree on each step's size
            assert sum(s.pop() for s in sizes) == q


# ------------------------------------------------------------------ the table

CASES = [
    # --- item 4: a checkpoint save killed at any moment
    Case(
        "kill-first-save",
        "kill at each of the ~35 filesystem steps of a run's first save (mkdir, each file "
        "written or torn half way, fsync, manifest, rename, latest, ...), then rerun",
        "before the folder is renamed into place: starts from step 0 (no checkpoint yet); "
        "after: resumes from it; the same results as an uninterrupted run either way",
        check_kill_during_first_save,
    ),
    Case(
        "kill-repeated-step-save",
        "kill at each filesystem step of the epoch-end save of step 8, which the "
        "checkpoint_every: 4 mark already saved (the name used to repeat), and of pruning",
        "resumes from the last complete checkpoint, byte for byte (step 8 mid-epoch until "
        "the rename, step 8 epoch end after); was: FileNotFoundError on every rerun, or a "
        "silent restart from step 0",
        check_kill_during_repeated_step_save,
    ),
    Case(
        "kill-repeated-step-save-train-all",
        "the same kills, and every one of the ~40 folders resumed and trained to the end (slow)",
        "each run ends with the uninterrupted run's step losses, history and test accuracy, "
        "and leaves only its last two checkpoints behind",
        check_kill_every_step_and_train_each,
        slow=True,
    ),
    Case(
        "latest-dangling",
        "checkpoints/latest names a checkpoint that is gone",
        "warns and resumes from the newest complete checkpoint",
        check_latest_names_a_deleted_checkpoint,
    ),
    Case(
        "newest-checkpoint-incomplete",
        "model.safetensors deleted from the newest checkpoint",
        "warns and resumes from the checkpoint before it; the same results",
        check_newest_checkpoint_lost_a_file,
    ),
    Case(
        "no-checkpoint-complete",
        "one checkpoint has a truncated optimizer.pt, the other no manifest.json",
        "CheckpointError before training: 'none is complete', how to start over; nothing "
        "deleted (was: a silent restart from step 0)",
        check_no_checkpoint_is_complete,
    ),
    # --- item 5: resuming
    Case(
        "results-without-checkpoints",
        "rerun a finished run whose checkpoints were deleted (resume: auto)",
        "ConfigError: output_dir holds a finished run's results.json (new output_dir, or "
        "resume: never); results.json untouched (was: silently overwritten)",
        check_results_without_checkpoints,
    ),
    Case(
        "train-file-edited",
        "rerun a finished run after editing data.train in place",
        "ConfigError: 'data.train (<file>) changed since the checkpoint' (was: 'resumed', "
        "trained 0 steps, reported the old model)",
        check_data_edited_in_place,
    ),
    Case(
        "test-file-edited",
        "rerun a finished run after editing data.test in place",
        "ConfigError naming data.test and its file",
        functools.partial(check_data_edited_in_place, field="test"),
    ),
    Case(
        "compare-after-data-edit",
        "rerun `rsft compare` after editing data.test in place",
        "the method is run again on the new data (a finished run is reused only when its "
        "config, rsft version and data digest all match; was: the old results reused)",
        check_compare_after_data_edit,
    ),
    Case(
        "image-folder-changed",
        "an image folder: a file added, removed, edited (same size), moved to another class",
        "the folder digest (relative path, size, mtime of each file) changes with each, and "
        "is back to the original when the folder is",
        check_image_folder_digest,
    ),
    Case(
        "mid-epoch-resume-history",
        "a run dies at step 6 of 8 in epoch 1 and resumes from step 4",
        "history[0].train_loss is the mean of all 8 steps (was: of the last 4); history, "
        "step losses and test accuracy equal an uninterrupted run's",
        check_mid_epoch_resume_keeps_the_epoch_loss,
    ),
    Case(
        "sigkill-mid-epoch",
        "kill -9 an `rsft train` process mid-epoch, run the command again (slow; also "
        "tests/training/test_resume.py)",
        "resumes from the last checkpoint: the same step losses, history and accuracy",
        check_sigkill_mid_epoch,
        slow=True,
    ),
    # --- item 10: DDP
    Case(
        "ddp-shards-equal",
        "n accepted samples (0..40) on 1..8 replicas",
        "every rank gets ceil(n/replicas) indices (the list repeated as often as needed), "
        "together the accepted set; 0 accepted: every rank empty (the same 0 steps)",
        check_shards_have_equal_lengths,
    ),
    Case(
        "ddp-one-huge-weight",
        "100 weights, one 1e12 and the rest 1e-6, envelope max, 3 replicas",
        "ranks get [1, 1, 1] indices (was [1, 1, 0]: one rank skipped a step the others waited on)",
        check_one_huge_weight_three_replicas,
    ),
    Case(
        "envelope-accepts-nothing",
        "rejection.envelope fixed at 1e9 over weights of 0 and 1",
        "ConfigError before training: 'would accept 3.2e-08 of 64 samples per epoch', "
        "lower rejection.envelope.value (was: 0 steps per epoch; with budget: samples, "
        "billions of empty epochs)",
        check_envelope_accepts_nothing,
    ),
    Case(
        "no-epoch-accepts-anything",
        "every epoch's draw accepts no sample",
        "NothingTrainedError after the epochs (rsft train exits 1), no results.json (was: "
        "exit 0 with the pretrained model as the result)",
        check_no_epoch_accepts_anything,
    ),
    Case(
        "model-aware-round-smaller-than-world",
        "model-aware rounds of 1, 2, 4, 5, 1 indices on 3 processes (some ranks score none)",
        "every rank queues exactly what one process does",
        check_model_aware_round_smaller_than_world,
    ),
    Case(
        "model-aware-final-small-step",
        "a final step of 1..2N+1 queued samples on N = 2, 3, 4 processes",
        "every rank steps (a zero-weight stand-in if it has no sample); the samples trained "
        "are the queue, each once",
        check_model_aware_final_small_step,
    ),
]


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in CASES],
)
def test_data_safety(case: Case, request: pytest.FixtureRequest) -> None:
    params = inspect.signature(case.check).parameters.values()
    wanted = [p.name for p in params if p.default is inspect.Parameter.empty]
    case.check(**{name: request.getfixturevalue(name) for name in wanted})


def test_a_compare_reuses_a_run_it_retrained_after_an_option_changed(tmp_path):
    """Once a changed option (optim.lr) has made a compare retrain a method, later compares
    with the unchanged config reuse that run instead of retraining it every time."""
    cfg = _config(tmp_path, epochs=1)
    base = {k: v for k, v in cfg.items() if k != "output_dir"}
    compare = {"base": base, "methods": {"plain": {}}, "seeds": [0]}
    compare["output_dir"] = str(tmp_path / "compare")
    results = tmp_path / "compare" / "plain" / "seed-0" / "results.json"

    def run(lr: float) -> int:
        changed = copy.deepcopy(compare)
        changed["base"]["optim"] = {**changed["base"].get("optim", {}), "lr": lr}
        run_compare(from_dict(CompareConfig, changed))
        return results.stat().st_mtime_ns

    first = run(0.01)
    retrained = run(0.02)
    assert retrained != first  # another lr: another run
    assert run(0.02) == retrained  # the same config again: reused
    assert run(0.02) == retrained  # and again
