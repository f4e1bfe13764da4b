"""Faults as error lines: every fault ends a command with one line that names the file or
option and the fix (issue 17, item 14).

Each row of ``CASES`` (at the end of the file) is one fault and what rsft does with it;
``test_error_lines`` runs every row (``check`` names the function that does it, and its
arguments are fixtures). The commands run in-process through ``rsft.cli.main.main``: input
errors exit 2 (``rsft <command>: error: ...``), runtime stops 1, Ctrl-C 130, and a bug keeps
its traceback. A full disk is injected: a write to a matching file writes half its data and
then fails as on a full disk; no filesystem is mounted.
"""

from __future__ import annotations

import builtins
import errno
import functools
import inspect
import json
import math
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import transformers.modeling_utils
import trl
from safetensors import SafetensorError

from rsft.cli import main as cli
from rsft.generation.config import SFTSection
from rsft.generation.selection import select
from rsft.generation.sft.train import sft_train
from rsft.models.folders import check_model_folder
from rsft.pickles import UnsafePickleError
from rsft.rule import RejectionStats
from rsft.tasks.arithmetic import prepare_arithmetic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass(frozen=True)
class Case:
    id: str
    input: str
    expected: str
    check: Callable[..., None]


# ------------------------------------------------------------------ fixtures and helpers


