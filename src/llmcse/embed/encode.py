"""Embed texts once per run: a cache in front of ``SentenceTransformer.encode``.

STS sets repeat sentences a lot (and ArguAna's queries are also documents), so each unique
text is embedded once; sentence-transformers batches and length-sorts what is left.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from llmcse.utils.progress import progress_enabled

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


class CachedEncoder:
    """Wraps a SentenceTransformer so each (prompt, text) is embedded at most once.

    Args:
        model: The sentence-transformers model.
        batch_size: Texts per forward pass.
        show_progress_bar: None = decide from the log level (see ``progress_enabled``).

    Embeddings are returned L2-normalised as float32, so a dot product is the cosine.
    """

    def __init__(self, model: SentenceTransformer, batch_size: int = 64, show_progress_bar: bool | None = None):
        self.model = model
        self.batch_size = batch_size
        self.show_progress_bar = progress_enabled(show_progress_bar)
        self._cache: dict[tuple[str | None, str], np.ndarray] = {}
        self.texts_encoded = 0  # unique texts actually run through the model

    def clear(self) -> None:
        """Forget cached embeddings (sharded corpus embedding keeps memory flat this way)."""
        self._cache.clear()

    @property
    def dim(self) -> int:
        model = self.model
        return model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else model.get_sentence_embedding_dimension()

    def encode(self, texts: Sequence[str], prompt_name: str | None = None) -> np.ndarray:
        """Embed ``texts``; returns (len(texts), dim) float32, unit length rows."""
        # A missing or empty prompt ("query": "" in all-MiniLM-L6-v2) is no prompt: share the cache entry,
        # so ArguAna's queries that are also documents are embedded once.
        prompt_name = prompt_name if (self.model.prompts or {}).get(prompt_name) else None
        missing = list(dict.fromkeys(t for t in texts if (prompt_name, t) not in self._cache))
        if missing:
            vectors = self.model.encode(
                missing,
                prompt_name=prompt_name,
                batch_size=self.batch_size,
                show_progress_bar=self.show_progress_bar,
                convert_to_numpy=True,
                normalize_embeddings=True,
            ).astype(np.float32, copy=False)  # (len(missing), dim)
            for text, vector in zip(missing, vectors):
                self._cache[(prompt_name, text)] = vector
            self.texts_encoded += len(missing)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[(prompt_name, t)] for t in texts])  # (len(texts), dim)


class PoolingSlice:
    """One pooling's view of a multi-pooling encoder (``--pooling mean,last``).

    The base model concatenates [pooling_0 | pooling_1 | ...]; this view takes columns
    ``start:end`` and renormalises them, which equals running that pooling alone, while the
    transformer runs once for all poolings (half the cost for two).
    """

    def __init__(self, base: CachedEncoder, start: int, end: int):
        self.base, self.start, self.end = base, start, end

    @property
    def dim(self) -> int:
        return self.end - self.start

    @property
    def texts_encoded(self) -> int:
        return self.base.texts_encoded

    def encode(self, texts: Sequence[str], prompt_name: str | None = None) -> np.ndarray:
        part = self.base.encode(texts, prompt_name)[:, self.start:self.end]  # (n, dim)
        norms = np.linalg.norm(part, axis=1, keepdims=True)
        return (part / np.maximum(norms, 1e-12)).astype(np.float32)
