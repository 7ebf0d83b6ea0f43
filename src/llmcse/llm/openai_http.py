"""OpenAI-compatible HTTP back end: vLLM, llama.cpp server, Ollama, hosted APIs, ``llmcse serve-llm``.

Spec: ``openai:<base-url>#<model>``, e.g. ``openai:http://127.0.0.1:8000/v1#SmolLM2``. Chat
prompts go to ``/chat/completions``, plain strings to ``/completions``. The API key comes
from ``$LLMCSE_API_KEY`` or ``$OPENAI_API_KEY``. Requests run concurrently (a thread pool;
servers batch them), each with a timeout and retries with exponential backoff.
Standard library only, so nothing optional needs installing.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from llmcse.errors import LlmcseError
from llmcse.llm.base import GenerationStats, Prompt, SamplingParams, truncate_at_stop

logger = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class ServerUnavailableError(LlmcseError):
    """The server could not be reached or kept failing after all retries."""


class OpenAIHTTPGenerator:
    """Generate through an OpenAI-compatible server.

    Args:
        base_url: Up to and including ``/v1``.
        model: Model name the server knows.
        concurrency: Requests in flight at once.
        timeout: Seconds per request.
        max_retries: Retries per request on connection errors, timeouts and 408/429/5xx.
    """

    def __init__(self, base_url: str, model: str, *, concurrency: int = 8, timeout: float = 120.0,
                 max_retries: int = 4, backoff: float = 0.5, api_key: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.spec = f"openai:{self.base_url}#{model}"
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.api_key = api_key or os.environ.get("LLMCSE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.stats = GenerationStats()

    def _post(self, path: str, payload: dict) -> dict:
        data = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url + path
        last_error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                request = urllib.request.Request(url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                body = e.read().decode("utf-8", errors="replace")[:300]
                last_error = f"HTTP {e.code}: {body}"
                if e.code not in RETRY_STATUS:
                    raise ServerUnavailableError(f"{url} refused the request: {last_error}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last_error = str(getattr(e, "reason", e))
            logger.debug("request to %s failed (attempt %d): %s", url, attempt + 1, last_error)
        raise ServerUnavailableError(
            f"LLM server at {self.base_url} is not answering ({last_error}) after {self.max_retries + 1} attempts; "
            "is it running? (start one with `llmcse serve-llm`, `vllm serve` or llama.cpp's server)"
        )

    def _one(self, prompt: Prompt, params: SamplingParams, index: int) -> tuple[str, dict]:
        payload = {"model": self.model, "max_tokens": params.max_new_tokens, "temperature": params.temperature,
                   "top_p": params.top_p}
        if params.seed is not None:
            payload["seed"] = params.seed + index
        if params.stop:
            payload["stop"] = list(params.stop)
        if isinstance(prompt, str):
            response = self._post("/completions", {**payload, "prompt": prompt})
            choice = response.get("choices", [{}])[0]
            text = choice.get("text", "")
        else:
            response = self._post("/chat/completions", {**payload, "messages": prompt})
            choice = response.get("choices", [{}])[0]
            text = (choice.get("message") or {}).get("content") or ""
        return truncate_at_stop(str(text), params.stop), response.get("usage") or {}

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[str]:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            results = list(pool.map(lambda ip: self._one(ip[1], params, ip[0]), enumerate(prompts)))
        for _, usage in results:
            self.stats.prompt_tokens += int(usage.get("prompt_tokens", 0))
            self.stats.completion_tokens += int(usage.get("completion_tokens", 0))
        self.stats.requests += len(prompts)
        self.stats.seconds += time.perf_counter() - t0
        return [text for text, _ in results]
