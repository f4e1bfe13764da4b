"""Generation on vLLM engines over HTTP, spread over replicas, with no chunk lost or doubled.

Prompts are rendered with the model's chat template here (as the transformers backend does)
and sent to ``/v1/completions`` a chunk at a time: one request carries a chunk's prompts with
``n`` samples each, and the engine batches them itself. Each replica has one worker thread
that takes the next chunk from a shared queue. A replica that fails (connection refused, its
process dead, a server error) puts its chunk back and leaves; the others finish the round.
A chunk is handed to ``on_done`` once, when its answer is complete, so the caller saves it
exactly once; only when every replica has failed does the round stop, with their errors.
"""

from __future__ import annotations

import queue
import threading
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsft.generation.generate import Conversation, Generator, Sampling, load_tokenizer, render
from rsft.generation.server import EngineError, http_json
from rsft.progress import progress_bar


@dataclass
class Replica:
    """One engine: its URL, the model id to request there, and (local ones) its process."""

    url: str
    model: str
    server: Any = None  # a VLLMServer for engines rsft started, None for given endpoints

    def alive(self) -> bool:
        return self.server is None or self.server.alive()

    def describe(self) -> str:
        log = f", log {self.server.log_path}" if self.server is not None else ""
        return f"{self.url}{log}"


class RequestError(EngineError):
    """The engine refused the request itself (4xx): retrying elsewhere would not help."""


def completions(
    replica: Replica, prompts: list[str], sampling: Sampling, timeout: float, seed: bool
) -> tuple[list[list[str]], int]:
    """``sampling.n`` completions per prompt from one engine, and the tokens generated."""
    payload: dict[str, Any] = {
        "model": replica.model,
        "prompt": prompts,
        "n": sampling.n,
        "max_tokens": sampling.max_new_tokens,
        "temperature": 0.0 if sampling.greedy else sampling.temperature,
        "top_p": 1.0 if sampling.greedy else sampling.top_p,
        "top_k": -1,  # sample from q itself, as the transformers backend does
        "add_special_tokens": False,  # the chat template already placed them
    }
    if seed and not sampling.greedy:
        payload["seed"] = sampling.seed
    try:
        answer = http_json(f"{replica.url}/v1/completions", payload, timeout=timeout)
    except urllib.error.HTTPError as err:
        body = err.read().decode(errors="replace")[:500]
        if 400 <= err.code < 500:
            raise RequestError(f"{replica.url} refused the request ({err.code}): {body}") from err
        raise
    out: list[list[str]] = [[""] * sampling.n for _ in prompts]
    for choice in answer["choices"]:
        i, j = divmod(int(choice["index"]), sampling.n)
        out[i][j] = choice["text"].strip()
    return out, int(answer.get("usage", {}).get("completion_tokens", 0))


class EngineGenerator(Generator):
    """A :class:`Generator` on one or more OpenAI-compatible vLLM engines.

    ``request_seed``: send each chunk's seed with its request, so a chunk's samples do not
    depend on which replica draws them (GPU engines). vLLM's CPU engine crashes on a
    per-request seed, so there only the engine seed is set (see docs/generation.md).
    """

    def __init__(
        self,
        tokenizer_path: str | Path,
        replicas: Sequence[Replica],
        *,
        request_timeout: float = 3600.0,
        request_seed: bool = False,
        trust_remote_code: bool = False,
    ) -> None:
        if not replicas:
            raise ValueError("EngineGenerator needs at least one replica.")
        self.tokenizer = load_tokenizer(tokenizer_path, trust_remote_code)
        self.replicas = list(replicas)
        self.request_timeout = request_timeout
        self.request_seed = request_seed
        self.generated_tokens = 0
        self.failures: list[str] = []  # one line per replica that failed, for the log

    def generate(
        self, conversations: list[Conversation], sampling: Sampling, progress: bool = False
    ) -> list[list[str]]:
        result: list[list[str]] = []
        self.generate_chunks([conversations], lambda _: sampling, lambda _, o: result.extend(o))
        return result

    def generate_chunks(
        self,
        chunks: Sequence[list[Conversation]],
        sampling_for: Callable[[int], Sampling],
        on_done: Callable[[int, list[list[str]]], None],
        progress: bool = False,
        desc: str = "generate",
    ) -> None:
        """Every chunk through the replicas; ``on_done(i, outputs)`` once per chunk, in the
        caller's thread order-independent (a lock serialises the calls)."""
        todo: queue.Queue[int] = queue.Queue()
        for i in range(len(chunks)):
            todo.put(i)
        done: set[int] = set()
        lock = threading.Lock()
        refused: list[RequestError] = []
        bar = progress_bar(total=len(chunks), desc=desc, unit="chunks", show=progress)

        def work(replica: Replica) -> None:
            while not refused:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                prompts = [render(self.tokenizer, c) for c in chunks[i]]
                try:
                    outs, tokens = completions(
                        replica, prompts, sampling_for(i), self.request_timeout, self.request_seed
                    )
                except RequestError as err:
                    refused.append(err)
                    return
                except (urllib.error.URLError, OSError, ValueError, KeyError) as err:
                    todo.put(i)  # back for another replica: nothing of it was kept
                    with lock:
                        self.replicas.remove(replica)
                        self.failures.append(
                            f"replica {replica.describe()} failed on chunk {i} ({err}); "
                            "its chunk went back to the queue"
                        )
                    return
                with lock:
                    if i not in done:  # a chunk is delivered once, whatever happens
                        done.add(i)
                        self.generated_tokens += tokens
                        on_done(i, outs)
                        bar.update(1)

        try:
            while len(done) < len(chunks):
                if refused:
                    raise refused[0]
                live = [r for r in self.replicas if r.alive()]
                if not live:
                    raise EngineError(
                        f"every engine failed with {len(chunks) - len(done)} chunk(s) left: "
                        + ("; ".join(self.failures) or "no engine is running")
                    )
                threads = [threading.Thread(target=work, args=(r,), daemon=True) for r in live]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        finally:
            bar.close()
