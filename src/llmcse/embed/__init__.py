"""Embedders: load any sentence-transformers model, raw transformer or GGUF file as one encoder."""

from llmcse.embed.models import load_embedder, resolve_model_path

__all__ = ["load_embedder", "resolve_model_path"]
