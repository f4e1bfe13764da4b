"""Generation on vLLM engines over HTTP, spread over replicas, with no chunk lost or doubled.

Prompts are rendered with the model's chat template here (as the transformers backend does)
and sent to ``/v1/completions`` a chunk at a time: one request carries a chunk's prompts with
``n`` samples each, and the engine batches them itself. Each replica has one worker thread
that takes the next chunk from a shared queue. A replica that fails (connection refused, its
process dead, a server error, an answer that lacks a completion, no complete answer within
``engine.request_timeout``) puts its chunk back and leaves; the others finish the round.
A chunk is handed to ``on_done`` once, when its answer is complete, so the caller saves it
exactly once; only when every replica has failed does the round stop, with their errors.
"""

from __future__ import annotations

import json
import queue
import threading
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsft.generation.engines.base import Generator, Sampling
from rsft.generation.engines.server import EngineError, http_json
from rsft.generation.templates import TEMPLATE_TIMEOUT, Conversation, load_tokenizer, render
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


class BadAnswer(EngineError):
    """The engine answered, but not with each completion asked for: that replica failed."""


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
    except TimeoutError as err:
        raise EngineError(
            f"no complete answer within {timeout:g} s (engine.request_timeout; raise it if "
            "the engine is only slow)"
        ) from err
    return parse_answer(answer, len(prompts), sampling.n)


def parse_answer(answer: Any, n_prompts: int, n: int) -> tuple[list[list[str]], int]:
    """Each prompt's ``n`` completion texts from a ``/v1/completions`` answer, and its
    token count; :class:`BadAnswer` unless every prompt x sample index is answered exactly
    once with a text (a missing one must not become an empty completion, scored and trained
    on as if the model had written nothing)."""
    asked = n_prompts * n
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list):
        raise BadAnswer(f"answered {_short(answer)}, which has no list of choices")
    texts: dict[int, str] = {}
    for choice in choices:
        index = choice.get("index") if isinstance(choice, dict) else None
        text = choice.get("text") if isinstance(choice, dict) else None
        if type(index) is not int or not 0 <= index < asked:
            raise BadAnswer(f"answered a choice with index {_short(index)}, not 0 to {asked - 1}")
        if not isinstance(text, str):
            raise BadAnswer(f"answered choice {index} with the text {_short(text)}, not a string")
        if index in texts:
            raise BadAnswer(f"answered choice {index} twice")
        texts[index] = text.strip()
    if len(texts) < asked:
        raise BadAnswer(
            f"returned {len(texts)} of the {asked} completions asked for "
            f"(n={n} for {n_prompts} prompts)"
        )
    usage = answer.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    outs = [[texts[i * n + j] for j in range(n)] for i in range(n_prompts)]
    return outs, tokens if type(tokens) is int else 0


def _short(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 80 else text[:77] + "..."


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
        template_timeout: float = TEMPLATE_TIMEOUT,
    ) -> None:
        if not replicas:
            raise ValueError("EngineGenerator needs at least one replica.")
        self.tokenizer = load_tokenizer(tokenizer_path, trust_remote_code)
        self.replicas = list(replicas)
        self.request_timeout = request_timeout
        self.request_seed = request_seed
        self.template_timeout = template_timeout
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
        """Every chunk through the replicas; ``on_done(i, outputs)`` once per chunk, in any
        order (a lock serialises the calls).

        A replica whose request fails in any way (no answer, a broken or incomplete one, none
        within ``request_timeout``) puts its chunk back and leaves; the others go on. An error
        that any replica would meet (the engine refusing the request, the chat template,
        ``on_done`` itself) stops the round with that error. Every pass over the replicas
        delivers a chunk or loses a replica, so the round ends.
        """
        self.check_template([c for chunk in chunks for c in chunk])
        todo: queue.Queue[int] = queue.Queue()
        for i in range(len(chunks)):
            todo.put(i)
        done: set[int] = set()
        lock = threading.Lock()
        stop: list[BaseException] = []  # the error that ends the round
        bar = progress_bar(total=len(chunks), desc=desc, unit="chunks", show=progress)

        def deliver(i: int, outs: list[list[str]], tokens: int) -> None:
            with lock:
                if i not in done:  # a chunk is delivered once, whatever happens
                    on_done(i, outs)
                    done.add(i)
                    self.generated_tokens += tokens
                    bar.update(1)

        def work(replica: Replica) -> None:
            try:
                while not stop:
                    try:
                        i = todo.get_nowait()
                    except queue.Empty:
                        return
                    prompts = [render(self.tokenizer, c) for c in chunks[i]]
                    sampling = sampling_for(i)
                    try:
                        outs, tokens = completions(
                            replica, prompts, sampling, self.request_timeout, self.request_seed
                        )
                    except RequestError:
                        raise
                    except Exception as err:  # this replica's fault, whatever it is
                        todo.put(i)  # back for another replica: nothing of it was kept
                        self._drop(replica, i, err, lock)
                        return
                    deliver(i, outs, tokens)
            except BaseException as err:
                stop.append(err)

        try:
            while len(done) < len(chunks) and not stop:
                live = [r for r in self.replicas if r.alive()]
                if not live:
                    raise EngineError(
                        f"every engine failed with {len(chunks) - len(done)} chunk(s) left: "
                        + ("; ".join(self.failures) or "no engine is running")
                    )
                before = (len(done), len(self.replicas))
                threads = [threading.Thread(target=work, args=(r,), daemon=True) for r in live]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                if not stop and (len(done), len(self.replicas)) == before:
                    raise EngineError(
                        f"{len(chunks) - len(done)} chunk(s) were neither answered nor waiting "
                        "for an engine; the round stops rather than wait for them forever"
                    )
            if stop:
                raise stop[0]
        finally:
            bar.close()

    def _drop(self, replica: Replica, chunk: int, err: Exception, lock: threading.Lock) -> None:
        """A failed replica takes no more chunks; why it failed goes to ``failures``."""
        why = str(err) if isinstance(err, EngineError) else f"{type(err).__name__}: {err}"
        with lock:
            self.replicas.remove(replica)
            self.failures.append(
                f"replica {replica.describe()} failed on chunk {chunk} ({why}); "
                "its chunk went back to the queue"
            )
