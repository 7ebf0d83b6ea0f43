"""``llmcse serve-llm``: a small OpenAI-compatible server around a local back end.

Concurrent requests are gathered into batches (up to ``max_batch`` prompts, waiting at most
``max_wait_ms`` for company), because batched generation is where a CPU or GPU gets its
throughput. For production scale use vLLM, SGLang or llama.cpp's server.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``, ``GET /health``.

Built on Starlette + uvicorn (``pip install llmcse[serve]``) with pydantic models of the request
schema: uvicorn's HTTP parser answers malformed HTTP (a negative Content-Length, bad chunking)
with a plain-text 400 and accepts with a backlog of 2048; everything else gets an OpenAI-shaped
JSON error ``{"error": {"message", "type", "param", "code"}}``:

* 400: not JSON, not an object, a field of the wrong type or range, a prompt over
  ``max_prompt_tokens``, ``max_tokens`` over the server's cap, ``stream: true``;
* 401: ``api_key`` set and the ``Authorization: Bearer`` header missing or wrong;
* 404: unknown route; 413: a body over ``max_body_bytes``;
* 500: the back end failed on this request (a failed batch is retried request by request);
* 503: the batching thread is gone (``/health`` says so too); 504: ``request_timeout`` passed.

Requests are validated and their prompts tokenized before they reach the batcher, so one bad
request cannot touch another. ``null`` for an optional field means its default, as in OpenAI's API.
``model`` is not checked: the server serves one model under any name.

``seed``: a batch's sampler is seeded with the seed of its first request, so a request sent alone
is reproducible; under concurrent traffic a seeded, sampled request shares the sampler with its
batch (per-request generators inside one batched decode are not implemented). Greedy requests
(``temperature: 0``) do not depend on seeds or batch company.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import ipaddress
import logging
import queue
import socket
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Annotated, Literal, Union

from llmcse.errors import LlmcseError
from llmcse.llm.base import LLM, FakeLLM, Prompt, SamplingParams, truncate_at_stop
from llmcse.llm.logprobs import (TokenLogprob, completion_logprobs, count_tokens, greedy_next_token, openai_legacy,
                                 word_logprobs)

logger = logging.getLogger(__name__)

try:  # the server's dependencies are the optional "serve" extra
    import uvicorn
    from pydantic import BaseModel, ConfigDict, Field, ValidationError
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise LlmcseError(f"llmcse serve-llm needs its server packages ({e.name} is missing): "
                      "pip install 'llmcse[serve]'") from None

MAX_TOP_LOGPROBS = 20  # OpenAI's limit
MAX_N = 16  # choices per request


@dataclass
class ServerLimits:
    """What one request may ask for. Defaults fit a small model on a CPU."""

    max_body_bytes: int = 1_000_000
    max_prompt_tokens: int = 4096
    max_tokens: int = 512  # the cap on a request's max_tokens, and its value when a request omits it
    request_timeout: float = 300.0  # seconds from the request's arrival to its answer


# ---------------------------------------------------------------------------------------------
# Request schema (the parts of OpenAI's that this server implements; unknown fields are ignored)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart]]

    def plain(self) -> dict:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": self.role, "content": text}


StopText = Annotated[str, Field(min_length=1)]
PromptText = Annotated[str, Field(min_length=1)]


class _Sampling(_Strict):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # the newer name of max_tokens
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: StopText | Annotated[list[StopText], Field(max_length=4)] | None = None
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=MAX_N)
    stream: bool | None = None


class ChatRequest(_Sampling):
    messages: Annotated[list[Message], Field(min_length=1)]
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)


class CompletionRequest(_Sampling):
    prompt: PromptText | Annotated[list[PromptText], Field(min_length=1, max_length=MAX_N)]
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)  # legacy: the number of alternatives


class RequestError(Exception):
    """A request the server answers with ``status`` and an OpenAI-shaped error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def response(self) -> JSONResponse:
        return _error(self.status, self.message, self.param, self.code, self.kind)


