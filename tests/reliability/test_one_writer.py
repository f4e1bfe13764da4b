"""One writer per output folder (issue 17, item 13).

A run holds ``<output_dir>/.rsft.lock`` (``rsft.output_lock``) while it writes there; a
second run on the same folder stops with exit code 2 naming the holder's PID. The fast rows
hold the lock from a small real process and run the second command in this one; the rows
marked slow start real ``rsft train`` / ``rsft rft`` processes (and a DDP run under
``accelerate launch``) that wait at a gate (``one_writer_fns``) in the middle of writing,
so the second run meets a real first one, which then finishes.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from rsft.cli.main import main

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LOCK = ".rsft.lock"
PROCESS_LIMIT = 300  # seconds a real process may take (most of it importing torch)
HOLD = (
    "import sys; from rsft.output_lock import OutputLock; lock = OutputLock(*sys.argv[1:]); "
    "lock.acquire(); print('held', flush=True); sys.stdin.read(); lock.release()"
)

pytestmark = pytest.mark.usefixtures("isolated")


def _env(**extra: str) -> dict[str, str]:
    """This checkout's rsft and this folder's helper modules, for a real process."""
    path = os.pathsep.join([str(ROOT / "src"), str(HERE), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


@contextlib.contextmanager
def holder(folder: Path, command: str) -> Iterator[subprocess.Popen]:
    """A real process that holds ``folder``'s lock until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=30)


def _locked_by(pid: int, command: str, folder: Path) -> str:
    """How the refusal starts, up to the holder's start time."""
    return (
        f"{folder} is being written by another rsft run (PID {pid} on {socket.gethostname()}, "
        f"`{command}`, started "
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, three_class_table) -> dict[str, str]:
    """A training table, a tiny causal LM and arithmetic prompts."""
    from rsft.tasks.arithmetic import prepare_arithmetic

    root = tmp_path_factory.mktemp("one_writer")
    table = three_class_table(root / "train.parquet", np.arange(60) % 3, 0)
    spec = importlib.util.spec_from_file_location(
        "gen_conftest_one_writer", ROOT / "tests" / "generation" / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    lm = conftest.save_tiny_causal_lm(root / "lm")
    prompts = prepare_arithmetic(root / "data", n_train=8, n_eval=4, with_model=False)
    return {"table": table, "lm": lm, **prompts}


def train_args(inputs: dict[str, str], out: Path, *extra: str) -> list[str]:
    args = ["train", "model.path=rsft.tasks.digits:DigitsNet", "model.kwargs={width: 8}"]
    args += [f"data.train={inputs['table']}", "data.feature_columns=[pixels]", "epochs=1"]
    return [*args, "batch_size=16", "progress=false", f"output_dir={out}", *extra]


def rft_config(inputs: dict[str, str], out: Path, reward: str = "gated_reward") -> dict:
    return {
        "model": {"path": inputs["lm"]},
        "data": {"train": inputs["train"], "eval": inputs["eval"]},
        "generation": {"k": 2, "max_new_tokens": 4, "chunk_prompts": 4, "batch_size": 16},
        "verifier": {"kind": "function", "function": f"one_writer_fns:{reward}", "timeout": None},
        "selection": {"rule": "top_fraction", "fraction": 0.5},
        "sft": {"epochs": 1, "batch_size": 4, "lr": 1e-3},
        "eval": {"k": 0},
        "rounds": 1,
        "output_dir": str(out),
        "progress": False,
    }


def compare_config(inputs: dict[str, str], out: Path) -> dict:
    base = {
        "model": {"path": "rsft.tasks.digits:DigitsNet", "kwargs": {"width": 8}},
        "data": {"train": inputs["table"], "feature_columns": ["pixels"]},
        "epochs": 1,
        "batch_size": 16,
    }
    return {"base": base, "methods": {"plain": {}}, "seeds": [0], "output_dir": str(out)}


def _command(kind: str, inputs: dict[str, str], tmp_path: Path) -> tuple[list[str], Path, Path]:
    """(the command line, the folder a holder locks, the folder the command writes)."""
    out = tmp_path / "out"
    if kind == "train":
        return train_args(inputs, out), out, out
    if kind == "rft":
        path = tmp_path / "rft.yaml"
        path.write_text(yaml.safe_dump(rft_config(inputs, out, reward="digit_share")))
        return ["rft", "-c", str(path)], out, out
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(compare_config(inputs, out)))
    held = out if kind == "compare" else out / "plain" / "seed-0"
    return ["compare", "-c", str(path)], held, out


