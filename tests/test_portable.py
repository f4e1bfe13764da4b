"""rsft.portable: the pinned kernels give the same bits on every emulated CPU.

Emulated CPUs are environments that limit what the libraries use (ATen's vectorised kernels,
oneDNN's instruction set, OpenBLAS's kernels, numpy's SIMD loops, the thread count). On a
machine with AVX-512 and two or more cores, pretraining without the pins gives different
weights under the two emulations below (``benchmarks/cross_cpu.py`` shows by how much).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from rsft import portable
from rsft.portable import PORTABLE_ENV, kernel_settings

ROOT = Path(__file__).resolve().parent.parent

# The CPU the tests run on, and an AVX2-only one with one core.
THIS_CPU: dict[str, str] = {}
AVX2_ONE_CORE = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "OMP_NUM_THREADS": "1",
}

PRETRAIN = "import sys; from rsft.tasks.embedded import prepare_digits; prepare_digits(sys.argv[1])"


def _pretrain_under_pins(out: Path, emulated: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}
    env.update(emulated, PYTHONPATH=str(ROOT / "src"), HF_DATASETS_OFFLINE="1")
    cmd = [sys.executable, "-m", "rsft.portable", sys.executable, "-c", PRETRAIN, str(out)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kernels"] == PORTABLE_ENV  # the pins reached the process
    return load_file(out / "pretrained" / "model.safetensors")


def test_pinned_pretraining_is_bitwise_identical_across_emulated_cpus(tmp_path):
    a = _pretrain_under_pins(tmp_path / "this_cpu", THIS_CPU)
    b = _pretrain_under_pins(tmp_path / "avx2_one_core", AVX2_ONE_CORE)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equal(b[name]), name


def test_runs_the_command_under_the_pins_and_returns_its_exit_code(capfd):
    show = "import json, os, sys; print(json.dumps(dict(os.environ))); sys.exit(3)"
    assert portable.main([sys.executable, "-c", show]) == 3
    env = json.loads(capfd.readouterr().out)
    assert {k: env[k] for k in PORTABLE_ENV} == PORTABLE_ENV


def test_without_a_command_prints_export_lines_a_shell_can_source(capsys):
    assert portable.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"export {k}={v}" for k, v in PORTABLE_ENV.items()]


def test_unknown_command_is_a_clear_error(capsys):
    assert portable.main(["no-such-command-rsft"]) == 2
    assert "command not found: no-such-command-rsft" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("machine", "features", "message"),
    [
        ("aarch64", {}, "pins x86-64 kernels; this machine is aarch64"),
        ("x86_64", {"AVX2": False, "FMA3": True}, "this CPU has no AVX2"),
        ("x86_64", {"AVX2": False, "FMA3": False}, "this CPU has no AVX2/FMA3"),
    ],
)
def test_refuses_a_cpu_the_pinned_kernels_cannot_run_on(
    monkeypatch, capsys, machine, features, message
):
    import numpy._core._multiarray_umath as umath

    monkeypatch.setattr(portable.platform, "machine", lambda: machine)
    monkeypatch.setattr(umath, "__cpu_features__", features)
    assert portable.main(["true"]) == 2
    assert message in capsys.readouterr().err


def test_kernel_settings_reads_the_pinned_variables(monkeypatch):
    for key in PORTABLE_ENV:
        monkeypatch.delenv(key, raising=False)
    assert kernel_settings() == dict.fromkeys(PORTABLE_ENV)
    for key, value in PORTABLE_ENV.items():
        monkeypatch.setenv(key, value)
    assert kernel_settings() == PORTABLE_ENV


class _CountingTuner:
    """Stands in for pretraining: writes a model folder and counts the runs."""

    runs = 0

    def __init__(self, cfg) -> None:
        self.out = Path(cfg.output_dir)

    def train(self) -> dict:
        type(self).runs += 1
        (self.out / "model").mkdir(parents=True)
        (self.out / "model" / "model.safetensors").write_bytes(b"")
        return {"history": [{"train_loss": 0.5}]}


def test_prepared_digits_are_reused_only_under_the_same_kernels(tmp_path, monkeypatch):
    import rsft.training
    from rsft.tasks.embedded import prepare_digits

    monkeypatch.setattr(rsft.training, "FineTuner", _CountingTuner)
    monkeypatch.setattr(_CountingTuner, "runs", 0)
    for key, value in PORTABLE_ENV.items():
        monkeypatch.setenv(key, value)
    paths = prepare_digits(tmp_path / "digits")
    assert prepare_digits(tmp_path / "digits") == paths
    assert _CountingTuner.runs == 1  # the second call reused the pretrained model
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")  # other kernels: other bits, so pretrain again
    prepare_digits(tmp_path / "digits")
    assert _CountingTuner.runs == 2
    manifest = json.loads((tmp_path / "digits" / "manifest.json").read_text())
    assert manifest["kernels"] == kernel_settings()


# The rest of a finished run's results.json (what _finished does not look at).
FINISHED_RUN = {
    **dict.fromkeys(["machine", "parameters", "weights"], {}),
    **dict.fromkeys(["acceptance_rate", "ess_fraction", "violations", "envelope"], 1.0),
    **dict.fromkeys(["forwarded", "backpropagated", "global_step", "epochs_run"], 1),
    **dict.fromkeys(["setup_time", "train_time", "wall_time"], 0.5),
    **{"classes": ["0", "1"], "resumed_from_step": None, "step_losses": [0.5]},
    "history": [{"train_loss": 0.5}],
    **{"diverged": False, "divergence": [], "schema": 1},
}


def test_compare_reruns_a_finished_run_under_other_kernels(tmp_path, monkeypatch):
    from rsft import __version__
    from rsft.compare.runner import _finished, _to_run
    from rsft.config import from_dict, to_dict
    from rsft.training import TrainConfig
    from rsft.training.resume import data_digest

    for key, value in PORTABLE_ENV.items():
        monkeypatch.setenv(key, value)
    cfg = from_dict(
        TrainConfig,
        {"model": {"path": "rsft.tasks.digits:DigitsNet"}, "data": {"train": "t.parquet"}},
    )
    cfg.output_dir = str(tmp_path)
    done = {
        **FINISHED_RUN,
        "config": to_dict(cfg),
        "rsft_version": __version__,
        "kernels": kernel_settings(),
        "data": data_digest(cfg),
    }
    (tmp_path / "results.json").write_text(json.dumps(done))
    assert _finished(cfg) == done
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert _finished(cfg) is None
    assert _to_run(cfg).resume == "never"  # stale: started over, not resumed
    assert cfg.resume == "auto"  # the run's own config is left as it was


def test_machine_info_names_the_cpu_and_the_numeric_libraries():
    import numpy
    import torch

    from rsft.portable import machine_info

    info = machine_info()
    assert info["cpu"]["machine"] == platform.machine()
    assert info["versions"]["torch"] == torch.__version__
    assert info["versions"]["numpy"] == numpy.__version__
    if sys.platform.startswith("linux"):
        assert info["cpu"]["model_name"]  # read from /proc/cpuinfo
