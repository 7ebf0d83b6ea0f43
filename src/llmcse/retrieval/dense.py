"""Exact dense retrieval: every query scored against every document by dot product.

Embeddings from ``CachedEncoder`` are unit length, so the dot product is the cosine, as in
BEIR's ``DenseRetrievalExactSearch`` with ``score_function="cos_sim"``. Documents are
scored in chunks while a running top-k per query is kept, so the score matrix held at any
time is (n_queries, chunk_size) rather than (n_queries, n_docs). ``faiss.IndexFlatIP``
(also exact) can be used instead when faiss is installed.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from llmcse.data.records import Doc, Query
from llmcse.embed.encode import CachedEncoder

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 16384


def _stable_order(scores: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by score descending, equal scores by document index ascending."""
    order = np.lexsort((indices, -scores), axis=-1)  # (n_queries, k)
    return np.take_along_axis(scores, order, axis=-1), np.take_along_axis(indices, order, axis=-1)


def exact_top_k(
    query_emb: np.ndarray, doc_emb: np.ndarray, k: int, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """The k highest dot products per query, computed over document chunks.

    Args:
        query_emb: (n_queries, dim) query embeddings.
        doc_emb: (n_docs, dim) document embeddings, same dtype family as ``query_emb``.
        k: Results per query; clamped to n_docs.
        chunk_size: Documents scored per matmul; peak extra memory is about
            n_queries * (chunk_size + k) scores.

    Returns:
        (scores, indices): (n_queries, min(k, n_docs)) scores, best first, and the
        matching (n_queries, min(k, n_docs)) int64 row indices into ``doc_emb``. Equal
        scores are ordered by index; which of several tied documents is kept at the
        k-th place is not specified.

    Raises:
        ValueError: Mismatched embedding widths, k < 1 or chunk_size < 1.
    """
    if query_emb.ndim != 2 or doc_emb.ndim != 2 or query_emb.shape[1] != doc_emb.shape[1]:
        raise ValueError(f"need (n_queries, dim) and (n_docs, dim) arrays, got {query_emb.shape} and {doc_emb.shape}")
    if k < 1 or chunk_size < 1:
        raise ValueError(f"k and chunk_size must be positive, got k={k}, chunk_size={chunk_size}")
    n_queries, n_docs = query_emb.shape[0], doc_emb.shape[0]
    k = min(k, n_docs)
    dtype = np.result_type(query_emb.dtype, doc_emb.dtype, np.float32)
    if n_docs == 0:
        return np.zeros((n_queries, 0), dtype=dtype), np.zeros((n_queries, 0), dtype=np.int64)
    queries = torch.from_numpy(np.ascontiguousarray(query_emb, dtype=dtype))  # (n_queries, dim)
    best_scores = torch.empty((n_queries, 0), dtype=queries.dtype)  # (n_queries, <=k)
    best_indices = torch.empty((n_queries, 0), dtype=torch.int64)  # (n_queries, <=k)
    with torch.inference_mode():
        for start in range(0, n_docs, chunk_size):
            docs = torch.from_numpy(np.ascontiguousarray(doc_emb[start : start + chunk_size], dtype=dtype))  # (c, dim)
            chunk_scores = queries @ docs.T  # (n_queries, c)
            chunk_indices = torch.arange(start, start + docs.shape[0]).expand(n_queries, -1)  # (n_queries, c)
            scores = torch.cat([best_scores, chunk_scores], dim=1)  # (n_queries, kept + c)
            indices = torch.cat([best_indices, chunk_indices], dim=1)  # (n_queries, kept + c)
            best_scores, positions = torch.topk(scores, min(k, scores.shape[1]), dim=1)  # (n_queries, <=k)
            best_indices = torch.gather(indices, 1, positions)  # (n_queries, <=k)
    return _stable_order(best_scores.numpy(), best_indices.numpy())


def faiss_top_k(query_emb: np.ndarray, doc_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Same contract as ``exact_top_k``, with ``faiss.IndexFlatIP`` (exact, float32).

    Raises:
        ImportError: faiss is not installed.
    """
    import faiss  # optional dependency: llmcse[faiss]

    n_queries, n_docs = query_emb.shape[0], doc_emb.shape[0]
    k = min(k, n_docs)
    if k == 0:
        return np.zeros((n_queries, 0), dtype=np.float32), np.zeros((n_queries, 0), dtype=np.int64)
    index = faiss.IndexFlatIP(doc_emb.shape[1])
    index.add(np.ascontiguousarray(doc_emb, dtype=np.float32))  # (n_docs, dim)
    scores, indices = index.search(np.ascontiguousarray(query_emb, dtype=np.float32), k)  # (n_queries, k) each
    return _stable_order(scores, indices.astype(np.int64))


class DenseSearcher:
    """Exact nearest-neighbour search with a bi-encoder.

    Args:
        encoder: Embeds documents (prompt ``document``) and queries (prompt ``query``);
            prompts the model lacks are ignored by the encoder.
        chunk_size: Documents per matmul in ``exact_top_k``.
        use_faiss: Use ``faiss.IndexFlatIP`` when faiss is importable (same results up to
            float rounding); falls back to ``exact_top_k`` with a warning otherwise.
    """

    def __init__(self, encoder: CachedEncoder, chunk_size: int = DEFAULT_CHUNK_SIZE, use_faiss: bool = False):
        self.encoder = encoder
        self.chunk_size = chunk_size
        self.use_faiss = use_faiss

    def _top_k(self, query_emb: np.ndarray, doc_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.use_faiss:
            try:
                return faiss_top_k(query_emb, doc_emb, k)
            except ImportError:
                logger.warning("use_faiss=True but faiss is not installed; using exact torch search instead")
        return exact_top_k(query_emb, doc_emb, k, chunk_size=self.chunk_size)

    def document_vectors(self, corpus: dict[str, Doc], doc_ids: list[str]) -> np.ndarray:
        """(n_docs, dim) vectors the corpus is searched with; subclasses may enrich them (expansion)."""
        return self.encoder.encode([corpus[d].default_text() for d in doc_ids], prompt_name="document")

    def search(self, corpus: dict[str, Doc], queries: dict[str, Query], top_k: int = 100) -> dict[str, dict[str, float]]:
        """Rank the corpus for each query.

        Args:
            corpus: doc id -> document; embedded as ``doc.default_text()`` (title + text).
            queries: query id -> query.
            top_k: Results per query (fewer when the corpus is smaller).

        Returns:
            query id -> {doc id: cosine similarity}, up to ``top_k`` entries each.
        """
        doc_ids = list(corpus)
        query_ids = list(queries)
        started = time.perf_counter()
        doc_emb = self.document_vectors(corpus, doc_ids)  # (n_docs, dim)
        query_emb = self.encoder.encode([queries[q].text for q in query_ids], prompt_name="query")  # (n_queries, dim)
        encoded = time.perf_counter()
        if not doc_ids or not query_ids:
            return {q: {} for q in query_ids}
        scores, indices = self._top_k(query_emb, doc_emb, top_k)  # (n_queries, k) each
        logger.info(
            "dense search: %d queries x %d docs, encoding %.1fs, search %.2fs",
            len(query_ids), len(doc_ids), encoded - started, time.perf_counter() - encoded,
        )
        return {
            query_id: {doc_ids[i]: float(s) for s, i in zip(row_scores, row_indices)}
            for query_id, row_scores, row_indices in zip(query_ids, scores.tolist(), indices.tolist())
        }
