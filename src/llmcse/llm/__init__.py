"""Generation back ends behind one protocol, chosen by a spec string ``<prefix>:<rest>``.

* ``hf:<path-or-id>``: local transformers (``.gguf`` files and bundled names work too);
* ``openai:<base-url>#<model>``: any OpenAI-compatible server;
* ``fake:``: deterministic echo, for tests.

The prefixes are ``LLM_BACKENDS`` entries: a new back end is one file with its class plus one
``LLM_BACKENDS.register`` line. Importing this package stays light: a back end's module (torch,
transformers, HTTP code) is imported only when a model of that kind is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmcse.errors import LlmcseError, MissingDataError, UnknownNameError
from llmcse.llm.base import LLM, FakeLLM, GenerationStats, Prompt, SamplingParams, redact_spec
from llmcse.utils.registry import Registry, did_you_mean, load_target


@dataclass(frozen=True)
class LLMBackend:
    """One spec prefix.

    Attributes:
        target: The class, or ``"module:Class"`` (imported only when such a model is loaded).
        usage: What a spec looks like, for error messages (``hf:<path-or-id>``).
        parse: ``(text after the prefix, whole spec) -> the class's keyword arguments``. It must be
            cheap (``check_llm_spec`` runs it before any work) and raise ``LlmcseError`` for a bad spec.
        options: The ``load_llm`` keyword options the class takes (the CLI's --dtype, --concurrency, ...).
    """

    target: object
    usage: str
    parse: Callable[[str, str], dict]
    options: tuple[str, ...] = ()


def _parse_hf(model: str, spec: str) -> dict:
    check_hf_model(model, spec)  # a missing path fails here, before torch and transformers load
    return {"model": model}


def _parse_openai(rest: str, spec: str) -> dict:
    base_url, _, model = rest.partition("#")
    if not model:
        raise LlmcseError(f"LLM spec {redact_spec(spec)!r} needs a model name: openai:<base-url>#<model>")
    return {"base_url": base_url, "model": model}


def _parse_fake(rest: str, spec: str) -> dict:
    return {"spec": spec, **parse_fake_options(rest, spec)}


LLM_BACKENDS: Registry[LLMBackend] = Registry("LLM back end")
LLM_BACKENDS.register("hf", LLMBackend("llmcse.llm.hf:HFGenerator", "hf:<path-or-id>", _parse_hf,
                                       ("device", "dtype", "batch_size", "prefix_cache")))
LLM_BACKENDS.register("openai", LLMBackend("llmcse.llm.openai_http:OpenAIHTTPGenerator", "openai:<base-url>#<model>",
                                           _parse_openai, ("concurrency", "timeout", "max_retries", "backoff", "api_key")))
LLM_BACKENDS.register("fake", LLMBackend(FakeLLM, "fake:", _parse_fake))


def backend_of(spec: str) -> tuple[LLMBackend, str]:
    """The back end a spec names and the text after its prefix.

    Raises:
        UnknownNameError: No prefix, or one that is not registered (the message lists them all).
    """
    prefix, sep, rest = spec.partition(":")
    if not sep or prefix not in LLM_BACKENDS:
        usages = [backend.usage for _, backend in LLM_BACKENDS.items()]
        hint = did_you_mean(prefix.lower(), list(LLM_BACKENDS)) if sep else ""
        raise UnknownNameError(f"unknown LLM spec {redact_spec(spec)!r}.{hint} Use {', '.join(usages[:-1])} or {usages[-1]}")
    return LLM_BACKENDS.get(prefix), rest


def load_llm(spec: str, **options) -> LLM:
    """Build a back end from its spec string (see module docstring).

    ``options`` another back end takes are left out, so a caller may pass the CLI's options
    whatever the spec; a name no back end takes is a programming error (TypeError).
    """
    backend, rest = backend_of(spec)
    kwargs = backend.parse(rest, spec)
    known = {name for _, b in LLM_BACKENDS.items() for name in b.options}
    if set(options) - known:
        raise TypeError(f"load_llm: no LLM back end takes {sorted(set(options) - known)}")
    return load_target(backend.target)(**kwargs, **{k: v for k, v in options.items() if k in backend.options})


def check_llm_spec(spec: str) -> None:
    """Validate a spec without loading anything (CLI commands call it before any work).

    Raises:
        LlmcseError: An unknown back end, an openai: spec without ``#<model>``, bad fake: options.
        MissingDataError: An hf: model that is a local-looking path that does not exist (or a hub
            id that is not cached while the hub is offline).
    """
    backend, rest = backend_of(spec)
    backend.parse(rest, spec)


def check_hf_model(model: str, spec: str) -> None:
    """The cheap part of loading an hf: model: bundled name, existing .gguf/folder, or plausible hub id."""
    from llmcse.utils.modelspec import BUNDLED_MODELS, check_model_reference

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
    """``load_llm`` options for a stage's ``request_timeout`` / ``max_retries``, for back ends that
    take them (servers); an unknown spec gets none (``load_llm`` then says what is wrong with it)."""
    prefix = (spec or "").partition(":")[0]
    if prefix not in LLM_BACKENDS:
        return {}
    offered = {"timeout": request_timeout, "max_retries": max_retries}
    return {k: v for k, v in offered.items() if k in LLM_BACKENDS.get(prefix).options}


__all__ = ["LLM", "LLM_BACKENDS", "FakeLLM", "GenerationStats", "LLMBackend", "Prompt", "SamplingParams", "backend_of",
           "check_llm_spec", "load_llm", "redact_spec", "transport_options"]