def _copy(folder: str, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def _cli(capsys, argv: list[str]) -> tuple[int, str]:
    """Run ``rsft ARGV`` in-process: (exit code, stderr)."""
    capsys.readouterr()
    code = cli.main(argv)
    return code, capsys.readouterr().err


def _error_line(err: str, command: str) -> str:
    """The line ``rsft <command>: ...`` of stderr (exactly one), without the prefix."""
    lines = [ln for ln in err.splitlines() if ln.startswith(f"rsft {command}: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0].removeprefix(f"rsft {command}: ")


def _table(path: Path, n: int = 48) -> str:
    """Three separable classes in a 64-value list column: trains in a few steps."""
    centres = np.random.default_rng(1234).normal(0.0, 1.0, (3, 64))
    labels = np.arange(n) % 3
    pixels = centres[labels] + np.random.default_rng(0).normal(0.0, 0.5, (n, 64))
    pd.DataFrame({"pixels": pixels.astype("float32").tolist(), "label": labels}).to_parquet(path)
    return str(path)


def _train_argv(tmp_path: Path, **options: object) -> list[str]:
    """A quick `rsft train`: 3 steps per epoch, 2 epochs, a checkpoint at each epoch's end."""
    table = tmp_path / "train.parquet"
    if not table.is_file():
        _table(table)
    args = {
        "model.path": "rsft.tasks.digits:DigitsNet",
        "model.kwargs": "{width: 4}",
        "data.train": str(table),
        "data.test": str(table),
        "data.feature_columns": "[pixels]",
        "epochs": 2,
        "batch_size": 16,
        "output_dir": str(tmp_path / "run"),
        "progress": "false",
        **options,
    }
    return ["train", *(f"{k}={v}" for k, v in args.items())]


def _rft_argv(tmp_path: Path, model: str, **options: object) -> list[str]:
    """A quick `rsft rft` on the tiny LM: 8 prompts in 2 chunks, 2 completions each."""
    data = tmp_path / "data"
    if not (data / "train.jsonl").is_file():
        prepare_arithmetic(data, n_train=8, n_eval=4, with_model=False)
    args = {
        "model.path": model,
        "data.train": str(data / "train.jsonl"),
        "data.eval": str(data / "eval.jsonl"),
        "generation.k": 2,
        "generation.max_new_tokens": 4,
        "generation.chunk_prompts": 4,
        "selection.rule": "top_fraction",
        "selection.fraction": 0.5,
        "sft.epochs": 1,
        "sft.batch_size": 4,
        "rounds": 1,
        "output_dir": str(tmp_path / "run"),
        "progress": "false",
        **options,
    }
    return ["rft", *(f"{k}={v}" for k, v in args.items())]


# ------------------------------------------------------------------ a full disk, injected


class _Filling:
    """A file being written on a disk that fills up: the first write gets half its data on
    disk, then fails with ``code`` (as ``write`` does on a full disk)."""

    def __init__(self, fh, code: int) -> None:
        self._fh, self._code = fh, code

    def write(self, data):
        self._fh.write(data[: len(data) // 2])
        self._fh.flush()
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name: str):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()


class FullDisk:
    """The ``nth`` file written whose path matches ``pattern`` finds the disk full (errno
    ``code``): Python writes (``open``) and transformers' safetensors saves, which fail as
    safetensors does ("... (os error 28)"). ``free()``: space again, for the rerun."""

    def __init__(self, monkeypatch, pattern: str, nth: int = 1, code: int = errno.ENOSPC):
        self.pattern, self.nth, self.code = re.compile(pattern), nth, code
        self.seen, self.failed = 0, []
        real_open, real_save = builtins.open, transformers.modeling_utils.safe_save_file

        def fake_open(file, mode="r", *args, **kwargs):
            fh = real_open(file, mode, *args, **kwargs)
            writes = any(c in mode for c in "wax+")
            return _Filling(fh, self.code) if writes and self._hit(file) else fh

        def fake_save(tensors, filename, metadata=None):
            if self._hit(filename):
                code = self.code
                raise SafetensorError(
                    f"Error while serializing: I/O error: {os.strerror(code)} (os error {code})"
                )
            return real_save(tensors, filename, metadata=metadata)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", fake_save)

    def _hit(self, file) -> bool:
        if self.nth is None or isinstance(file, int) or not self.pattern.search(str(file)):
            return False
        self.seen += 1
        if self.seen != self.nth:
            return False
        self.failed.append(str(file))
        return True

    def free(self) -> None:
        self.nth = None


def _disk_full_line(err: str, command: str, names: str) -> str:
    line = _error_line(err, command)
    assert line.startswith("error: no space left on the disk"), line
    assert re.search(names, line), line
    assert "run the same command again: it resumes" in line
    return line


def _scratch(folder: Path) -> list[str]:
    """Temporary files and folders of unfinished writes under ``folder``."""
    return [str(p) for p in folder.rglob("*") if p.name.startswith(".") and "tmp" in p.name]


def check_disk_full_in_a_chunk(tmp_path, tiny_lm, monkeypatch, capsys, isolated):
    disk = FullDisk(monkeypatch, r"chunks/\.00001\.jsonl\.")  # the second chunk's file
    argv = _rft_argv(tmp_path, tiny_lm)
    code, err = _cli(capsys, argv)
    chunks = tmp_path / "run" / "round_1" / "chunks"
    assert code == 1, err
    _disk_full_line(err, "rft", re.escape(f"writing {chunks / '00001.jsonl'}"))
    assert sorted(p.name for p in chunks.iterdir()) == ["00000.jsonl"]  # no half file
    first = [json.loads(line) for line in (chunks / "00000.jsonl").read_text().splitlines()]
    disk.free()
    code, err = _cli(capsys, argv)
    assert code == 0, err
    rows = [json.loads(line) for line in (chunks.parent / "generations.jsonl").open()]
    assert [r["completion"] for r in rows[: len(first)]] == [r["completion"] for r in first]


def check_disk_full_in_the_sft_save(tmp_path, tiny_lm, monkeypatch, capsys, isolated):
    disk = FullDisk(monkeypatch, r"model\.partial/.*\.safetensors$")
    argv = _rft_argv(tmp_path, tiny_lm)
    code, err = _cli(capsys, argv)
    sft = tmp_path / "run" / "round_1" / "sft"
    assert code == 1, err
    _disk_full_line(err, "rft", re.escape(f"writing {sft / 'model.partial'}"))
    assert not (sft / "model").exists()
    generated = (sft.parent / "generations.jsonl").read_text()
    disk.free()
    code, err = _cli(capsys, argv)
    assert code == 0, err
    assert (sft / "model" / "model.safetensors").is_file()
    assert (sft.parent / "generations.jsonl").read_text() == generated  # not generated again


def _results(tmp_path: Path, name: str = "run") -> dict:
    return json.loads((tmp_path / name / "results.json").read_text())


def _uninterrupted(tmp_path: Path, capsys) -> dict:
    code, err = _cli(capsys, _train_argv(tmp_path, output_dir=tmp_path / "whole"))
    assert code == 0, err
    return _results(tmp_path, "whole")


def check_disk_full_in_a_checkpoint(tmp_path, monkeypatch, capsys, isolated):
    """The second checkpoint's optimizer.pt finds the disk over its quota (EDQUOT)."""
    disk = FullDisk(monkeypatch, r"/optimizer\.pt$", nth=2, code=errno.EDQUOT)
    code, err = _cli(capsys, _train_argv(tmp_path))
    assert code == 1, err
    line = _disk_full_line(err, "train", r"writing \S+/checkpoints/\.tmp-step-\S+/optimizer\.pt")
    assert "quota" in line
    checkpoints = tmp_path / "run" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir() if p.name.startswith(".")] == []  # removed
    disk.free()
    code, err = _cli(capsys, _train_argv(tmp_path))
    assert code == 0, err
    whole, resumed = _uninterrupted(tmp_path, capsys), _results(tmp_path)
    assert resumed["resumed_from_step"] == 3  # the first epoch's checkpoint
    assert resumed["step_losses"] == whole["step_losses"]
    assert resumed["test_accuracy"] == whole["test_accuracy"]


def check_disk_full_in_results(tmp_path, monkeypatch, capsys, isolated):
    disk = FullDisk(monkeypatch, r"/\.results\.json\.")
    code, err = _cli(capsys, _train_argv(tmp_path))
    assert code == 1, err
    _disk_full_line(err, "train", re.escape(f"writing {tmp_path / 'run' / 'results.json'}"))
    assert not (tmp_path / "run" / "results.json").exists() and not _scratch(tmp_path / "run")
    disk.free()
    code, err = _cli(capsys, _train_argv(tmp_path))
    assert code == 0, err
    assert _results(tmp_path)["test_accuracy"] == _uninterrupted(tmp_path, capsys)["test_accuracy"]


def check_disk_full_in_another_writer(tmp_path, monkeypatch, capsys):
    """A write rsft does not wrap (a library's): the CLI still names the file it knows."""

    def full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "plot.png"))

    monkeypatch.setattr(cli, "cmd_train", full)
    code, err = _cli(capsys, ["train"])
    assert code == 1
    _disk_full_line(err, "train", re.escape(f"writing {tmp_path / 'plot.png'}"))


# ------------------------------------------------------------------ unsafe pickles


class Payload:
    """Unpickling it would create the file PWNED: it must never happen."""

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path.cwd() / "PWNED",))


