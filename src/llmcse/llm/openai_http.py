"""OpenAI-compatible HTTP back end: vLLM, llama.cpp server, SGLang, TGI, Ollama, hosted APIs, ``llmcse serve-llm``.

Spec: ``openai:<base-url>#<model>``, e.g. ``openai:http://127.0.0.1:8000/v1#SmolLM2``. Chat
prompts go to ``/chat/completions``, plain strings to ``/completions``, through the official
``openai`` SDK's async client: requests run concurrently (bounded by ``concurrency``; servers
batch them), each with a timeout, and are retried with exponential backoff. The API key comes
from ``$LLMCSE_API_KEY`` or ``$OPENAI_API_KEY`` (local servers need none: a placeholder is sent).
Token counts are the server's own (``usage``).

Failures are never mistaken for model output. A server that cannot be reached, does not answer in
time, answers 408/409/429/5xx, or answers something that is not an OpenAI response (HTML, invalid
JSON, no choices, ``content: null``) is asked again; when every attempt failed the run stops with
``ServerUnavailableError`` or ``ServerProtocolError``, so nothing is recorded as rejected and a
rerun asks again. Only text the server really produced reaches the callers' quality checks.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from llmcse.errors import LlmcseError
from llmcse.llm.base import GenerationStats, Prompt, SamplingParams, redact_url, truncate_at_stop

logger = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
DEFAULT_TIMEOUT = 30.0  # seconds per request: a dead server is reported after (1 + retries) x this, ~1.5 min
DEFAULT_MAX_RETRIES = 2
TOP_LOGPROBS = 20  # the most OpenAI (and vLLM by default) return per position
MAX_BACKOFF = 8.0


class ServerUnavailableError(LlmcseError):
    """The server could not be reached, did not answer in time, or kept failing (5xx, 429)."""


class ServerProtocolError(LlmcseError):
    """The server answered, but not with an OpenAI-style response (HTML, invalid JSON, no choices, no text)."""


class ServerRequestError(LlmcseError):
    """The server refused the request itself (4xx other than 408/409/429): retrying cannot help."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class LogprobsUnavailableError(LlmcseError):
    """The server refuses or omits ``logprobs``; scoring falls back to sampling (synth/filter.py)."""


class _Protocol(Exception):
    """One answer that is not an OpenAI response (retried; becomes ServerProtocolError at the end)."""


@dataclass
class _Reply:
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    top_logprobs: list[tuple[str, float]] | None  # first generated position, when asked for and given


