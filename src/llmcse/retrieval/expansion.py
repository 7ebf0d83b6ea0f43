"""Documents indexed with their synthetic queries and keywords (arXiv 2409.16497).

A document's vector is a weighted average of its own embedding and the mean embeddings of the
texts an LLM wrote about it, renormalised:

    v(d) = normalize(w_doc * e(d) + w_q * mean_i e(q_i) + w_k * mean_j e(k_j))

(a Rao-Blackwellized estimate: the synthetic queries sample what users would ask about d).
A document without queries (or keywords) drops that term and keeps the others' weights.
``mode="mean"`` is the plain mean over all of the document's texts, itself included.
Expansions are JSONL records ``{"_id", "queries": [...], "keywords": [...]}`` as ``llmcse
expand`` writes them (read with ``data.loaders.load_expansions``; cleaned by ``synth.expansion_filter``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from llmcse.data.records import Doc
from llmcse.errors import LlmcseError
from llmcse.retrieval.dense import DenseSearcher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpansionWeights:
    doc: float = 1.0
    queries: float = 1.0
    keywords: float = 1.0
    mode: str = "weighted"  # weighted | mean

    @classmethod
    def parse(cls, text: str) -> ExpansionWeights:
        """``"mean"`` or ``"w_doc,w_q,w_k"`` (e.g. ``"1,0.5,0.5"``)."""
        if text.strip() == "mean":
            return cls(mode="mean")
        try:
            doc, queries, keywords = (float(x) for x in text.split(","))
        except ValueError:
            raise LlmcseError(f"expansion weights {text!r}: give 'mean' or three numbers 'w_doc,w_q,w_k'") from None
        if min(doc, queries, keywords) < 0 or doc + queries + keywords == 0:
            raise LlmcseError(f"expansion weights {text!r}: need non-negative weights, not all zero")
        return cls(doc, queries, keywords)

    def label(self) -> str:
        return "mean" if self.mode == "mean" else f"{self.doc:g},{self.queries:g},{self.keywords:g}"


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def combine(doc: np.ndarray, queries: list[np.ndarray], keywords: list[np.ndarray], weights: ExpansionWeights) -> np.ndarray:
    """Expanded document vectors.

    Args:
        doc: (n_docs, dim) document embeddings.
        queries: per document a (n_queries_i, dim) array, possibly with 0 rows.
        keywords: per document a (n_keywords_i, dim) array, possibly with 0 rows.

    Returns:
        (n_docs, dim) unit vectors.
    """
    doc, out = _unit(doc), np.empty_like(doc)
    for i in range(len(doc)):
        q, k = _unit(queries[i]), _unit(keywords[i])
        if weights.mode == "mean":
            out[i] = np.concatenate([doc[i:i + 1], q, k]).mean(axis=0)
            continue
        total = weights.doc * doc[i]
        if len(q):
            total = total + weights.queries * q.mean(axis=0)
        if len(k):
            total = total + weights.keywords * k.mean(axis=0)
        out[i] = total
    return _unit(out)


class ExpandedDenseSearcher(DenseSearcher):
    """``DenseSearcher`` whose document vectors include the documents' synthetic texts."""

    def __init__(self, encoder, expansions: dict[str, dict], weights: ExpansionWeights, **kwargs):
        super().__init__(encoder, **kwargs)
        self.expansions = expansions
        self.weights = weights

    def document_vectors(self, corpus: dict[str, Doc], doc_ids: list[str]) -> np.ndarray:
        doc_emb = super().document_vectors(corpus, doc_ids)
        synthetic = [self.expansions.get(d, {"queries": [], "keywords": []}) for d in doc_ids]
        covered = sum(1 for d in doc_ids if d in self.expansions)
        logger.info("expansions for %d of %d documents (weights %s)", covered, len(doc_ids), self.weights.label())
        texts = list(dict.fromkeys(t for s in synthetic for t in s["queries"] + s["keywords"]))
        # synthetic queries are queries: embed them as the model embeds queries
        vectors = dict(zip(texts, self.encoder.encode(texts, prompt_name="query"))) if texts else {}
        dim = doc_emb.shape[1]

        def stack(items: list[str]) -> np.ndarray:
            return np.stack([vectors[t] for t in items]) if items else np.zeros((0, dim), dtype=doc_emb.dtype)

        return combine(doc_emb, [stack(s["queries"]) for s in synthetic], [stack(s["keywords"]) for s in synthetic],
                       self.weights)
