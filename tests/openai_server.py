"""A local OpenAI-compatible embeddings server for tests: ``POST /v1/embeddings`` on 127.0.0.1, answered with a
matryoshka-rag provider's vectors, so that the real OpenAI clients (LangChain's ``OpenAIEmbeddings``,
LlamaIndex's ``OpenAIEmbedding``) run their whole path: HTTP, batching, retries, base64 decoding."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from matryoshka_rag.embeddings.providers import EmbeddingProvider

_RETRY_AFTER_MS = "1"  # the delay a failed answer asks clients to wait before retrying


@dataclass(frozen=True)
class Request:
    """One request the server answered: its texts, model, encoding and HTTP status."""

    texts: tuple[str, ...]
    model: str
    encoding_format: str
    status: int


class _Refusal(Exception):
    """An error answer: HTTP ``status`` and OpenAI's ``error`` object."""

    def __init__(self, status: int, message: str, kind: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = {"message": message, "type": kind, "param": None, "code": code}


def _texts(body: dict[str, Any]) -> list[str]:
    """The request's ``input`` as texts; token-id inputs are refused (this server has no tokenizer)."""
    given = body.get("input")
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise _Refusal(
            400,
            "input must be a string or a non-empty list of strings (token ids are not served)",
            "invalid_request_error",
        )
    return texts


def _encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """One vector as OpenAI sends it: floats, or base64 of its little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


class OpenAIEmbeddingsServer:
    """An OpenAI embeddings endpoint serving ``provider``'s vectors under the model name ``provider.name``.

    Answers as the OpenAI API does: ``encoding_format`` ``"float"`` (the default) or ``"base64"``; 401 without
    ``Authorization: Bearer <api_key>``; 404 for another model; 400 for token ids or ``dimensions``. :meth:`fail`
    answers the next requests with an error status (500, 429...) and a short ``retry-after-ms``; ``requests``
    records every request, failed ones included, in arrival order. Runs in a thread; :meth:`stop` ends it.
    """

    def __init__(self, provider: EmbeddingProvider, api_key: str = "test") -> None:
        self.provider, self.api_key = provider, api_key
        self.requests: list[Request] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The base URL clients take (``base_url`` / ``api_base``), ending in ``/v1``."""
        assert self._server is not None, "the server is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def fail(self, count: int, status: int = 500) -> None:
        """Answer the next ``count`` requests with ``status``."""
        with self._lock:
            self._failures.extend([status] * count)

    def start(self) -> OpenAIEmbeddingsServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The status and JSON body answering one request to ``/v1/embeddings``."""
        model, encoding_format = body.get("model", ""), body.get("encoding_format") or "float"
        texts: list[str] = []
        try:
            if headers.get("authorization") != f"Bearer {self.api_key}":
                raise _Refusal(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
            texts = _texts(body)
            with self._lock:
                failure = self._failures.pop(0) if self._failures else None
            if failure is not None:
                raise _Refusal(failure, HTTPStatus(failure).phrase, "server_error")
            if model != self.provider.name:
                raise _Refusal(
                    404, f"The model `{model}` does not exist", "invalid_request_error", "model_not_found"
                )
            if encoding_format not in ("float", "base64") or body.get("dimensions") is not None:
                raise _Refusal(
                    400, f"{model} takes no dimensions; encodings: float, base64", "invalid_request_error"
                )
            with self._lock:  # one model, one call at a time
                vectors = self.provider(texts)
        except _Refusal as refusal:
            self._record(texts, model, encoding_format, refusal.status)
            return refusal.status, {"error": refusal.error}
        self._record(texts, model, encoding_format, 200)
        words = sum(len(text.split()) for text in texts)  # no tokenizer here: words stand in for tokens
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(vector, encoding_format)}
            for i, vector in enumerate(vectors)
        ]
        return 200, {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": words, "total_tokens": words},
        }

    def _record(self, texts: list[str], model: str, encoding_format: str, status: int) -> None:
        with self._lock:
            self.requests.append(Request(tuple(texts), model, encoding_format, status))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the clients' connection pools expect

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                if self.path.rstrip("/") != "/v1/embeddings":
                    status, answer = (
                        404,
                        {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}},
                    )
                else:
                    headers = {key.lower(): value for key, value in self.headers.items()}
                    status, answer = server.answer(headers, body)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                if status != 200:
                    self.send_header("retry-after-ms", _RETRY_AFTER_MS)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                """Quiet: ``requests`` records what was asked."""

        return Handler
