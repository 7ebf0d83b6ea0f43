"""A toy model-spec prefix, ``toyhalf:<model>``: the base embedder with each vector cut to its first
half (Matryoshka-style truncation, sentence-transformers' ``truncate_dim``)."""

from __future__ import annotations

from llmcse.embed.models import load_embedder, register_model_prefix


def load_half(rest: str, spec: str, *, pooling, device, dtype, max_seq_length, quantization):
    model = load_embedder(rest, pooling=pooling, device=device, dtype=dtype, max_seq_length=max_seq_length,
                          quantization=quantization)
    model.truncate_dim = model.get_embedding_dimension() // 2
    return model


register_model_prefix("toyhalf", load_half, "toyhalf:<model>")
