"""Generation back ends behind one protocol, chosen by a spec string.

* ``hf:<path-or-id>``: local transformers (``.gguf`` files and bundled names work too);
* ``openai:<base-url>#<model>``: any OpenAI-compatible server;
* ``fake:``: deterministic echo, for tests.
"""

from __future__ import annotations

from llmcse.errors import LlmcseError
from llmcse.llm.base import LLM, FakeLLM, GenerationStats, Prompt, SamplingParams

BACKENDS = ("hf", "openai", "fake")


def load_llm(spec: str, **options) -> LLM:
    """Build a back end from its spec string (see module docstring)."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in BACKENDS:
        raise LlmcseError(f"unknown LLM spec {spec!r}; use hf:<path-or-id>, openai:<base-url>#<model> or fake:")
    if kind == "hf":
        from llmcse.llm.hf import HFGenerator

        return HFGenerator(rest, **options)
    if kind == "openai":
        from llmcse.llm.openai_http import OpenAIHTTPGenerator

        base_url, hash_, model = rest.partition("#")
        if not hash_ or not model:
            raise LlmcseError(f"LLM spec {spec!r} needs a model name: openai:<base-url>#<model>")
        return OpenAIHTTPGenerator(base_url, model, **options)
    options_text = dict(kv.split("=", 1) for kv in rest.split(",") if "=" in kv)
    return FakeLLM(spec=spec, delay=float(options_text.get("delay", 0)))


__all__ = ["LLM", "FakeLLM", "GenerationStats", "Prompt", "SamplingParams", "load_llm"]