def _poison(path: Path) -> None:
    """Replace a torch file with one that also holds :class:`Payload`; fix the manifest's
    size (as an attacker who can write the folder would)."""
    torch.save({"state": {}, "param_groups": [], "payload": Payload()}, path)
    manifest = path.parent / "manifest.json"
    if manifest.is_file():
        listed = json.loads(manifest.read_text())
        listed["files"][path.name] = path.stat().st_size
        manifest.write_text(json.dumps(listed))


def check_poisoned_checkpoint(tmp_path, capsys, isolated, file: str):
    argv = _train_argv(tmp_path, optim="{name: sgd, lr: 0.05, scheduler: cosine}")
    assert _cli(capsys, argv)[0] == 0
    checkpoints = tmp_path / "run" / "checkpoints"
    newest = checkpoints / (checkpoints / "latest").read_text().strip()
    _poison(newest / file)
    code, err = _cli(capsys, argv)
    assert code == 2, err
    line = _error_line(err, "train")
    assert line.startswith(f"error: {newest / file} holds pickled Python objects ("), line
    assert "rsft will not unpickle it, because unpickling runs the code it names" in line
    assert f"Delete the checkpoint folder {newest} and run again" in line
    assert not (tmp_path / "PWNED").exists()
    shutil.rmtree(newest)  # what the message says: the run resumes from the one before
    code, err = _cli(capsys, argv)
    assert code == 0, err
    assert _results(tmp_path)["resumed_from_step"] == 3
    assert not (tmp_path / "PWNED").exists()


def _records(n: int) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} + {i}?"},
                {"role": "assistant", "content": str(2 * i)},
            ]
        }
        for i in range(n)
    ]


def check_poisoned_sft_checkpoint(tmp_path, tiny_lm, monkeypatch, isolated):
    """A fine-tuning stage killed after TRL's checkpoint-2, whose optimizer.pt is then
    replaced: resuming (transformers' Trainer, weights_only) refuses it, naming the file."""
    cfg = SFTSection(epochs=1, batch_size=2, lr=1e-3, save_steps=2)
    real_step, steps = trl.SFTTrainer.training_step, []

    def killed_in_step_3(self, *args, **kwargs):
        steps.append(self.state.global_step)
        if len(steps) == 3:
            raise KeyboardInterrupt("killed")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(trl.SFTTrainer, "training_step", killed_in_step_3)
    with pytest.raises(KeyboardInterrupt):
        sft_train(tiny_lm, _records(8), tmp_path, cfg, seed=0, progress=False)
    monkeypatch.setattr(trl.SFTTrainer, "training_step", real_step)
    saved = tmp_path / "trainer" / "checkpoint-2"
    _poison(saved / "optimizer.pt")
    with pytest.raises(UnsafePickleError) as caught:
        sft_train(tiny_lm, _records(8), tmp_path, cfg, seed=0, progress=False)
    message = str(caught.value)
    assert message.startswith(f"{saved / 'optimizer.pt'} holds pickled Python objects"), message
    assert f"Delete {saved} and run again" in message
    assert not (tmp_path / "PWNED").exists()
    shutil.rmtree(saved)
    model = sft_train(tiny_lm, _records(8), tmp_path, cfg, seed=0, progress=False)
    assert (model / "model.safetensors").is_file() and not (tmp_path / "PWNED").exists()


# ------------------------------------------------------------------ model folders' config files

BAD_JSON = {  # what the file holds, the line's pattern, and the line as the table says it
    "not-json": (
        '{"model_type": "llama",',
        r"is not valid JSON: .* at line 1, column \d+\.",
        "is not valid JSON: Expecting … at line 1, column …",
    ),
    "a-list": (
        "[1, 2]",
        r"holds a JSON list, not an object of settings\.",
        "holds a JSON list, not an object of settings",
    ),
    "a-number": (
        "3",
        r"holds a JSON int, not an object of settings\.",
        "holds a JSON int, not an object of settings",
    ),
}
BAD_CONFIGS = [
    ("config.json", "not-json"),
    ("config.json", "a-list"),
    ("tokenizer_config.json", "not-json"),
    ("tokenizer_config.json", "a-number"),
]