def _error(status: int, message: str, param: str | None = None, code: str | None = None,
           kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _validation_error(e: ValidationError) -> RequestError:
    errors = e.errors()
    if errors[0]["type"] == "json_invalid":
        return RequestError(400, f"the request body is not valid JSON: {errors[0]['msg']}")
    if any(not err["loc"] for err in errors):
        return RequestError(400, "the request body must be a JSON object")
    # a union field reports one error per member: the most specific (deepest, not a plain type mismatch)
    # says what is wrong (stop: ["a"] * 5 -> "at most 4 items", not "a valid string")
    first = max(errors, key=lambda err: (len(err["loc"]), not err["type"].endswith("_type")))
    # a union's members add their type to the path (stop.constrained-str, stop.list[...].0): keep field names only
    param = ".".join(str(p) for p in first["loc"] if isinstance(p, int) or (p.isidentifier() and p not in _TYPE_TAGS))
    got = "" if first["type"] == "missing" else f" (got {first['input']!r:.80})"
    return RequestError(400, f"{param}: {first['msg']}{got}", param=param)


# ---------------------------------------------------------------------------------------------
# Batching


@dataclass
class Job:
    prompt: Prompt
    params: SamplingParams
    top_logprobs: int | None  # None: no logprobs wanted
    future: Future


@dataclass
class Completion:
    text: str
    completion_tokens: int
    finish_reason: str
    logprobs: list[TokenLogprob] | None


class Batcher:
    """Collects jobs from many threads and runs them in batches on one back end, in one thread.

    When a batch fails, its requests are retried one by one, so only the request that fails on
    its own gets the error (500); the thread keeps going. ``alive`` turns false only if the
    thread itself ended, which ``/health`` reports.
    """

    def __init__(self, llm: LLM, max_batch: int = 32, max_wait_ms: float = 20.0):
        self.llm = llm
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="llmcse-batcher", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, prompt: Prompt, params: SamplingParams, top_logprobs: int | None = None) -> Future:
        future: Future = Future()
        self._queue.put(Job(prompt, params, top_logprobs, future))
        return future

    def close(self) -> None:
        self._queue.put(None)

    def _loop(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                return
            try:
                self._run(batch)
            except Exception as e:  # a bug in the bookkeeping: fail these requests, keep serving
                logger.exception("batch failed")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(e)

    def _collect(self) -> list[Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                job = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # close after this batch
                break
            batch.append(job)
        # requests that timed out while queued were cancelled by their handler: skip them
        return [job for job in batch if job.future.set_running_or_notify_cancel()]

    def _run(self, batch: list[Job]) -> None:
        # Requests with different sampling settings cannot share one generate() call.
        groups: dict[tuple, list[Job]] = {}
        for job in batch:
            p = job.params
            groups.setdefault((p.max_new_tokens, p.temperature, p.top_p, p.stop), []).append(job)
        for jobs in groups.values():
            self._run_group(jobs)

    def _run_group(self, jobs: list[Job]) -> None:
        try:
            results = self._generate(jobs)
        except Exception as e:
            if len(jobs) > 1:  # find the request that fails: the others still get their answers
                logger.warning("generation failed for a batch of %d (%s); retrying one by one", len(jobs), e)
                for job in jobs:
                    self._run_group([job])
                return
            logger.exception("generation failed")
            jobs[0].future.set_exception(e)
            return
        for job, result in zip(jobs, results):
            job.future.set_result(result)

    def _generate(self, jobs: list[Job]) -> list[Completion]:
        params = jobs[0].params
        if (hasattr(self.llm, "model") and params.temperature == 0 and params.max_new_tokens == 1
                and all(j.top_logprobs is not None for j in jobs)):
            return self._greedy_one_token(jobs)
        texts = self.llm.generate([j.prompt for j in jobs], params)
        if len(texts) != len(jobs):  # else some requests would wait for an answer that never comes
            raise RuntimeError(f"the back end returned {len(texts)} completions for {len(jobs)} prompts")
        scored = [i for i, j in enumerate(jobs) if j.top_logprobs is not None and isinstance(texts[i], str)]
        logprobs: dict[int, list[TokenLogprob]] = {}
        if scored and hasattr(self.llm, "model"):
            k = max(jobs[i].top_logprobs for i in scored)
            rows = completion_logprobs(self.llm, [jobs[i].prompt for i in scored], [texts[i] for i in scored], k)
            logprobs = {i: [TokenLogprob(t.token, t.logprob, t.top[:jobs[i].top_logprobs]) for t in row]
                        for i, row in zip(scored, rows)}
        elif scored:
            logprobs = {i: word_logprobs(texts[i], jobs[i].top_logprobs) for i in scored}
        results = []
        for i, text in enumerate(texts):
            n = _count(self.llm, text) if isinstance(text, str) else 0
            results.append(Completion(text, n, "length" if n >= params.max_new_tokens else "stop", logprobs.get(i)))
        return results

    def _greedy_one_token(self, jobs: list[Job]) -> list[Completion]:
        """A judge's request (greedy, one token, with logprobs): one forward pass gives both the
        token and its probabilities; generate() and then scoring would run the prompt twice."""
        tok, params = self.llm.tokenizer, jobs[0].params
        end_ids = getattr(self.llm, "_end_ids", {tok.eos_token_id})
        picks = greedy_next_token(self.llm, [j.prompt for j in jobs], max(j.top_logprobs for j in jobs))
        results = []
        for job, (token_id, lp) in zip(jobs, picks):
            if token_id in end_ids:  # the model ended its turn at once: empty text, as generate() gives
                results.append(Completion("", 0, "stop", []))
                continue
            text = truncate_at_stop(tok.decode([token_id], skip_special_tokens=True), params.stop)
            logprobs = [TokenLogprob(lp.token, lp.logprob, lp.top[:job.top_logprobs])] if text else []
            results.append(Completion(text, 1 if text else 0, "length" if text else "stop", logprobs))
        return results


def _count(llm: LLM, text: str) -> int:
    """Tokens under the back end's tokenizer; words for a back end without one (``fake:``)."""
    return count_tokens(llm, text) if hasattr(llm, "tokenizer") else len(text.split())


# ---------------------------------------------------------------------------------------------
# HTTP


class PromptMeter:
    """Counts a prompt's tokens on the request side, with its own copy of the tokenizer (a fast
    tokenizer shared with the batcher thread can fail with "Already borrowed")."""

    def __init__(self, llm: LLM):
        self._gen = None
        if hasattr(llm, "tokenizer") and hasattr(llm, "render"):
            self._gen = copy.copy(llm)
            self._gen.tokenizer = copy.deepcopy(llm.tokenizer)
        self._lock = threading.Lock()

    def count(self, prompt: Prompt) -> int:
        if self._gen is None:
            text = prompt if isinstance(prompt, str) else " ".join(m["content"] for m in prompt)
            return len(text.split())
        with self._lock:
            try:
                return count_tokens(self._gen, self._gen.render(prompt))
            except Exception as e:  # e.g. a chat template that refuses this order of roles
                raise RequestError(400, f"messages: the model's chat template refused them: {e}", param="messages") from e


class App:
    """The request handlers, bound to one batcher, its limits and an optional API key."""

    def __init__(self, batcher: Batcher, model_name: str, limits: ServerLimits, api_key: str | None):
        self.batcher, self.model_name, self.limits, self.api_key = batcher, model_name, limits, api_key
        self.meter = PromptMeter(batcher.llm)
        self.logprobs_ok = hasattr(batcher.llm, "model") or isinstance(batcher.llm, FakeLLM)

    def starlette(self) -> Starlette:
        async def http_error(request: Request, exc: HTTPException) -> JSONResponse:  # 404, 405 as JSON too
            return _error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")

        return Starlette(exception_handlers={HTTPException: http_error}, routes=[
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/health", self.health, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
        ])

    async def health(self, request: Request) -> JSONResponse:
        if not self.batcher.alive:
            return JSONResponse({"status": "unhealthy", "reason": "the batching thread stopped"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> JSONResponse:
        if denied := self._check_key(request):
            return denied
        return JSONResponse({"object": "list", "data": [{"id": self.model_name, "object": "model",
                                                         "created": 0, "owned_by": "llmcse"}]})

    async def chat(self, request: Request) -> JSONResponse:
        return await self._handle(request, ChatRequest)

    async def completions(self, request: Request) -> JSONResponse:
        return await self._handle(request, CompletionRequest)

    def _check_key(self, request: Request) -> JSONResponse | None:
        if self.api_key is None:
            return None
        given = request.headers.get("authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
            return None
        return _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")

    async def _handle(self, request: Request, schema: type) -> JSONResponse:
        if denied := self._check_key(request):
            return denied
        timeout = self.limits.request_timeout
        started = time.monotonic()
        futures: list[Future] = []
        try:
            try:
                body = await asyncio.wait_for(self._read_body(request), timeout)
            except asyncio.TimeoutError:  # the client is slow, not the server
                return _error(408, f"the request body did not arrive within {timeout:g} s", code="timeout")
            remaining = max(0.0, timeout - (time.monotonic() - started))
            return await asyncio.wait_for(self._answer(body, schema, futures), remaining)
        except RequestError as e:
            return e.response()
        except asyncio.TimeoutError:
            for f in futures:
                f.cancel()  # still queued: the batcher skips it
            return _error(504, f"no answer within the server's request timeout ({timeout:g} s)",
                          code="timeout", kind="server_error")
        except ClientDisconnect:
            return _error(400, "the client went away before sending the whole body")

    async def _read_body(self, request: Request) -> bytes:
        cap = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise RequestError(413, f"request body of {declared} bytes is over the server's limit of {cap}",
                               code="body_too_large")
        body = bytearray()
        async for chunk in request.stream():  # chunked bodies have no Content-Length: count as they come
            body += chunk
            if len(body) > cap:
                raise RequestError(413, f"request body is over the server's limit of {cap} bytes", code="body_too_large")
        return bytes(body)

    async def _answer(self, body: bytes, schema: type, futures: list[Future]) -> JSONResponse:
        try:
            req = schema.model_validate_json(body)
        except ValidationError as e:
            raise _validation_error(e) from None
        chat = isinstance(req, ChatRequest)
        prompts, top_k = self._prompts_and_logprobs(req, chat)
        params = self._params(req)
        prompt_tokens = 0
        for prompt in prompts:
            n = await asyncio.to_thread(self.meter.count, prompt)
            if n > self.limits.max_prompt_tokens:
                raise RequestError(400, f"the prompt has {n} tokens, over the server's limit of "
                                        f"{self.limits.max_prompt_tokens}", param="messages" if chat else "prompt",
                                   code="context_length_exceeded")
            prompt_tokens += n
        if not self.batcher.alive:
            raise RequestError(503, "the server's batching thread stopped; restart the server", kind="server_error")
        n_choices = req.n or 1
        if n_choices * len(prompts) > MAX_N:
            raise RequestError(400, f"n: {n_choices} choices for each of {len(prompts)} prompts is over the server's "
                                    f"limit of {MAX_N} per request", param="n")
        futures += [self.batcher.submit(p, params, top_k) for p in prompts for _ in range(n_choices)]
        try:
            done = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        except Exception as e:
            raise RequestError(500, f"generation failed: {type(e).__name__}: {e}", kind="server_error") from None
        return JSONResponse(self._response(chat, done, prompt_tokens))

    def _prompts_and_logprobs(self, req, chat: bool) -> tuple[list[Prompt], int | None]:
        if req.stream:
            raise RequestError(400, "stream: streaming is not supported by llmcse serve-llm", param="stream")
        if chat:
            prompts: list[Prompt] = [[m.plain() for m in req.messages]]
            if req.top_logprobs is not None and not req.logprobs:
                raise RequestError(400, "top_logprobs: needs logprobs: true", param="top_logprobs")
            top_k = (req.top_logprobs or 0) if req.logprobs else None
        else:
            prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
            top_k = req.logprobs
        if top_k is not None and not self.logprobs_ok:
            raise RequestError(400, f"logprobs: not available with the back end {self.batcher.llm.spec}", param="logprobs")
        return prompts, top_k

    def _params(self, req) -> SamplingParams:
        max_tokens = req.max_tokens or req.max_completion_tokens or self.limits.max_tokens
        if max_tokens > self.limits.max_tokens:
            raise RequestError(400, f"max_tokens: {max_tokens} is over the server's limit of {self.limits.max_tokens}",
                               param="max_tokens")
        stop = req.stop or ()
        return SamplingParams(max_new_tokens=max_tokens, temperature=1.0 if req.temperature is None else req.temperature,
                              top_p=1.0 if req.top_p is None else req.top_p, seed=req.seed,
                              stop=(stop,) if isinstance(stop, str) else tuple(stop))

    def _response(self, chat: bool, done: list[Completion], prompt_tokens: int) -> dict:
        choices = []
        for i, c in enumerate(done):
            if chat:
                logprobs = None if c.logprobs is None else {"content": [t.openai_chat() for t in c.logprobs],
                                                              "refusal": None}
                choices.append({"index": i, "message": {"role": "assistant", "content": c.text},
                                "logprobs": logprobs, "finish_reason": c.finish_reason})
            else:
                choices.append({"index": i, "text": c.text, "finish_reason": c.finish_reason,
                                "logprobs": None if c.logprobs is None else openai_legacy(c.logprobs)})
        completion_tokens = sum(c.completion_tokens for c in done)
        return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
                "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
                "model": self.model_name, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}


# ---------------------------------------------------------------------------------------------
# Server


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) only listens on this machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except OSError:
        return False


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening socket, or a one-line error for a port in use or an unknown host."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as e:
        if e.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise LlmcseError(f"port {port} on {host} is in use; pick another with --port (0 picks a free one)") from None
        raise LlmcseError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    except OverflowError:
        raise LlmcseError(f"--port must be 0-65535, got {port}") from None


class LLMServer:
    """The server: ``serve_forever()`` runs it (in any thread), ``shutdown()`` stops it from
    another thread, ``server_close()`` releases the port and the batcher. ``server_address`` is
    the bound (host, port)."""

    def __init__(self, app: App, sock: socket.socket):
        self.app, self.socket = app, sock
        self.server_address = sock.getsockname()[:2]
        config = uvicorn.Config(app.starlette(), log_level="warning", access_log=False, lifespan="off",
                                timeout_keep_alive=30)
        self._uvicorn = uvicorn.Server(config)
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        try:
            self._uvicorn.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        self._uvicorn.should_exit = True
        self._stopped.wait(timeout=10)

    def server_close(self) -> None:
        self.socket.close()
        self.app.batcher.close()


def check_exposure(host: str, api_key: str | None) -> None:
    """Refuse a host other than a loopback address without an API key: anyone who can reach the
    port could otherwise use the model (and the machine's compute)."""
    if not api_key and not is_loopback(host):
        raise LlmcseError(f"--host {host} is reachable from other machines: set --api-key (or $LLMCSE_API_KEY) "
                          "so that only clients with the key can use the server")


def make_server(llm: LLM, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None,
                max_batch: int = 32, max_wait_ms: float = 20.0, limits: ServerLimits | None = None,
                api_key: str | None = None, sock: socket.socket | None = None) -> LLMServer:
    """Build (not start) the server; ``serve_forever()`` runs it. Port 0 picks a free port.
    ``sock``: an already listening socket (from ``listen``) instead of host and port."""
    check_exposure(host, api_key)
    sock = sock or listen(host, port)
    batcher = Batcher(llm, max_batch=max_batch, max_wait_ms=max_wait_ms)
    return LLMServer(App(batcher, model_name or llm.spec, limits or ServerLimits(), api_key or None), sock)
