"""A stand-in for a vLLM OpenAI-compatible server: the HTTP surface rsft uses, no model.

``/v1/models`` names the served model; ``/v1/completions`` answers each prompt's j-th sample
with ``"<the user's message> #j"``, so a test can tell which prompt and sample an answer
belongs to. ``fail_after`` requests, the server starts answering 503 (a dying replica).

Misbehaving engines: ``answer(payload, choices)`` returns the JSON to send instead of the
right choices, or bytes to send as they are; ``cut`` bytes of each body are left out of what
its Content-Length promised (an answer cut short); ``trickle`` seconds pass between the
bytes of each response (a slow-loris endpoint), from its status line on, or from its body
on with ``trickle_headers=False``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _user_turn(prompt: str) -> str:
    """The user's message inside a chat-template-rendered prompt."""
    return prompt.split("user\n")[-1].split("<|im_end|>")[0].strip()


class FakeEngine:
    def __init__(
        self,
        model: str = "rsft-model",
        root: str = "/models/x",
        fail_after=None,
        delay=0.0,
        answer=None,
        cut: int = 0,
        trickle: float = 0.0,
        trickle_headers: bool = True,
        port: int = 0,
    ):
        self.model, self.root, self.fail_after, self.delay = model, root, fail_after, delay
        self.answer, self.cut = answer, cut
        self.trickle, self.trickle_headers = trickle, trickle_headers
        self.requests: list[dict] = []
        self.stopping = threading.Event()
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                return

            def _send(self, code: int, obj) -> None:
                body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
                head = (
                    f"HTTP/1.1 {code} {'OK' if code == 200 else 'Error'}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {len(body) + engine.cut}\r\n\r\n"
                ).encode()
                if not engine.trickle:
                    self.wfile.write(head + body)
                    return
                if not engine.trickle_headers:
                    self.wfile.write(head)
                    head = b""
                for byte in head + body:  # until the client gives up
                    if engine.stopping.wait(engine.trickle):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()

            def do_GET(self):
                if self.path == "/v1/models":
                    self._send(200, {"data": [{"id": engine.model, "root": engine.root}]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                engine.requests.append(payload)
                time.sleep(engine.delay)  # a busy engine: other replicas get their share
                if engine.fail_after is not None and len(engine.requests) > engine.fail_after:
                    self._send(503, {"error": "engine dead"})
                    return
                if payload.get("model") != engine.model:
                    self._send(404, {"error": f"model {payload.get('model')} not served"})
                    return
                n = payload["n"]
                choices = [
                    {"index": i * n + j, "text": f" {_user_turn(p)} #{j} "}
                    for i, p in enumerate(payload["prompt"])
                    for j in range(n)
                ]
                if engine.answer is not None:
                    self._send(200, engine.answer(payload, choices))
                    return
                self._send(200, {"choices": choices[::-1], "usage": {"completion_tokens": 3}})

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeEngine:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
