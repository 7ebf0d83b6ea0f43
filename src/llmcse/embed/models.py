"""Turn a model spec (folder, hub id, bundled alias or .gguf file) into a SentenceTransformer.

What shapes an embedding (pooling, prompts, normalisation) is read from a saved
sentence-transformers folder. ``pooling`` is only for raw transformer checkpoints that
have none saved: overriding a saved pooling at eval time was SimCSE's most-reported
failure, so we refuse it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from llmcse.errors import LlmcseError
from llmcse.utils.modelspec import MODEL_PREFIXES, auto_device, model_kwargs_for, resolve_model_path, split_prefix
from llmcse.utils.registry import Registry, load_target

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

POOLING_MODES = {"mean": "mean", "cls": "cls", "last": "lasttoken", "lasttoken": "lasttoken", "max": "max"}


def _is_sentence_transformers_folder(path: str) -> bool:
    return (Path(path) / "modules.json").is_file()


def load_embedder(
    spec: str,
    *,
    pooling: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    max_seq_length: int | None = None,
    quantization: str | None = None,
) -> SentenceTransformer:
    """Load any model as a SentenceTransformer.

    Args:
        spec: A sentence-transformers folder or hub id, a raw transformers folder or hub id,
            a bundled alias, a ``.gguf`` file, or a spec with a registered prefix
            (``PREFIX_LOADERS``), e.g. ``prompteol:<causal LM>``: a PromptEOL embedder
            built on the fly with the paper's template, as ``llmcse prompteol`` would save it.
        pooling: ``mean``, ``cls`` or ``last``, only for raw transformer checkpoints. Several,
            comma-separated, give one vector per pooling concatenated (see ``PoolingSlice``).
        device: ``cuda``, ``mps``, ``cpu``; None picks automatically.
        dtype: ``float32`` (default, exact), ``bfloat16``, ``float16`` or ``auto``.
        max_seq_length: Truncation length in tokens (None keeps the model's own).
        quantization: ``"4bit"`` loads the transformer in bitsandbytes NF4 (QLoRA training on CUDA).

    Raises:
        LlmcseError: ``pooling`` given for a model that already saves its pooling, or an
            unknown pooling mode.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    device = device or auto_device()
    prefix, rest = split_prefix(spec)
    if prefix is not None:  # the prefix's loader builds the whole model
        return load_target(prefix_loader(prefix, spec))(rest, spec, pooling=pooling, device=device, dtype=dtype,
                                                        max_seq_length=max_seq_length, quantization=quantization)
    path = resolve_model_path(spec)
    model_kwargs = model_kwargs_for(dtype, device, quantization)
    poolings = pooling.split(",") if pooling else []
    for p in poolings:
        if p not in POOLING_MODES:
            raise LlmcseError(f"unknown pooling {p!r}; choose one of mean, cls, last (comma-separated for several)")

    if _is_sentence_transformers_folder(path):
        if pooling is not None:
            raise LlmcseError(
                f"{spec} is a sentence-transformers model with its own saved pooling; --pooling is only for raw "
                "transformer checkpoints (overriding it at eval time silently changes the model)"
            )
        model = SentenceTransformer(path, device=device, model_kwargs=model_kwargs)
    elif pooling is None and not Path(path).exists():
        # A hub id: sentence-transformers knows whether it has saved pooling.
        try:
            model = SentenceTransformer(path, device=device, model_kwargs=model_kwargs)
        except OSError as e:  # unknown repo, no network, gated model: transformers says which in its first line
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise LlmcseError(f"model {spec!r} is not a local folder and could not be loaded from the Hugging Face "
                              f"hub: {reason}") from None
    else:
        if pooling is None:
            logger.warning("%s has no saved pooling; using mean pooling (pass --pooling to choose)", spec)
            pooling = "mean"
        # Text only: sentence-transformers 6 would otherwise wrap every input in the tokenizer's chat
        # template (SmolLM2's adds a system prompt), which is not "mean/last pooling of the sentence".
        transformer = Transformer(path, model_kwargs=model_kwargs,
                                  modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
                                  module_output_name="token_embeddings")
        tokenizer = transformer.tokenizer
        if tokenizer.pad_token is None:
            # Decoder LLMs often have no pad token; the attention mask hides it anyway.
            tokenizer.pad_token = tokenizer.eos_token
        dim = transformer.get_embedding_dimension()
        # Several poolings ("mean,last") share one forward pass; their vectors are concatenated in order.
        modes = tuple(POOLING_MODES[p] for p in pooling.split(","))
        model = SentenceTransformer(modules=[transformer, Pooling(dim, pooling_mode=modes if len(modes) > 1 else modes[0])],
                                    device=device)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    model.eval()
    return model


def load_prompteol(base: str, spec: str, *, pooling: str | None, device: str, dtype: str | None,
                   max_seq_length: int | None, quantization: str | None) -> SentenceTransformer:
    """``prompteol:<causal LM>`` (a ``PREFIX_LOADERS`` entry): PromptEOL with the paper's template."""
    from llmcse.embed.prompteol import build_prompteol_model

    if pooling is not None:
        raise LlmcseError(f"{spec}: PromptEOL pools the last token by construction; drop --pooling")
    return build_prompteol_model(base, dtype=dtype, max_seq_length=max_seq_length, device=device,
                                 quantization=quantization)


# What builds the model of each ``<prefix>:<rest>`` spec: ``(rest, spec, *, pooling, device, dtype,
# max_seq_length, quantization) -> SentenceTransformer`` (``load_embedder``'s arguments), or
# ``"module:function"``, imported only when such a model loads. ``utils.modelspec.MODEL_PREFIXES`` lists
# the prefixes themselves (resolution sits below embed and must not name its loaders).
PREFIX_LOADERS: Registry[object] = Registry("model-spec prefix loader")


def register_model_prefix(prefix: str, loader, usage: str) -> None:
    """A new kind of embedder spec in one call: ``prefix`` becomes a model-spec prefix (``usage`` shows
    what such a spec looks like) built by ``loader``.

    Raises:
        ValueError: ``prefix`` already has a loader (nothing is registered then).
    """
    if prefix in PREFIX_LOADERS:
        raise ValueError(f"{PREFIX_LOADERS.kind} {prefix!r} is already registered")
    if prefix not in MODEL_PREFIXES:  # a prefix declared below may still need its loader
        MODEL_PREFIXES.register(prefix, usage)
    PREFIX_LOADERS.register(prefix, loader)


def prefix_loader(prefix: str, spec: str):
    """The loader of a registered prefix.

    Raises:
        LlmcseError: The prefix is declared (``MODEL_PREFIXES``) but no loader builds embedders from it.
    """
    if prefix not in PREFIX_LOADERS:
        raise LlmcseError(f"model {spec!r}: no embedder loader is registered for the {prefix!r} prefix "
                          f"(llmcse.embed.models.register_model_prefix adds one)")
    return PREFIX_LOADERS.get(prefix)


PREFIX_LOADERS.register("prompteol", load_prompteol)
