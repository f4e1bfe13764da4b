"""The engines of a run: started for a model, reused while it stays, stopped when it changes.

Each fine-tuned model reaches the engines one of two ways:

- **restart** (full fine-tuning): the local engines are stopped and started on the new
  folder. The pipeline orders its stages so that one engine serves a model's evaluation and
  the next round's generation, and stops the engines before every fine-tuning stage (on a
  GPU the trainer needs their memory).
- **LoRA** (``sft.lora: true`` with ``start_from: base``): the engines keep the base model
  and load each round's adapter at run time (``/v1/load_lora_adapter``), with no restart.
  This is the only way for ``engine.endpoints``, servers rsft does not start.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rsft.generation.config import RFTConfig
from rsft.generation.engines.base import Generator
from rsft.generation.engines.client import EngineGenerator, Replica
from rsft.generation.engines.local import TransformersGenerator
from rsft.generation.engines.server import (
    SERVED_NAME,
    EngineError,
    EngineOptions,
    VLLMServer,
    check_endpoint,
    http_text,
)
from rsft.models.devices import uses_gpu
from rsft.portable import machine_info
from rsft.progress import say


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX)."""
    isa = machine_info()["cpu"].get("isa", [])
    return "avx512_bf16" in isa or "amx_bf16" in isa


def generation_dtype(setting: str, model_dtype: str, gpu: bool) -> str:
    """``generation.dtype`` resolved: model (model.dtype), auto (bf16 where native), or as is."""
    if setting == "model":
        setting = model_dtype
        if setting == "auto":
            return "bfloat16" if gpu else "float32"
    if setting == "auto":
        return "bfloat16" if gpu or cpu_has_bf16() else "float32"
    return setting


def cpu_binds(replicas: int) -> list[str | None]:
    """Each local CPU replica's cores (``VLLM_CPU_OMP_THREADS_BIND``), split evenly; one
    replica keeps vLLM's own choice (None)."""
    if replicas == 1:
        return [None]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) < replicas:
        return [None] * replicas
    share = len(cores) // replicas
    return [",".join(map(str, cores[i * share : (i + 1) * share])) for i in range(replicas)]


