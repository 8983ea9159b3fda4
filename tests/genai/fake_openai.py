"""A loopback OpenAI-compatible HTTP server for tests: scripted replies, every request recorded.

It speaks just enough of ``POST /v1/chat/completions`` (and Azure's
``/openai/deployments/<name>/chat/completions``) for the real ``openai`` client: the tests
run the production code path, and only the far end is ours. Each request pops the next
scripted :class:`Reply` (or gets the default one) and is recorded with its headers, JSON body
and arrival time, so a test can assert what reached the model and when.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeOpenAI", "Reply", "Recorded", "completion", "analysis_json"]


def analysis_json(summary: str = "Compressor short-cycles on stage 1.",
                  severity: str = "high") -> str:
    """A valid structured answer (what a model honouring the JSON schema returns)."""
    return json.dumps({
        "summary": summary,
        "overall_severity": severity,
        "findings": [{"title": "Short cycling", "severity": severity,
                      "detail": "42 cycles shorter than 3 minutes", "evidence": ["issues"]}],
        "recommended_actions": [{"action": "Check the thermostat deadband", "priority": "soon",
                                 "reason": "Short cycling"}],
    })


def completion(content: str | None, *, model: str = "gpt-4o-mini", prompt_tokens: int = 812,
               completion_tokens: int = 96, finish_reason: str = "stop") -> dict[str, Any]:
    """A chat.completion response body."""
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": finish_reason,
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


@dataclass
class Reply:
    """What the server answers to one request."""

    status: int = 200
    body: dict[str, Any] | str | None = None  # None: a completion carrying ``content``
    content: str | None = None  # None: analysis_json()
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (timeouts)


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() on arrival

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []

    def message(self, role: str) -> str:
        return next(m["content"] for m in self.messages if m["role"] == role)


class FakeOpenAI:
    """Start with ``with FakeOpenAI() as server:``; point clients at ``server.base_url``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def root(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def push(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self.script.extend(replies)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            return self.script.popleft() if self.script else self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                parts = urlsplit(self.path)
                reply = server._next(Recorded(
                    "POST", parts.path, parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()))
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body
                if payload is None:
                    content = analysis_json() if reply.content is None else reply.content
                    payload = completion(content, model=(body or {}).get("model", "x")
                                         if isinstance(body, dict) else "x")
                if reply.status >= 400 and reply.body is None:
                    payload = {"error": {"message": f"fake error {reply.status}",
                                         "type": "server_error", "code": None}}
                text = payload if isinstance(payload, str) else json.dumps(payload)
                data = text.encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        return Handler