class OpenAIHTTPGenerator:
    """Generate through an OpenAI-compatible server.

    Args:
        base_url: Up to and including ``/v1``. A query string (``?api-version=...``) is sent with
            every request; ``user:password@`` is sent as basic auth. Neither is ever saved (``spec``
            is redacted).
        model: Model name the server knows.
        concurrency: Requests in flight at once.
        timeout: Seconds per request attempt (the whole answer, not just the first byte).
        max_retries: Further attempts per request after a connection error, a timeout, 408/409/429/5xx
            or an answer that is not an OpenAI response.
        backoff: Seconds before the first retry; doubled per retry (at most 8 s).
    """

    def __init__(self, base_url: str, model: str, *, concurrency: int = 8, timeout: float = DEFAULT_TIMEOUT,
                 max_retries: int = DEFAULT_MAX_RETRIES, backoff: float = 0.5, api_key: str | None = None):
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise LlmcseError(f"request timeout must be a number of seconds > 0, got {timeout!r}")
        if not (isinstance(max_retries, int) and max_retries >= 0):
            raise LlmcseError(f"max retries must be an integer >= 0, got {max_retries!r}")
        if not (isinstance(concurrency, int) and concurrency >= 1):
            raise LlmcseError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        if importlib.util.find_spec("openai") is None:  # checked here, imported per request
            raise LlmcseError("the openai: back end needs the openai package: pip install openai")
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LlmcseError(f"openai: spec needs an http(s) base URL like http://127.0.0.1:8000/v1, "
                              f"got {redact_url(base_url)!r}")
        self.base_url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self._query = dict(parse_qsl(parts.query))  # sent as the SDK's default_query: it appends paths to base_url
        self.model = model
        self.where = redact_url(self.base_url)  # for messages and logs
        from llmcse.llm.base import redact_spec

        self.spec = redact_spec(f"openai:{base_url.rstrip('/')}#{model}")
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = backoff
        # The SDK insists on a key; local servers (vLLM, llama.cpp, serve-llm) ignore it.
        self.api_key = api_key or os.environ.get("LLMCSE_API_KEY") or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.stats = GenerationStats()
        self.logprobs_supported: bool | None = None  # learnt on the first choice_probabilities call
        self._warned_no_usage = False

    # -- the protocol ------------------------------------------------------------------------------

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[str]:
        """One completion per prompt, in order. Raises ServerUnavailableError / ServerProtocolError /
        ServerRequestError when the server fails; never returns a failure as text."""
        replies = self._run(prompts, params)
        return [truncate_at_stop(r.text, params.stop) for r in replies]

    def choice_probabilities(self, prompts: list[Prompt], choices: list[str]) -> list[list[float] | None]:
        """P(first answer token = each choice), renormalised over the choices, from the server's
        ``top_logprobs`` (as the hf back end computes it from logits). A row is None when none of the
        choices is among the top tokens. Raises LogprobsUnavailableError when the server refuses
        ``logprobs`` or answers without them."""
        if not prompts:
            return []
        if self.logprobs_supported is False:
            raise LogprobsUnavailableError(f"{self.where} gives no logprobs")
        params = SamplingParams(max_new_tokens=1, temperature=0.0, top_p=1.0)
        try:
            replies = self._run(prompts, params, top_logprobs=TOP_LOGPROBS)
        except ServerRequestError as e:
            if e.status not in (400, 422):
                raise
            self.logprobs_supported = False
            raise LogprobsUnavailableError(f"{self.where} refused logprobs: {e}") from None
        if any(r.top_logprobs is None for r in replies):
            self.logprobs_supported = False
            raise LogprobsUnavailableError(f"{self.where} answered without logprobs")
        self.logprobs_supported = True
        return [choice_distribution(r.top_logprobs, choices) for r in replies]

    # -- requests ----------------------------------------------------------------------------------

    def _run(self, prompts: list[Prompt], params: SamplingParams, top_logprobs: int | None = None) -> list[_Reply]:
        t0 = time.perf_counter()
        replies = _run_sync(self._gather(prompts, params, top_logprobs))
        for r in replies:
            self.stats.prompt_tokens += r.prompt_tokens or 0
            self.stats.completion_tokens += r.completion_tokens or 0
        if replies and all(r.completion_tokens is None for r in replies) and not self._warned_no_usage:
            logger.warning("%s reports no token usage: token counts and tokens/s will read 0", self.where)
            self._warned_no_usage = True
        self.stats.requests += len(prompts)
        self.stats.seconds += time.perf_counter() - t0
        return replies

    async def _gather(self, prompts: list[Prompt], params: SamplingParams, top_logprobs: int | None) -> list[_Reply]:
        import openai

        # A client per call: its connection pool belongs to this event loop (asyncio.run makes a new one).
        # max_retries=0: this module retries itself, protocol failures included.
        async with openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0,
                                      timeout=self.timeout, default_query=self._query or None) as client:
            gate = asyncio.Semaphore(self.concurrency)
            tasks = [asyncio.create_task(self._request(client, gate, p, params, i, top_logprobs))
                     for i, p in enumerate(prompts)]
            try:
                return await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:  # one request gave up: the run stops, so stop the others now
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    async def _request(self, client, gate: asyncio.Semaphore, prompt: Prompt, params: SamplingParams, index: int,
                       top_logprobs: int | None) -> _Reply:
        import openai

        endpoint = "/completions" if isinstance(prompt, str) else "/chat/completions"
        problem, protocol = "", False
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF))
            try:
                async with gate:
                    raw = await asyncio.wait_for(self._send(client, prompt, params, index, top_logprobs),
                                                 timeout=self.timeout)
                return _parse(raw, chat=not isinstance(prompt, str))
            except openai.APIStatusError as e:
                problem, protocol = f"HTTP {e.status_code}: {_excerpt(_body(e.response))}", False
                if e.status_code not in RETRY_STATUS:
                    raise ServerRequestError(f"LLM server at {self.where} refused the request ({endpoint}): {problem}",
                                             e.status_code) from None
            except (openai.APITimeoutError, asyncio.TimeoutError, TimeoutError):
                problem, protocol = f"no answer within {self.timeout:g} s", False
            except openai.APIConnectionError as e:
                problem, protocol = _connection_problem(e), False
            except _Protocol as e:
                problem, protocol = str(e), True
            logger.debug("request to %s%s failed (attempt %d): %s", self.where, endpoint, attempt + 1, problem)
        attempts = f"{self.max_retries + 1} attempt{'s' if self.max_retries else ''}"
        if protocol:
            raise ServerProtocolError(f"LLM server at {self.where} did not answer like an OpenAI-compatible API "
                                      f"({endpoint}) after {attempts}: {problem}; is the URL the server's /v1 base?")
        hint = ("raise --request-timeout if the server is only slow" if problem.startswith("no answer")
                else "is it running? (start one with `llmcse serve-llm`, `vllm serve` or llama.cpp's server)")
        raise ServerUnavailableError(f"LLM server at {self.where} is not answering ({problem}) after {attempts}; {hint}")

    async def _send(self, client, prompt: Prompt, params: SamplingParams, index: int, top_logprobs: int | None):
        args: dict = {"model": self.model, "max_tokens": params.max_new_tokens, "temperature": params.temperature,
                      "top_p": params.top_p}
        if params.seed is not None:
            args["seed"] = params.seed + index  # one seed per request: servers sample each on its own
        if params.stop:
            args["stop"] = list(params.stop)
        if isinstance(prompt, str):
            if top_logprobs:
                args["logprobs"] = min(top_logprobs, 5)  # the legacy endpoint's limit
            return await client.completions.with_raw_response.create(prompt=prompt, **args)
        if top_logprobs:
            args.update(logprobs=True, top_logprobs=top_logprobs)
        return await client.chat.completions.with_raw_response.create(messages=prompt, **args)