def check_bad_config_file(
    tmp_path, tiny_lm, tiny_reward_model, capsys, isolated, command, file, bad
):
    text, expected, _ = BAD_JSON[bad]
    folder = _copy(tiny_lm if command == "rft" else tiny_reward_model, tmp_path / "model")
    (folder / file).write_text(text)
    if command == "rft":
        argv = _rft_argv(tmp_path, str(folder))
    else:  # the text classifier on a text table
        table = tmp_path / "t.csv"
        table.write_text("text,label\n" + "".join(f"ab {i},{i % 2}\n" for i in range(8)))
        argv = ["train", f"model.path={folder}", f"data.train={table}", "data.text_column=text"]
        argv.append(f"output_dir={tmp_path / 'run'}")
    code, err = _cli(capsys, argv)
    assert code == 2, err
    line = _error_line(err, command)
    restore = "Restore the file from where the model came from (or save the model again)."
    pattern = f"error: {re.escape(str(folder / file))} {expected} {re.escape(restore)}"
    assert re.fullmatch(pattern, line), line
    assert not (tmp_path / "run").exists()  # refused before anything is written


# ------------------------------------------------------------------ prompt and data files


def _latin1(path: Path, text: str) -> str:
    path.write_bytes(text.encode("latin-1"))
    return str(path)


LATIN1 = {  # a table in Latin-1 (é is the byte 0xe9) and where its first é is
    "prompts.csv": ("prompt,answer\nWhat is 2 + 2?,4\nCaf\xe9: what is 1 + 1?,2\n", 3, 4),
    "prompts.jsonl": ('{"prompt": "2 + 2?", "answer": "4"}\n{"prompt": "Caf\xe9?"}\n', 2, 16),
    "train.csv": ("text,label\n" + "".join(f"caf\xe9 {i},{i % 2}\n" for i in range(8)), 2, 4),
}


def check_non_utf8_file(tmp_path, tiny_lm, capsys, isolated, name):
    text, line, column = LATIN1[name]
    bad = tmp_path / name
    bad.write_bytes(text.encode("latin-1"))
    if name.startswith("prompts"):
        command, argv = "rft", _rft_argv(tmp_path, tiny_lm, **{"data.eval": bad})
    else:
        command = "train"
        argv = _train_argv(tmp_path, **{"data.train": bad, "data.feature_columns": "all"})
    code, err = _cli(capsys, argv)
    assert code == 2, err
    assert _error_line(err, command) == (
        f"error: {bad} is not UTF-8 text: byte 0xe9 at line {line}, column {column} is not "
        "valid UTF-8. rsft reads CSV and JSON files as UTF-8: convert it first, e.g. `iconv "
        f"-f latin1 -t utf-8 {bad} > {bad.with_name(bad.stem + '.utf8' + bad.suffix)}` if it "
        f"is Latin-1, and use {bad.stem}.utf8{bad.suffix}."
    )


# ------------------------------------------------------------------ engines, output folders


def check_engine_exits(tmp_path, tiny_lm, capsys, isolated):
    fake = tmp_path / "fake-vllm-python"
    fake.write_text("#!/bin/sh\necho 'not a model folder' >&2\nexit 3\n")
    fake.chmod(0o755)
    argv = _rft_argv(
        tmp_path, tiny_lm, **{"generation.backend": "vllm", "engine.vllm_python": fake}
    )
    code, err = _cli(capsys, argv)
    assert code == 1, err
    assert "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith(f"rsft rft: error: the vLLM engine for {tiny_lm} exited with code 3"), (
        err
    )
    assert "not a model folder" in err  # the log's tail follows the line


def check_dangling_output_dir(tmp_path, tiny_lm, capsys, isolated, command, below):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    out = link / "run" if below else link
    argv = _rft_argv(tmp_path, tiny_lm) if command == "rft" else _train_argv(tmp_path)
    argv = [a for a in argv if not a.startswith("output_dir=")] + [f"output_dir={out}"]
    code, err = _cli(capsys, argv)
    assert code == 2, err
    part = "it" if not below else f"{str(link)!r}, part of that path,"
    assert _error_line(err, command) == (
        f"error: output_dir {str(out)!r}: {part} is a symbolic link to "
        f"{str(tmp_path / 'gone')!r}, which does not exist. Create that folder, remove the "
        "link, or choose another output_dir."
    )


# ------------------------------------------------------------------ the tilted selection


