"""BM25 baseline on bm25s (Lù, 2024), the lexical reference point of BEIR tables.

Tokenisation is bm25s's: lower-cased ``\\w\\w+`` tokens, English stopwords removed and,
when PyStemmer is installed, Snowball English stemming (close to Elasticsearch's English
analyzer, which BEIR's BM25 used). Scoring is bm25s's Lucene variant with its defaults
(k1=1.5, b=0.75).

Documents that share no term with a query score 0 and are left out of its results, as a
Lucene/Elasticsearch match query leaves them out, instead of being ranked by tie-breaking.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from llmcse.data.records import Doc, Query

logger = logging.getLogger(__name__)


def english_stemmer():
    """PyStemmer's Snowball English stemmer, or None (with a warning) when it is not installed."""
    try:
        import Stemmer
    except ImportError:
        logger.warning(
            "PyStemmer is not installed: BM25 runs without stemming and scores lower than "
            "BEIR's stemmed BM25 (pip install 'llmcse[bm25]')"
        )
        return None
    return Stemmer.Stemmer("english")


class BM25Searcher:
    """Okapi BM25 over ``doc.default_text()`` (title + text).

    Args:
        k1: Term-frequency saturation.
        b: Document-length normalisation.
        method: bm25s scoring variant (``lucene``, ``robertson``, ``atire``, ``bm25l``, ``bm25+``).
        stopwords: bm25s stopword setting (``"en"``, a list, or None).
        stem: Stem with PyStemmer when it is importable.
    """

    def __init__(
        self,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stopwords: str | list[str] | None = "en",
        stem: bool = True,
    ):
        self.k1 = k1
        self.b = b
        self.method = method
        self.stopwords = stopwords
        self.stemmer = english_stemmer() if stem else None

    def _tokenize(self, texts: list[str], return_ids: bool):
        import bm25s

        return bm25s.tokenize(
            texts, stopwords=self.stopwords or [], stemmer=self.stemmer, return_ids=return_ids, show_progress=False
        )

    def search(self, corpus: dict[str, Doc], queries: dict[str, Query], top_k: int = 100) -> dict[str, dict[str, float]]:
        """Rank the corpus for each query.

        Args:
            corpus: doc id -> document.
            queries: query id -> query.
            top_k: Results per query; fewer when the corpus is smaller or fewer documents
                share a term with the query.

        Returns:
            query id -> {doc id: BM25 score > 0}.
        """
        import bm25s

        started = time.perf_counter()
        doc_ids = list(corpus)
        query_ids = list(queries)
        run: dict[str, dict[str, float]] = {q: {} for q in query_ids}
        if not doc_ids or not query_ids:
            return run
        corpus_tokens = self._tokenize([corpus[d].default_text() for d in doc_ids], return_ids=True)
        if not corpus_tokens.vocab:  # no document has a single indexable token
            logger.warning("BM25: the corpus has no indexable tokens; every query gets no results")
            return run
        retriever = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        retriever.index(corpus_tokens, show_progress=False)
        query_tokens = self._tokenize([queries[q].text for q in query_ids], return_ids=False)  # list of token lists
        k = min(top_k, len(doc_ids))  # bm25s refuses k > number of documents
        # retrieve returns (documents, scores); without a corpus argument the documents are row indices.
        indices, scores = retriever.retrieve(query_tokens, k=k, show_progress=False, n_threads=0)  # (n_queries, k) each
        indices, scores = np.asarray(indices), np.asarray(scores)
        for row, query_id in enumerate(query_ids):
            run[query_id] = {doc_ids[i]: float(s) for i, s in zip(indices[row].tolist(), scores[row].tolist()) if s > 0}
        logger.info("BM25 search: %d queries x %d docs in %.1fs", len(query_ids), len(doc_ids), time.perf_counter() - started)
        return run