class EnginePool:
    """Generators for the pipeline's stages, on transformers or on vLLM engines."""

    def __init__(self, cfg: RFTConfig, base: Path, log_dir: Path) -> None:
        self.cfg = cfg
        self.base = Path(base)
        self.log_dir = Path(log_dir)
        # model.device decides, not the machine: model.device: cpu stays on the CPU with a GPU.
        self.gpu = uses_gpu(cfg.model.device)
        self.vllm = cfg.generation.backend == "vllm" or (
            cfg.generation.backend == "auto" and self.gpu and _vllm_found()
        )
        self.lora = self.vllm and cfg.sft.lora and cfg.start_from == "base"
        self.servers: list[VLLMServer] = []
        self.replicas: list[Replica] = []
        self.serving: Path | None = None  # the folder the local engines were started on
        self.adapters: set[tuple[str, str]] = set()
        self.starts: list[float] = []  # seconds each engine start took, for the timings
        self.adapter_loads: list[float] = []  # seconds each adapter load took (all replicas)

    # --- public --------------------------------------------------------------------------

    def generator(self, model: Path, batch_size: int | None = None) -> Generator:
        """A generator that samples from ``model`` (a folder: the base or a fine-tuned one)."""
        g, m = self.cfg.generation, self.cfg.model
        dtype = generation_dtype(g.dtype, m.dtype, self.gpu)
        if not self.vllm:
            return TransformersGenerator(
                model,
                dtype=dtype,
                device=m.device,
                batch_size=batch_size or g.batch_size,
                trust_remote_code=m.trust_remote_code,
                template_timeout=g.template_timeout,
            )
        model = Path(model)
        if self.lora:
            replicas = self._lora_replicas(model, dtype)
        else:
            replicas = self._restart_on(model, dtype)
        e = self.cfg.engine
        seed = e.request_seed == "on" or (e.request_seed == "auto" and self.gpu)
        return EngineGenerator(
            self.base if self.lora else model,
            replicas,
            request_timeout=e.request_timeout,
            request_seed=seed,
            trust_remote_code=m.trust_remote_code,
            template_timeout=g.template_timeout,
        )

    def release(self) -> None:
        """Before fine-tuning: stop local engines that a new model will replace anyway."""
        if not self.lora:
            self.close()

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers, self.replicas, self.serving = [], [], None
        self.adapters.clear()

    # --- engines -------------------------------------------------------------------------

    def _options(self, dtype: str) -> EngineOptions:
        e, m = self.cfg.engine, self.cfg.model
        return EngineOptions(
            vllm_python=e.vllm_python,
            dtype=dtype,
            seed=self.cfg.seed,
            max_model_len=e.max_model_len,
            tensor_parallel_size=e.tensor_parallel_size,
            gpu_memory_utilization=e.gpu_memory_utilization,
            cpu_kv_cache_gib=e.cpu_kv_cache_gib,
            enable_lora=self.lora,
            max_lora_rank=self.cfg.sft.lora_r,
            trust_remote_code=m.trust_remote_code,
            start_timeout=e.start_timeout,
            gpu=self.gpu,
        )

    def _start(self, model: Path, dtype: str) -> list[Replica]:
        """``engine.replicas`` local engines on ``model``, launched together."""
        n = self.cfg.engine.replicas
        binds = cpu_binds(n) if not self.gpu and self.cfg.engine.cpu_threads == "auto" else []
        servers = []
        for i in range(n):
            log = self.log_dir / f"engine-{len(self.starts) + i}.log"
            server = VLLMServer(model, self._options(dtype), log)
            if binds and binds[i] is not None:
                server.env_extra["VLLM_CPU_OMP_THREADS_BIND"] = binds[i]
            servers.append(server)
        try:
            for server in servers:
                server.launch()
            for server in servers:
                server.wait_ready()
        except BaseException:
            for server in servers:
                server.stop()
            raise
        self.servers = servers
        self.starts += [s.start_seconds for s in servers]
        self.serving = model
        self.replicas = [Replica(s.url, SERVED_NAME, s) for s in servers]
        say(
            f"started {n} vLLM engine(s) on {model} in "
            f"{max(s.start_seconds for s in servers):.0f} s (logs in {self.log_dir})"
        )
        return self.replicas

    def _restart_on(self, model: Path, dtype: str) -> list[Replica]:
        if self.serving == model and all(s.alive() for s in self.servers):
            return self.replicas
        self.close()
        return self._start(model, dtype)

    def _lora_replicas(self, model: Path, dtype: str) -> list[Replica]:
        """Replicas on the base model; a fine-tuned model's adapter loaded into each."""
        e = self.cfg.engine
        if not self.replicas:
            if e.endpoints:
                name = e.served_model or self.cfg.model.path
                urls = [u.rstrip("/") for u in e.endpoints]
                self.replicas = [Replica(u, check_endpoint(u, name)) for u in urls]
            else:
                self._start(self.base, dtype)
        if model.resolve() == self.base.resolve():
            return [Replica(r.url, r.model, r.server) for r in self.replicas]
        adapter = model.parent / "adapter"
        if not (adapter / "adapter_config.json").is_file():
            raise EngineError(
                f"{model} has no LoRA adapter beside it ({adapter}); engines that keep the "
                "base model can only load adapters. Fine-tune with sft.lora: true."
            )
        name = f"rsft-{model.parent.parent.name}-{model.parent.name}"
        started = time.perf_counter()
        loaded = False
        for r in self.replicas:
            if (r.url, name) in self.adapters:
                continue
            try:
                http_text(  # answers in plain text
                    f"{r.url}/v1/load_lora_adapter",
                    {"lora_name": name, "lora_path": str(adapter.resolve())},
                    timeout=600,
                )
            except OSError as err:
                raise EngineError(
                    f"{r.url} did not load the adapter {adapter} ({err}). Its server needs "
                    "--enable-lora, VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and read access to "
                    "that folder."
                ) from err
            self.adapters.add((r.url, name))
            loaded = True
        if loaded:
            self.adapter_loads.append(time.perf_counter() - started)
        return [Replica(r.url, name, r.server) for r in self.replicas]


def _vllm_found() -> bool:
    from rsft.generation.engines.server import find_vllm_python

    try:
        find_vllm_python("auto")
    except Exception:
        return False
    return True