@pytest.mark.parametrize(
    "kind, holder_command",
    [
        pytest.param("train", "rsft train", id="train-while-held"),
        pytest.param("rft", "rsft rft", id="rft-while-held"),
        pytest.param("compare", "rsft compare", id="compare-while-held"),
        pytest.param("compare-run", "rsft train", id="compare-run-folder-held"),
    ],
)
def test_a_second_run_stops_while_another_writes(kind, holder_command, inputs, tmp_path, capsys):
    """The second command stops before it loads anything: exit 2, one line naming the
    holder's PID, host, command and start time; it writes nothing."""
    args, held, out = _command(kind, inputs, tmp_path)
    with holder(held, holder_command) as proc:
        rc = main(args)
        err = capsys.readouterr().err
        assert rc == 2, err
        command = args[0]
        assert err.startswith(
            f"rsft {command}: error: " + _locked_by(proc.pid, holder_command, held)
        )
        assert "wait for it to finish or use another output_dir" in err, err
        written = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
        assert written in ([LOCK], ["plain", "plain/seed-0", f"plain/seed-0/{LOCK}"]), written
    assert not (held / LOCK).exists(), "the holder removes the file when it ends"


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("train", id="train-locks-when-it-starts"),
        pytest.param("rft", id="rft-locks-when-it-starts"),
    ],
)
def test_the_lock_is_taken_where_writing_starts(kind, inputs, tmp_path):
    """A run built before another took the lock (so the early look found it free) checks
    again where it starts writing: ``FineTuner.train()``, ``RFTPipeline.run()``."""
    from rsft.config import from_dict
    from rsft.generation import RFTConfig, RFTPipeline
    from rsft.output_lock import OutputLock, OutputLockedError
    from rsft.training import FineTuner, TrainConfig

    out = tmp_path / "out"
    if kind == "train":
        run = FineTuner(from_dict(TrainConfig, _train_dict(inputs, out))).train
    else:
        run = RFTPipeline(from_dict(RFTConfig, rft_config(inputs, out, "digit_share"))).run
    lock = OutputLock(out, "rsft " + kind)
    lock.acquire()
    try:
        with pytest.raises(OutputLockedError, match=f"PID {os.getpid()} on "):
            run()
    finally:
        lock.release()
    assert sorted(p.name for p in out.iterdir()) == [], "nothing was written"


def _train_dict(inputs: dict[str, str], out: Path) -> dict:
    return {
        "model": {"path": "rsft.tasks.digits:DigitsNet", "kwargs": {"width": 8}},
        "data": {"train": inputs["table"], "feature_columns": ["pixels"]},
        "epochs": 1,
        "batch_size": 16,
        "progress": False,
        "output_dir": str(out),
    }


def test_a_killed_holder_does_not_block_the_rerun(inputs, tmp_path, capsys):
    """SIGKILL the process holding the lock: its lock file stays, naming it, but the kernel
    released the lock, so the next run takes the file over, runs, and removes it."""
    out = tmp_path / "out"
    with holder(out, "rsft train") as proc:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert json.loads((out / LOCK).read_text())["pid"] == proc.pid
    assert main(train_args(inputs, out)) == 0, capsys.readouterr().err
    assert (out / "results.json").is_file()
    assert not (out / LOCK).exists()


@pytest.mark.parametrize(
    "finished, rc, message",
    [
        pytest.param(False, 0, None, id="left-lock-file-empty-folder"),
        pytest.param(
            True, 2, "holds a finished run's results.json", id="left-lock-file-finished-run"
        ),
    ],
)
def test_a_left_lock_file_changes_no_check(finished, rc, message, inputs, tmp_path, capsys):
    """A lock file a killed run left behind is not a run's output: an otherwise empty folder
    trains, and a finished run's folder is refused for its results.json, as without it."""
    out = tmp_path / "out"
    if finished:  # its results, without the checkpoints a rerun would resume from
        assert main(train_args(inputs, out)) == 0
        shutil.rmtree(out / "checkpoints")
    out.mkdir(exist_ok=True)
    (out / LOCK).write_text('{"pid": 999999, "host": "gone", "command": "rsft train"}\n')
    capsys.readouterr()
    assert main(train_args(inputs, out)) == rc
    err = capsys.readouterr().err
    if message is not None:
        assert message in err and "being written" not in err, err
    else:
        assert (out / "results.json").is_file() and not (out / LOCK).exists(), err