def check_beta_below_normal_refused(tmp_path, tiny_lm, capsys, isolated):
    argv = _rft_argv(tmp_path, tiny_lm, **{"selection.rule": "tilted", "selection.beta": 1e-320})
    code, err = _cli(capsys, argv)
    assert code == 2, err
    assert _error_line(err, "rft").startswith(
        "error: selection.beta must be >= 2.22507e-308, got 1e-320."
    )
    assert not (tmp_path / "run").exists()  # refused before any work


def check_beta_below_normal_in_python():
    with pytest.raises(ValueError, match=r"beta must be >= 2\.22507e-308, got 1e-320"):
        select("tilted", [1.0, 0.0] * 8, list(range(16)), beta=1e-320)


def _finite_stats(stats: dict) -> None:
    for key in ("expected_acceptance", "ess", "mean_reward", "mean_reward_accepted"):
        assert stats[key] is None or math.isfinite(stats[key]), (key, stats[key])


def check_tilted_rewards_overflow(beta):
    """r/β overflows (±1e308 / β < 1): only the largest rewards have a non-zero probability
    exp((r - r_max)/β) in floats, and exactly they are kept."""
    rewards = [1e308, 5e307, -1e308, 1e308, 0.0, -5e307]
    gen = torch.Generator().manual_seed(0)
    sel = select("tilted", rewards, list(range(6)), beta=beta, generator=gen)
    assert sel.accepted == [True, False, False, True, False, False]
    _finite_stats(sel.stats)
    assert sel.stats["mean_reward_accepted"] == 1e308
    assert sel.stats["ess"] == pytest.approx(2.0) and sel.stats["violations"] == 0


def check_tilted_stays_exact_near_the_float_limit():
    """Rewards near 1.5e308 with β = 1e307: the levels r_max - β ln(1, 2, 4) are kept with
    probability 1, 1/2, 1/4 (binomial, 4.5 sigma), -1.5e308 never (exp(-30))."""
    beta, top = 1e307, 1.5e308
    levels = [top, top - beta * math.log(2), top - beta * math.log(4), -top]
    n = 4000
    rewards = [r for r in levels for _ in range(n)]
    sel = select(
        "tilted",
        rewards,
        list(range(len(rewards))),
        beta=beta,
        generator=torch.Generator().manual_seed(7),
    )
    for j, p in enumerate([1.0, 0.5, 0.25, 0.0]):
        kept = sum(sel.accepted[j * n : (j + 1) * n])
        assert abs(kept - n * p) <= 4.5 * math.sqrt(n * p * (1 - p)) + 1e-9, (j, kept)
    _finite_stats(sel.stats)


def check_stats_far_above_the_envelope():
    """A weight e^700 above M = 1 (a violation, counted): the sums stay finite."""
    stats = RejectionStats().update(torch.tensor([0.0, 700.0, -5.0], dtype=torch.float64), 0.0)
    assert math.isfinite(stats.ess) and stats.ess == pytest.approx(1.0)
    assert stats.violations == 1 and math.isfinite(stats.expected_acceptance)
    merged = RejectionStats().update(torch.tensor([0.0]), 0.0).merge(stats)
    assert merged.ess == pytest.approx(1.0) and merged.n == 4


# ------------------------------------------------------------------ Ctrl-C


def check_ctrl_c_in_process(monkeypatch, capsys, command, resume):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, f"cmd_{command}", interrupted)
    argv = [command, "digits"] if command == "prepare" else [command]
    code, err = _cli(capsys, argv)
    assert code == 130
    assert err.strip() == f"rsft {command}: interrupted; run the same command again to {resume}"


_INTERRUPTIBLE = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in a background job
from rsft.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def check_ctrl_c_stops_train_and_the_rerun_resumes(tmp_path, capsys):
    """A real SIGINT to `rsft train` after its first checkpoint: one line, exit 130; the same
    command again resumes from that checkpoint and finishes."""
    argv = _train_argv(tmp_path, epochs=150)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTIBLE, *argv],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while not list((tmp_path / "run" / "checkpoints").glob("step-*")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "rsft train: interrupted; run the same command again to resume from the last checkpoint"
    )
    code, err = _cli(capsys, argv)
    assert code == 0, err
    assert _results(tmp_path)["resumed_from_step"] >= 3


# ------------------------------------------------------------------ trust_remote_code advice


