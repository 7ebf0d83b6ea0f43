"""Embedders: load any sentence-transformers model, raw transformer or GGUF file as one encoder.

Resolving a model spec to a folder (bundled aliases, GGUF conversion) is ``llmcse.utils.modelspec``.
"""

from llmcse.embed.models import load_embedder

__all__ = ["load_embedder"]
