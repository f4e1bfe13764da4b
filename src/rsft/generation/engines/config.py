"""The ``engine`` section of an RFT config: the vLLM engines rsft starts or the endpoints it
uses (``generation.backend: vllm``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rsft.config import ConfigError, opt, section


@section("engine")
@dataclass
class EngineConfig:
    """The vLLM engines of ``generation.backend: vllm`` (see docs/generation.md)."""

    replicas: int = opt(
        1, ge=1, help="Engines rsft starts on this machine; a round's chunks are spread over them."
    )
    endpoints: list[str] = opt(
        factory=list,
        help="URLs of running OpenAI-compatible vLLM servers (e.g. http://host:8000) to use "
        "instead of starting engines; each must serve this run's model.",
    )
    served_model: str | None = opt(
        None, help="The model name the endpoints serve (default: model.path)."
    )
    vllm_python: str = opt(
        "auto",
        help="Python of the environment vLLM is installed in (auto: ./.venv-vllm/bin/python "
        "from `make vllm-env`, else this Python if it has vllm).",
    )
    tensor_parallel_size: int = opt(1, ge=1, help="GPUs per engine (vLLM tensor parallelism).")
    gpu_memory_utilization: float = opt(
        0.85, gt=0, le=1, help="Share of each GPU's memory an engine may take (weights + KV cache)."
    )
    max_model_len: int = opt(2048, ge=1, help="Longest prompt + completion an engine accepts.")
    cpu_kv_cache_gib: int = opt(2, ge=1, help="KV cache per CPU engine, in whole GiB.")
    cpu_threads: Literal["auto", "all"] = opt(
        "auto",
        help="CPU engines: auto gives each replica its own share of the cores; all lets "
        "every replica use every core.",
    )
    request_seed: Literal["auto", "on", "off"] = opt(
        "auto",
        help="Send each chunk's seed with its request (a chunk's samples then do not depend "
        "on the replica). auto: on with a GPU; vLLM's CPU engine crashes on it.",
    )
    start_timeout: float = opt(
        600.0, gt=0, help="Seconds an engine may take to answer after start."
    )
    request_timeout: float = opt(
        3600.0,
        gt=0,
        help="Seconds one chunk's request may take, from connecting to the last byte of its "
        "answer.",
    )

    def __post_init__(self) -> None:
        for url in self.endpoints:
            if not str(url).startswith(("http://", "https://")):
                raise ConfigError(
                    f"engine.endpoints: {url!r} is not an http(s) URL; give the server's base "
                    "URL, e.g. http://10.0.0.5:8000."
                )
