"""``llmcse serve-llm``: a small OpenAI-compatible server around a local back end.

Concurrent requests are gathered into batches (up to ``max_batch`` prompts, waiting at most
``max_wait_ms`` for company), because batched generation is where a CPU or GPU gets its
throughput. Standard library only (``http.server``); for production scale use vLLM.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``, ``GET /health``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from llmcse.llm.base import LLM, Prompt, SamplingParams

logger = logging.getLogger(__name__)


class Batcher:
    """Collects (prompt, params) requests from many threads and runs them in batches on one back end."""

    def __init__(self, llm: LLM, max_batch: int = 32, max_wait_ms: float = 20.0):
        self.llm = llm
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def submit(self, prompt: Prompt, params: SamplingParams) -> Future:
        future: Future = Future()
        self._queue.put((prompt, params, future))
        return future

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
            # Requests with different sampling settings cannot share one generate() call.
            groups: dict[tuple, list] = {}
            for item in batch:
                p = item[1]
                groups.setdefault((p.max_new_tokens, p.temperature, p.top_p, p.stop), []).append(item)
            for items in groups.values():
                try:
                    texts = self.llm.generate([i[0] for i in items], items[0][1])
                    for (_, _, future), text in zip(items, texts):
                        future.set_result(text)
                except Exception as e:  # report to every waiting request, keep serving
                    logger.exception("generation failed")
                    for _, _, future in items:
                        future.set_exception(e)


def _params_from(body: dict) -> SamplingParams:
    stop = body.get("stop") or ()
    return SamplingParams(
        max_new_tokens=int(body.get("max_tokens") or 64),
        temperature=float(body.get("temperature", 0.8)),
        top_p=float(body.get("top_p", 1.0)),
        seed=body.get("seed"),
        stop=tuple([stop] if isinstance(stop, str) else stop),
    )


def make_handler(batcher: Batcher, model_name: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # route access logs to logging, not stderr
            logger.debug(fmt, *args)

        def _send(self, status: int, obj: dict) -> None:
            body = json.dumps(obj).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path.rstrip("/") in ("/health", "/v1/health"):
                self._send(200, {"status": "ok"})
            elif self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            try:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length).decode("utf-8"))
                params = _params_from(body)
            except (ValueError, UnicodeDecodeError) as e:
                self._send(400, {"error": {"message": f"bad request: {e}"}})
                return
            route = self.path.rstrip("/")
            if route == "/v1/chat/completions":
                prompt = body.get("messages")
            elif route == "/v1/completions":
                prompt = body.get("prompt")
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            if not prompt:
                self._send(400, {"error": {"message": "missing 'messages' or 'prompt'"}})
                return
            try:
                text = batcher.submit(prompt, params).result()
            except Exception as e:
                self._send(500, {"error": {"message": f"generation failed: {e}"}})
                return
            usage = {"prompt_tokens": 0, "completion_tokens": len(text.split())}
            if route == "/v1/chat/completions":
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            else:
                choice = {"index": 0, "text": text, "finish_reason": "stop"}
            self._send(200, {"object": "chat.completion" if "chat" in route else "text_completion",
                             "model": model_name, "choices": [choice], "usage": usage})

    return Handler


def make_server(llm: LLM, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None,
                max_batch: int = 32, max_wait_ms: float = 20.0) -> ThreadingHTTPServer:
    """Build (not start) the server; ``serve_forever()`` runs it. Port 0 picks a free port."""
    batcher = Batcher(llm, max_batch=max_batch, max_wait_ms=max_wait_ms)
    server = ThreadingHTTPServer((host, port), make_handler(batcher, model_name or llm.spec))
    server.daemon_threads = True
    return server