def _asks_for_code(folder: Path) -> Path:
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "mystery"
    config["auto_map"] = {
        "AutoConfig": "custom.MysteryConfig",
        "AutoModelForCausalLM": "custom.MysteryModel",
        "AutoModelForSequenceClassification": "custom.MysteryModel",
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text("import pathlib\npathlib.Path('PWNED').touch()\n")
    return folder


def check_rft_model_asks_for_code(tmp_path, tiny_lm, capsys, isolated):
    folder = _asks_for_code(_copy(tiny_lm, tmp_path / "custom_lm"))
    code, err = _cli(capsys, _rft_argv(tmp_path, str(folder)))
    assert code == 2, err
    assert _error_line(err, "rft") == (
        f"error: {folder} asks to run its own code (auto_map in its config), which rsft does "
        "not run by default. If you trust this folder, set model.trust_remote_code: true."
    )
    assert not (tmp_path / "PWNED").exists()


def check_reward_model_asks_for_code(tmp_path, tiny_lm, tiny_reward_model, capsys, isolated):
    folder = _asks_for_code(_copy(tiny_reward_model, tmp_path / "custom_rm"))
    options = {"verifier.kind": "reward_model", "verifier.reward_model": folder}
    code, err = _cli(capsys, _rft_argv(tmp_path, tiny_lm, **options))
    assert code == 2, err
    assert _error_line(err, "rft") == (
        f"error: {folder} asks to run its own code (auto_map in its config), and rsft never "
        "runs a reward model's code (model.trust_remote_code: true applies to model.path "
        "only). Use a reward model whose model type transformers knows."
    )
    assert not (tmp_path / "PWNED").exists()


def check_reward_model_tokenizer_asks_for_code(
    tmp_path, tiny_lm, tiny_reward_model, capsys, isolated
):
    folder = _copy(tiny_reward_model, tmp_path / "custom_tok_rm")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "MysteryTokenizer"
    config["auto_map"] = {"AutoTokenizer": ["custom.MysteryTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text("import pathlib\npathlib.Path('PWNED').touch()\n")
    options = {"verifier.kind": "reward_model", "verifier.reward_model": folder}
    code, err = _cli(capsys, _rft_argv(tmp_path, tiny_lm, **options))
    assert code == 0, err  # transformers reads its own tokenizer from tokenizer.json instead
    assert not (tmp_path / "PWNED").exists()


def check_model_kwargs_do_not_fit(tmp_path, capsys, isolated, kwargs, named):
    code, err = _cli(capsys, _train_argv(tmp_path, **{"model.kwargs": kwargs}))
    assert code == 2, err
    line = _error_line(err, "train")
    assert line.startswith("error: model.kwargs ") and "rsft.tasks.digits:DigitsNet(" in line, line
    assert named in line, line
    assert not (tmp_path / "run").exists()


def check_trusted_model_passes_the_check(tmp_path, tiny_lm, isolated):
    folder = _asks_for_code(_copy(tiny_lm, tmp_path / "custom_lm"))
    assert check_model_folder(folder, trust_remote_code=True) == folder
    with pytest.raises(ValueError, match="set model.trust_remote_code: true"):
        check_model_folder(folder)


# ------------------------------------------------------------------ the table

CASES = [
    # --- a full disk
    Case(
        "disk-full-chunk",
        "`rsft rft`: the disk fills up while the second chunk file of round 1 is written",
        "exit 1: 'error: no space left on the disk (or over the disk quota) while writing "
        "<out>/round_1/chunks/00001.jsonl. Free some space, then run the same command again: "
        "it resumes from what was saved completely (a half-written file is never used).'; "
        "chunk 00000 kept, no half file; the rerun ends with exit 0 keeping chunk 00000",
        check_disk_full_in_a_chunk,
    ),
    Case(
        "disk-full-sft-save",
        "`rsft rft`: safetensors cannot write the fine-tuned model (os error 28)",
        "exit 1 naming round_1/sft/model.partial; no model folder; the rerun fine-tunes "
        "again without generating again, exit 0",
        check_disk_full_in_the_sft_save,
    ),
    Case(
        "disk-quota-checkpoint",
        "`rsft train`: the second checkpoint's optimizer.pt write fails with EDQUOT",
        "exit 1 naming <out>/checkpoints/.tmp-step-…/optimizer.pt and the quota; the "
        "temporary folder removed; the rerun resumes from step 3 and ends with the "
        "uninterrupted run's losses and accuracy",
        check_disk_full_in_a_checkpoint,
    ),
    Case(
        "disk-full-results",
        "`rsft train`: the disk fills up while results.json is written",
        "exit 1 naming <out>/results.json; no results.json, no temporary file; the rerun "
        "writes it, the same accuracy",
        check_disk_full_in_results,
    ),
    Case(
        "disk-full-elsewhere",
        "an OSError ENOSPC (with a file name) from a writer rsft does not wrap",
        "exit 1: the same line, naming that file",
        check_disk_full_in_another_writer,
    ),
    # --- unsafe pickles
    Case(
        "poisoned-optimizer-pt",
        "a finished `rsft train` run whose newest checkpoint's optimizer.pt holds a pickled "
        "object that creates a file when unpickled (manifest sizes updated); run again",
        "exit 2: '<ckpt>/optimizer.pt holds pickled Python objects (builtins.getattr, …), "
        "not only tensors and numbers: rsft will not unpickle it, because unpickling runs the "
        "code it names. … Delete the checkpoint folder <ckpt> and run again: the run then "
        "resumes from the checkpoint before it, …'; nothing runs; after deleting it, the rerun "
        "resumes from step 3",
        functools.partial(check_poisoned_checkpoint, file="optimizer.pt"),
    ),
    Case(
        "poisoned-scheduler-pt",
        "the same with the checkpoint's scheduler.pt (cosine schedule)",
        "the same, naming scheduler.pt",
        functools.partial(check_poisoned_checkpoint, file="scheduler.pt"),
    ),
    Case(
        "poisoned-sft-checkpoint",
        "a fine-tuning stage killed after TRL's checkpoint-2, its optimizer.pt poisoned; "
        "sft_train again (transformers' Trainer resumes with weights_only)",
        "UnsafePickleError (rsft rft: exit 2) naming checkpoint-2/optimizer.pt, 'Delete "
        "<checkpoint-2> and run again: the fine-tuning resumes from an earlier checkpoint if "
        "there is one, else it starts over'; nothing runs; after deleting it, it trains",
        check_poisoned_sft_checkpoint,
    ),
]


def _bad_config_case(command: str, file: str, bad: str) -> Case:
    text, _, says = BAD_JSON[bad]
    return Case(
        f"{command}-{file.removesuffix('.json').replace('_', '-')}-{bad}",
        f"`rsft {command}` on a model folder whose {file} is {text!r}",
        f"exit 2: '<folder>/{file} {says}. Restore the file from where the model came from (or "
        "save the model again).'",
        functools.partial(check_bad_config_file, command=command, file=file, bad=bad),
    )


CASES += [_bad_config_case(c, f, b) for c in ("train", "rft") for f, b in BAD_CONFIGS]

CASES += [
    Case(
        "rft-latin1-csv-prompts",
        "`rsft rft` with data.eval a CSV in Latin-1 ('Café')",
        "exit 2: '<file> is not UTF-8 text: byte 0xe9 at line 3, column 4 is not valid UTF-8. "
        "rsft reads CSV and JSON files as UTF-8: convert it first, e.g. `iconv -f latin1 -t "
        "utf-8 <file> > <stem>.utf8.csv` if it is Latin-1, …'",
        functools.partial(check_non_utf8_file, name="prompts.csv"),
    ),
    Case(
        "rft-latin1-jsonl-prompts",
        "the same with a JSON-lines file",
        "the same line, at line 2, column 16",
        functools.partial(check_non_utf8_file, name="prompts.jsonl"),
    ),
    Case(
        "train-latin1-csv",
        "`rsft train` with data.train a CSV in Latin-1",
        "the same line, naming the training table (tables.read_table: training and prompts alike)",
        functools.partial(check_non_utf8_file, name="train.csv"),
    ),
    Case(
        "engine-exits",
        "`rsft rft` with generation.backend vllm and engine.vllm_python a program that exits 3",
        "exit 1: 'rsft rft: error: the vLLM engine for <model> exited with code 3 before it "
        "answered. The end of its log (<log>):' and the log's tail",
        check_engine_exits,
    ),
    Case(
        "rft-dangling-output-dir",
        "`rsft rft` with output_dir a symbolic link to a folder that does not exist",
        "exit 2 before any work: \"output_dir '<link>': it is a symbolic link to '<target>', "
        "which does not exist. Create that folder, remove the link, or choose another "
        'output_dir."',
        functools.partial(check_dangling_output_dir, command="rft", below=False),
    ),
    Case(
        "train-dangling-output-dir-parent",
        "`rsft train` with output_dir <that link>/run",
        "exit 2: \"… '<link>', part of that path, is a symbolic link to '<target>', …\"",
        functools.partial(check_dangling_output_dir, command="train", below=True),
    ),
    Case(
        "rft-beta-below-normal",
        "`rsft rft` with selection.rule tilted and selection.beta 1e-320",
        "exit 2 before any work: 'selection.beta must be >= 2.22507e-308, got 1e-320. Below it "
        "floats are subnormal and 1/beta overflows; a beta this small already keeps only the "
        "largest reward.'",
        check_beta_below_normal_refused,
    ),
    Case(
        "tilted-beta-below-normal",
        "select('tilted', rewards 1 and 0, beta=1e-320)",
        "ConfigError (a ValueError) naming the range",
        check_beta_below_normal_in_python,
    ),
    Case(
        "tilted-rewards-overflow-half",
        "tilted, rewards ±1e308, ±5e307 and 0, beta 0.5 (r/β overflows)",
        "exactly the two rewards 1e308 kept (their probability is 1, the others' underflow "
        "to 0); ESS 2, expected acceptance, mean rewards finite",
        functools.partial(check_tilted_rewards_overflow, beta=0.5),
    ),
    Case(
        "tilted-rewards-overflow-tiny-beta",
        "the same with beta 1e-5",
        "the same",
        functools.partial(check_tilted_rewards_overflow, beta=1e-5),
    ),
    Case(
        "tilted-rewards-overflow-beta-1",
        "the same with beta 1 (r/β finite, r - r_max overflows)",
        "the same",
        functools.partial(check_tilted_rewards_overflow, beta=1.0),
    ),
    Case(
        "tilted-exact-near-the-float-limit",
        "tilted, rewards 1.5e308 − β·ln(1, 2, 4) and −1.5e308, beta 1e307, 4000 each",
        "kept with probability 1, 1/2, 1/4 and 0 (binomial, 4.5 sigma); statistics finite",
        check_tilted_stays_exact_near_the_float_limit,
    ),
    Case(
        "stats-weight-far-above-m",
        "RejectionStats: log weights 0, 700, −5 against log M = 0, then merged",
        "ESS 1.0, one violation, every figure finite",
        check_stats_far_above_the_envelope,
    ),
    # --- Ctrl-C
    Case(
        "ctrl-c-train",
        "KeyboardInterrupt in `rsft train`",
        "exit 130, the one line 'rsft train: interrupted; run the same command again to "
        "resume from the last checkpoint'",
        functools.partial(
            check_ctrl_c_in_process, command="train", resume="resume from the last checkpoint"
        ),
    ),
    Case(
        "ctrl-c-rft",
        "KeyboardInterrupt in `rsft rft`",
        "exit 130: '… to resume (finished stages and saved chunks are kept)'",
        functools.partial(
            check_ctrl_c_in_process,
            command="rft",
            resume="resume (finished stages and saved chunks are kept)",
        ),
    ),
    Case(
        "ctrl-c-compare",
        "KeyboardInterrupt in `rsft compare`",
        "exit 130: '… to resume (finished runs are reused)'",
        functools.partial(
            check_ctrl_c_in_process, command="compare", resume="resume (finished runs are reused)"
        ),
    ),
    Case(
        "ctrl-c-prepare",
        "KeyboardInterrupt in `rsft prepare digits`",
        "exit 130: '… to finish'",
        functools.partial(check_ctrl_c_in_process, command="prepare", resume="finish"),
    ),
    Case(
        "sigint-train",
        "SIGINT to an `rsft train` process after its first checkpoint",
        "exit 130, that line last on stderr, no traceback",
        check_ctrl_c_stops_train_and_the_rerun_resumes,
    ),
    # --- transformers' trust_remote_code advice
    Case(
        "rft-model-asks-for-code",
        "`rsft rft` whose model.path config.json has an unknown model_type and an auto_map "
        "naming custom.py",
        "exit 2: '<folder> asks to run its own code (auto_map in its config), which rsft does "
        "not run by default. If you trust this folder, set model.trust_remote_code: true.'; "
        "custom.py never runs",
        check_rft_model_asks_for_code,
    ),
    Case(
        "reward-model-asks-for-code",
        "the same folder kind as verifier.reward_model",
        "exit 2: '… and rsft never runs a reward model's code (model.trust_remote_code: true "
        "applies to model.path only). Use a reward model whose model type transformers "
        "knows.'",
        check_reward_model_asks_for_code,
    ),
    Case(
        "reward-model-tokenizer-asks-for-code",
        "a reward model whose tokenizer_config.json names its own tokenizer class (auto_map)",
        "runs (exit 0): transformers reads the tokenizer from tokenizer.json; custom.py never runs",
        check_reward_model_tokenizer_asks_for_code,
    ),
    # --- model.kwargs
    Case(
        "model-kwargs-yaml-without-space",
        "`rsft train model.kwargs={width:4}` (YAML reads the key 'width:4')",
        "exit 2: 'error: model.kwargs {'width:4': None} do not fit "
        "rsft.tasks.digits:DigitsNet(…): got an unexpected keyword argument 'width:4' (in "
        "YAML, write a space after each colon: {width: 8}).', before anything is built",
        functools.partial(
            check_model_kwargs_do_not_fit, kwargs="{width:4}", named="a space after each colon"
        ),
    ),
    Case(
        "model-kwargs-unknown",
        "`rsft train model.kwargs={depth: 3}`, an argument DigitsNet does not take",
        "exit 2: 'error: model.kwargs {'depth': 3} do not fit rsft.tasks.digits:DigitsNet(…): "
        "got an unexpected keyword argument 'depth'.'",
        functools.partial(check_model_kwargs_do_not_fit, kwargs="{depth: 3}", named="'depth'"),
    ),
    Case(
        "trusted-model-passes-the-check",
        "check_model_folder on that folder with trust_remote_code=True, and without",
        "passes; without, the refusal naming model.trust_remote_code",
        check_trusted_model_passes_the_check,
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_error_lines(case: Case, request: pytest.FixtureRequest) -> None:
    check = case.check
    bound = check.keywords if isinstance(check, functools.partial) else {}
    params = inspect.signature(check).parameters.values()
    wanted = [p.name for p in params if p.name not in bound and p.default is p.empty]
    check(**{name: request.getfixturevalue(name) for name in wanted})
