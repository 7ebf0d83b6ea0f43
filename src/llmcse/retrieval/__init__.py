"""First-stage retrieval over BEIR corpora: exact dense search and a BM25 baseline.

Every searcher has the same ``search(corpus, queries, top_k)`` method and returns a run,
``{query_id: {doc_id: score}}``, the shape pytrec_eval and BEIR use.
"""

from __future__ import annotations

from typing import Protocol

from llmcse.data.records import Doc, Query
from llmcse.retrieval.bm25 import BM25Searcher
from llmcse.retrieval.dense import DenseSearcher, exact_top_k, faiss_top_k

Run = dict[str, dict[str, float]]


class Searcher(Protocol):
    """Anything that ranks corpus documents for queries."""

    def search(self, corpus: dict[str, Doc], queries: dict[str, Query], top_k: int = 100) -> Run:
        """Return up to ``top_k`` (doc id, score) pairs per query id."""
        ...


__all__ = ["BM25Searcher", "DenseSearcher", "Run", "Searcher", "exact_top_k", "faiss_top_k"]
