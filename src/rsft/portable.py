"""Pin the kernels the libraries choose, so that x86-64 CPUs with AVX2 pick the same ones.

torch, MKL, oneDNN and OpenBLAS each pick their kernels from the CPU they start on: ATen's
vectorised loops (AVX-512, AVX2 or none), oneDNN's convolutions (by instruction set and
thread count), MKL's matrix products (by vendor and instruction set), OpenBLAS's in numpy,
scipy and scikit-learn (by CPU model). Each kernel sums in its own order, so one training
step on two CPUs differs in the last bits, and training amplifies the difference: on the
embedded digits task the pretrained model's target accuracy moves by up to 1.5 points
between emulated CPUs, and a method's 5-seed gain over plain fine-tuning by up to 3.6
(``benchmarks/cross_cpu.py``). :data:`PORTABLE_ENV` pins every one of these
choices to one that any x86-64 CPU with AVX2 and FMA (Intel since 2013, AMD since 2015) can
make. Checked on emulated CPUs (AVX-512 or AVX2 kernels, 1 to 4 threads) on one machine:
the same bits on all of them. Two real machines of the same kind have still disagreed on
some rejection methods' runs (cause not found; README, "What make demo shows"), and that
Intel and AMD CPUs agree rests on MKL's documented reproducible mode only, so
:func:`machine_info` is recorded beside the pins.
The cost is a single thread: on 2 cores the digits demo takes 15-20% longer.

The variables are read when the libraries start, so they have to be set before Python
starts: ``python -m rsft.portable COMMAND [ARGS...]`` runs COMMAND under them (``make demo``
does this) and ``python -m rsft.portable`` prints them as ``export`` lines for a shell.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping

PORTABLE_ENV: dict[str, str] = {
    # ATen's vectorised kernels (elementwise ops, reductions, optimizers, random numbers):
    # the AVX-512 ones sum in another order than the AVX2 ones.
    "ATEN_CPU_CAPABILITY": "avx2",
    # oneDNN (convolutions): AVX2 kernels at most.
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    # MKL (matrix products): its conditional-numerical-reproducibility code path that gives
    # the same bits on Intel and AMD CPUs (its other paths are chosen by vendor).
    "MKL_CBWR": "COMPATIBLE",
    # OpenBLAS (numpy, scipy; scikit-learn's domain classifier): its AVX2 kernels.
    "OPENBLAS_CORETYPE": "Haswell",
    # One thread: work split across threads is summed in an order that depends on their count.
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


def kernel_settings(environ: Mapping[str, str] = os.environ) -> dict[str, str | None]:
    """The values of the variables :data:`PORTABLE_ENV` pins, as they are now (None: unset)."""
    return {key: environ.get(key) for key in PORTABLE_ENV}


ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def machine_info() -> dict[str, object]:
    """What a run's bits may depend on beyond the pinned kernels: the CPU and the numeric
    libraries' versions. Recorded beside :func:`kernel_settings`, so that two runs that
    differ can be told apart: the pins make emulated CPUs agree on one machine, but two
    machines of the same kind have given different rows for some rejection methods."""
    from importlib import metadata

    cpu: dict[str, object] = {"machine": platform.machine()}
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:  # not Linux: the platform string is what there is
        cpu["processor"] = platform.processor()
    else:
        fields = dict(
            line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line
        )
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        flags = set(fields.get("flags", "").split())
        cpu.update(
            model_name=fields.get("model name"),
            family_model_stepping=[fields.get(k) for k in ("cpu family", "model", "stepping")],
            isa=sorted(
                f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
            ),
        )
    versions = {}
    for pkg in ("torch", "numpy", "scipy", "scikit-learn", "transformers"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu, "python": platform.python_version(), "versions": versions}


def check_cpu() -> None:
    """Raise ValueError where the pinned kernels cannot run: not x86-64, or no AVX2/FMA."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        raise ValueError(
            f"rsft.portable pins x86-64 kernels; this machine is {machine or 'unknown'}. "
            "Run without it: results are reproducible on one machine, not across CPU kinds."
        )
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2 or a layout without the table: nothing to check against
        return
    missing = [f for f in ("AVX2", "FMA3") if not features.get(f, True)]
    if missing:
        raise ValueError(
            f"this CPU has no {'/'.join(missing)}, which the kernels rsft.portable pins need; "
            "its results cannot match those of other CPUs. Run without rsft.portable."
        )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        check_cpu()
    except ValueError as err:
        print(f"rsft.portable: error: {err}", file=sys.stderr)
        return 2
    if not argv:
        for key, value in PORTABLE_ENV.items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    try:
        return subprocess.run(argv, env={**os.environ, **PORTABLE_ENV}).returncode
    except FileNotFoundError:
        print(f"rsft.portable: error: command not found: {argv[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
