"""Which backend and device a run's engines use: model.device decides, not the machine."""

from __future__ import annotations

import sys

import pytest

from rsft.config import from_dict
from rsft.generation.config import RFTConfig
from rsft.generation.engines import pool
from rsft.generation.engines.pool import EnginePool
from rsft.models import devices


def _pool(tmp_path, **model) -> EnginePool:
    cfg = from_dict(
        RFTConfig,
        {
            "model": {"path": str(tmp_path / "model"), **model},
            "data": {"train": "t.jsonl", "eval": "e.jsonl"},
            "output_dir": str(tmp_path / "out"),
        },
    )
    return EnginePool(cfg, tmp_path / "model", tmp_path / "engines")


@pytest.fixture
def gpu_machine(monkeypatch):
    """A machine with a GPU and vLLM installed, as far as rsft can tell."""
    monkeypatch.setattr(devices, "gpu_available", lambda: True)
    monkeypatch.setattr(pool, "_vllm_found", lambda: True)


def test_model_device_cpu_keeps_generation_off_a_gpu_machines_gpu(tmp_path, gpu_machine):
    cpu = _pool(tmp_path, device="cpu")
    assert not cpu.gpu and not cpu.vllm  # auto backend: transformers on the CPU
    assert cpu._options("float32").gpu is False


def test_model_device_auto_on_a_gpu_machine_uses_vllm_on_the_gpu(tmp_path, gpu_machine):
    auto = _pool(tmp_path)
    assert auto.gpu and auto.vllm and auto._options("bfloat16").gpu is True


def test_a_cpu_engine_hides_the_gpus_from_vllm(tmp_path):
    from rsft.generation.engines.server import EngineOptions, VLLMServer

    options = EngineOptions(vllm_python=sys.executable, gpu=False)
    server = VLLMServer(tmp_path, options, tmp_path / "log")
    assert server.environment()["CUDA_VISIBLE_DEVICES"] == ""
    assert "--gpu-memory-utilization" not in server.command()
