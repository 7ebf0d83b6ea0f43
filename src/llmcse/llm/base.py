"""The one small protocol every generation back end implements.

A prompt is either a plain string (completion) or a chat: a list of
``{"role": ..., "content": ...}`` messages. Back ends return one string per prompt and
count tokens in ``stats`` so callers can report tokens/s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol, Union, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

ChatMessage = dict[str, str]
Prompt = Union[str, list[ChatMessage]]


@dataclass
class SamplingParams:
    """How to sample. ``temperature`` 0 means greedy."""

    max_new_tokens: int = 64
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int | None = None
    stop: tuple[str, ...] = ()  # generation is cut at the first stop string

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class GenerationStats:
    requests: int = 0
    prompt_tokens: int = 0
    prefill_tokens: int = 0  # prompt tokens actually run through the model (shared prefixes and repeats: once)
    completion_tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens, "prefill_tokens": self.prefill_tokens,
                "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 2),
                "completion_tokens_per_s": round(self.completion_tokens / self.seconds, 1) if self.seconds else None}


@runtime_checkable
class LLM(Protocol):
    """A text generator. ``spec`` is the string it was built from (recorded as provenance)."""

    spec: str
    stats: GenerationStats

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[str]:
        """One completion per prompt, in order. Never raises for bad model output."""
        ...


# Query-string keys whose values are credentials (?api_key=..., &token=..., &sig=...).
_SECRET_KEY = re.compile(r"key|token|secret|pass|auth|sig|credential", re.IGNORECASE)
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s#]+")


def redact_url(url: str) -> str:
    """``url`` without credentials: ``user:password@`` becomes ``***@`` and the values of
    query keys that look like credentials become ``***``; anything else is kept as is."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        query = "&".join(f"{k}=***" if _SECRET_KEY.search(k) and sep else k + sep + v
                         for k, sep, v in (item.partition("=") for item in query.split("&")))
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # unchanged, byte for byte (specs are compared with stored ones)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_spec(spec: str | None) -> str | None:
    """An LLM spec safe to save or log: every URL in it loses its credentials (see ``redact_url``).

    Specs are written into records, summaries, reports and logs, and a URL may carry a password
    or an API key; the key belongs in ``$LLMCSE_API_KEY`` / ``$OPENAI_API_KEY`` instead."""
    if not spec:
        return spec
    return _URL.sub(lambda m: redact_url(m.group()), spec)


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """Cut ``text`` at the earliest stop string (servers do this; local generation must too)."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def fake_rewrite(instruction_and_seed: str) -> str:
    """Deterministic stand-in for an LLM rewrite: the seed's words reversed, tagged with the
    instruction's first word (so each field differs and none is a copy of the seed), ending in a
    full stop like a finished sentence."""
    head, _, seed = instruction_and_seed.partition(": ")
    words = (seed or head).rstrip(".").split()
    return " ".join(reversed(words)) + f" {head.split()[0].lower() if head.split() else 'x'}."


@dataclass
class FakeLLM:
    """A deterministic back end for tests (spec ``fake:`` or ``fake:delay=0.05``).

    ``responder(last_user_message, call_index) -> str``; the default is ``fake_rewrite``.
    ``delay`` seconds are slept per prompt, to make interruption tests possible.
    """

    spec: str = "fake:"
    responder: object = None
    delay: float = 0.0
    stats: GenerationStats = field(default_factory=GenerationStats)

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[str]:
        import time

        outs = []
        for prompt in prompts:
            if self.delay:
                time.sleep(self.delay)
            text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
            out = self.responder(text, self.stats.requests) if self.responder else fake_rewrite(text)
            self.stats.requests += 1
            self.stats.completion_tokens += len(str(out).split())
            # Non-strings pass through untouched: the fake also plays a broken back end.
            outs.append(truncate_at_stop(out, params.stop) if isinstance(out, str) else out)
        return outs
