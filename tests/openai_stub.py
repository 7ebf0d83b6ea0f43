"""A tiny OpenAI-compatible server for tests (stdlib only, 127.0.0.1, a free port, a thread).

``mode`` says how it answers: ``good`` (an OpenAI response from ``answer(request) -> (text, extra)``,
by default the fake back end's deterministic rewrite), or one fault: ``null`` (``content: null``),
``html``, ``empty`` (``{"choices": []}``), ``invalid`` (broken JSON), ``500`` or ``hang`` (accepts
the request and never answers); ``refuse_logprobs`` answers a request for logprobs with a 400.
Every request is recorded (path, lower-cased headers, JSON body).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from llmcse.llm.base import fake_rewrite

FAULTS = {
    "null": (200, "application/json", json.dumps({
        "id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": None}}]})),
    "html": (200, "text/html", "<html><body><h1>Welcome to nginx!</h1></body></html>"),
    "empty": (200, "application/json", '{"choices": []}'),
    "invalid": (200, "application/json", '{"choices": [{"message": {"content": "Yes"'),
    "500": (500, "application/json", '{"error": {"message": "CUDA out of memory"}}'),
}


def fake_answer(request: dict) -> tuple[str, dict]:
    """The fake back end's rewrite of the last user message (or the prompt); no logprobs."""
    prompt = request["messages"][-1]["content"] if "messages" in request else request["prompt"]
    return fake_rewrite(prompt), {}


class StubOpenAI:
    def __init__(self, answer=fake_answer, mode: str = "good"):
        self.mode = mode
        self.answer = answer
        self.refuse_logprobs = False  # True: a request asking for logprobs gets a 400, as some servers do
        self.requests: list[tuple[str, dict, dict]] = []
        self.release = threading.Event()  # ends hanging handlers at close
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with stub._lock:
                    stub.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                mode = stub.mode
                if mode == "hang":
                    stub.release.wait(120)
                    return
                if mode in FAULTS:
                    status, ctype, text = FAULTS[mode]
                elif stub.refuse_logprobs and body.get("logprobs"):
                    status, ctype, text = 400, "application/json", json.dumps(
                        {"error": {"message": "logprobs are not supported", "type": "invalid_request_error"}})
                else:
                    status, ctype, text = 200, "application/json", json.dumps(stub.respond(self.path, body))
                data = text.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that gave up (cancelled requests): not the test's business

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def respond(self, path: str, request: dict) -> dict:
        text, extra = self.answer(request)
        usage = {"prompt_tokens": 7, "completion_tokens": len(text.split()), "total_tokens": 7 + len(text.split())}
        base = {"id": "cmpl-1", "created": int(time.time()), "model": request.get("model", "m"), "usage": usage}
        if path.split("?")[0].endswith("/chat/completions"):
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text},
                      "logprobs": extra.get("logprobs")}
            return {**base, "object": "chat.completion", "choices": [choice]}
        return {**base, "object": "text_completion",
                "choices": [{"index": 0, "finish_reason": "stop", "text": text, "logprobs": extra.get("logprobs")}]}

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