def _parse(raw, chat: bool) -> _Reply:
    """Text, usage and first-position top logprobs of one response; _Protocol when it is not one."""
    body = raw.http_response.text
    try:
        parsed = raw.parse()
    except ValueError:  # json.JSONDecodeError
        raise _Protocol(f"invalid JSON: {_excerpt(body)}") from None
    if isinstance(parsed, str):  # the SDK hands back non-JSON bodies as text
        kind = raw.http_response.headers.get("content-type", "no content type")
        raise _Protocol(f"a {kind} body instead of JSON: {_excerpt(body)}")
    try:
        choices = parsed.choices
        if not choices:
            raise _Protocol(f"no choices: {_excerpt(body)}")
        choice = choices[0]
        text = choice.message.content if chat else choice.text
        if not isinstance(text, str):
            raise _Protocol(f"no text in the first choice ({'message.content' if chat else 'text'} is "
                            f"{'null' if text is None else type(text).__name__}): {_excerpt(body)}")
        top = _top_logprobs(choice.logprobs, chat)
        usage = parsed.usage
        prompt_tokens = getattr(usage, "prompt_tokens", None) if usage else None
        completion_tokens = getattr(usage, "completion_tokens", None) if usage else None
    except (AttributeError, TypeError, IndexError, KeyError):  # JSON of another shape (non-strict parsing)
        raise _Protocol(f"not a completion response: {_excerpt(body)}") from None
    return _Reply(text, _int_or_none(prompt_tokens), _int_or_none(completion_tokens), top)


def _top_logprobs(logprobs, chat: bool) -> list[tuple[str, float]] | None:
    """(token, logprob) pairs at the first generated position, or None when the server gave none."""
    if logprobs is None:
        return None
    if chat:
        content = getattr(logprobs, "content", None)
        if not content:
            return None
        first = content[0]
        top = [(t.token, float(t.logprob)) for t in (first.top_logprobs or [])]
        return top or [(first.token, float(first.logprob))]
    tops = getattr(logprobs, "top_logprobs", None)
    if not tops or not tops[0]:
        return None
    return [(token, float(lp)) for token, lp in tops[0].items()]


def choice_distribution(top: list[tuple[str, float]], choices: list[str]) -> list[float] | None:
    """Probabilities of ``choices`` renormalised over them, from one position's top logprobs.

    A token counts for a choice when it is the choice up to surrounding spaces and case ("Yes",
    " yes"); a choice not among the top tokens gets 0. None when no choice is there at all."""
    mass = [0.0] * len(choices)
    wanted = [c.strip().lower() for c in choices]
    seen: set[str] = set()
    for token, logprob in top:
        if token in seen:  # a server may list a token twice; count it once
            continue
        seen.add(token)
        key = token.strip().lower()
        if key in wanted and math.isfinite(logprob):
            mass[wanted.index(key)] += math.exp(logprob)
    total = sum(mass)
    return [m / total for m in mass] if total > 0 else None


def _run_sync(coro):
    """Run a coroutine to completion from sync code, also when an event loop already runs here
    (a notebook): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: dict = {}

    def target():
        try:
            result["value"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = e

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def _body(response) -> str:
    try:
        return response.text
    except Exception:  # noqa: BLE001 - a body that cannot be read is reported as such
        return "<unreadable body>"


def _excerpt(text: str, limit: int = 200) -> str:
    """The first ``limit`` characters on one line (error messages are one line)."""
    flat = " ".join(str(text).split())
    return repr(flat[:limit] + ("..." if len(flat) > limit else ""))


def _connection_problem(error) -> str:
    cause = error.__cause__ or error
    return f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
