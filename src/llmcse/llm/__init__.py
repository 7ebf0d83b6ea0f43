"""Generation back ends behind one protocol, chosen by a spec string.

* ``hf:<path-or-id>``: local transformers (``.gguf`` files and bundled names work too);
* ``openai:<base-url>#<model>``: any OpenAI-compatible server;
* ``fake:``: deterministic echo, for tests.
"""

from __future__ import annotations

from pathlib import Path

from llmcse.errors import LlmcseError, MissingDataError
from llmcse.llm.base import LLM, FakeLLM, GenerationStats, Prompt, SamplingParams, redact_spec

BACKENDS = ("hf", "openai", "fake")


def load_llm(spec: str, **options) -> LLM:
    """Build a back end from its spec string (see module docstring)."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in BACKENDS:
        raise LlmcseError(f"unknown LLM spec {redact_spec(spec)!r}; use hf:<path-or-id>, openai:<base-url>#<model> or fake:")
    if kind == "hf":
        check_hf_model(rest, spec)  # a missing path fails here, before torch and transformers load
        from llmcse.llm.hf import HFGenerator

        return HFGenerator(rest, **options)
    if kind == "openai":
        from llmcse.llm.openai_http import OpenAIHTTPGenerator

        base_url, hash_, model = rest.partition("#")
        if not hash_ or not model:
            raise LlmcseError(f"LLM spec {redact_spec(spec)!r} needs a model name: openai:<base-url>#<model>")
        return OpenAIHTTPGenerator(base_url, model, **options)
    return FakeLLM(spec=spec, **parse_fake_options(rest, spec))


def check_llm_spec(spec: str) -> None:
    """Validate a spec without loading anything (CLI commands call it before any work).

    Raises:
        LlmcseError: An unknown back end, an openai: spec without ``#<model>``, bad fake: options.
        MissingDataError: An hf: model that is a local-looking path that does not exist (or a hub
            id that is not cached while the hub is offline).
    """
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in BACKENDS:
        raise LlmcseError(f"unknown LLM spec {redact_spec(spec)!r}; use hf:<path-or-id>, openai:<base-url>#<model> or fake:")
    if kind == "hf":
        check_hf_model(rest, spec)
    elif kind == "openai":
        if not rest.partition("#")[2]:
            raise LlmcseError(f"LLM spec {redact_spec(spec)!r} needs a model name: openai:<base-url>#<model>")
    else:
        parse_fake_options(rest, spec)


def check_hf_model(model: str, spec: str) -> None:
    """The cheap part of loading an hf: model: bundled name, existing .gguf/folder, or plausible hub id."""
    from llmcse.embed.models import BUNDLED_MODELS, check_model_reference

    if not model.strip():
        raise LlmcseError(f"LLM spec {spec!r} needs a model: hf:<folder, hub id, .gguf or bundled name>")
    if model.lower() in BUNDLED_MODELS:
        return
    path = Path(model).expanduser()
    try:
        if model.endswith(".gguf"):
            if not path.is_file():
                raise MissingDataError(f"GGUF file {model!r} not found")
        else:
            check_model_reference(str(path) if model.startswith("~") else model)
    except LlmcseError as e:
        raise type(e)(f"LLM spec {spec!r}: {e}") from None


FAKE_OPTIONS = {"delay": "seconds slept per prompt (a number >= 0)"}


def parse_fake_options(text: str, spec: str) -> dict:
    """``delay=0.05`` -> ``{"delay": 0.05}``; an unknown key or a bad value is an error."""
    options = {}
    for item in filter(None, (kv.strip() for kv in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in FAKE_OPTIONS:
            raise LlmcseError(f"LLM spec {spec!r}: unknown option {item!r}; fake: takes "
                              + ", ".join(f"{k}=<{v}>" for k, v in FAKE_OPTIONS.items()))
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not number >= 0 or number == float("inf"):  # also refuses nan
            raise LlmcseError(f"LLM spec {spec!r}: {key} must be a number >= 0, got {value!r}")
        options[key] = number
    return options


def transport_options(spec: str | None, request_timeout: float, max_retries: int) -> dict:
    """``load_llm`` options for a stage's ``request_timeout`` / ``max_retries`` (only servers use them)."""
    if spec and spec.startswith("openai:"):
        return {"timeout": request_timeout, "max_retries": max_retries}
    return {}


__all__ = ["LLM", "FakeLLM", "GenerationStats", "Prompt", "SamplingParams", "check_llm_spec", "load_llm", "redact_spec",
           "transport_options"]