def test_a_filesystem_without_locks_warns_and_runs(inputs, tmp_path, capsys, monkeypatch):
    """flock refused (ENOLCK, as on some network mounts): one warning line, and the run goes
    on unlocked."""
    import fcntl

    real = fcntl.flock

    def no_locks_for_rsft(fd: int, operation: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(LOCK):
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
        real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", no_locks_for_rsft)
    out = tmp_path / "out"
    assert main(train_args(inputs, out)) == 0
    err = capsys.readouterr().err
    assert f"rsft train: warning: the filesystem of {out} cannot lock files (" in err, err
    assert "make sure none does" in err and (out / "results.json").is_file()


# --- real runs -------------------------------------------------------------------------


def _wait_for(path: Path, proc: subprocess.Popen, limit: float = PROCESS_LIMIT) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "it exited"
        assert time.monotonic() < deadline, f"{path} did not appear within {limit} s"
        time.sleep(0.05)


def _rsft(args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rsft.cli.main", *args],
        env=_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _ddp(args: list[str], **env: str) -> subprocess.Popen:
    launcher = Path(sys.executable).parent / "accelerate"
    flags = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    flags += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29531"]
    return subprocess.Popen(
        [str(launcher), "launch", *flags, "-m", "rsft.cli.main", *args],
        env=_env(ACCELERATE_USE_CPU="true", **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("two-trains", id="two-trains"),
        pytest.param("two-rfts", id="two-rfts"),
        pytest.param("killed-train-reruns", id="killed-train-reruns"),
        pytest.param(
            "ddp",
            id="ddp-takes-one-lock",
            marks=pytest.mark.skipif(
                shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None,
                reason="the accelerate launcher is not installed",
            ),
        ),
    ],
)
def test_real_runs_on_one_output_dir(kind, inputs, tmp_path):
    """The first run waits at the gate with its folder half written; the second, started
    then, exits 2 naming the first's PID; the gate opens and the first finishes (or is
    SIGKILLed, and the rerun is not blocked)."""
    out, gate = tmp_path / "out", tmp_path / "gate"
    if kind == "two-rfts":
        (tmp_path / "rft.yaml").write_text(yaml.safe_dump(rft_config(inputs, out)))
        args = ["rft", "-c", str(tmp_path / "rft.yaml")]
    else:
        gated = ["model.path=one_writer_fns:GatedNet", "model.trust_remote_code=true"]
        args = train_args(inputs, out, *gated)
    start = _ddp if kind == "ddp" else _rsft
    first = start(args, RSFT_TEST_GATE=str(gate))
    _wait_for(Path(f"{gate}.waiting"), first)
    holder_pid = json.loads((out / LOCK).read_text())["pid"]
    if kind == "ddp":  # a rank took it: a child of the launcher
        assert int(Path(f"/proc/{holder_pid}/stat").read_text().split()[3]) == first.pid
    else:
        assert holder_pid == first.pid
    if kind == "killed-train-reruns":
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    second = subprocess.run(
        [sys.executable, "-m", "rsft.cli.main", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=PROCESS_LIMIT,
    )
    if kind == "killed-train-reruns":
        assert second.returncode == 0, second.stderr[-3000:]
    else:
        assert second.returncode == 2, second.stderr[-3000:]
        command = "rsft rft" if kind == "two-rfts" else "rsft train"
        assert _locked_by(holder_pid, command, out) in second.stderr, second.stderr
        gate.touch()
        assert first.wait(timeout=PROCESS_LIMIT) == 0, first.stderr.read()[-3000:]
    assert (out / "results.json").is_file()
    assert not (out / LOCK).exists()
