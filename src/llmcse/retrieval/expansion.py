"""Documents indexed with their synthetic queries and keywords (arXiv 2409.16497).

A document's vector is a weighted average of its own embedding and the mean embeddings of the
texts an LLM wrote about it, renormalised:

    v(d) = normalize(w_doc * e(d) + w_q * mean_i e(q_i) + w_k * mean_j e(k_j))

(a Rao-Blackwellized estimate: the synthetic queries sample what users would ask about d).
A document without queries (or keywords) drops that term and keeps the others' weights.
``mode="mean"`` is the plain mean over all of the document's texts, itself included.
Expansions are JSONL records ``{"_id", "queries": [...], "keywords": [...]}`` as ``llmcse
expand`` writes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmcse.data.records import Doc
from llmcse.errors import DataFormatError, LlmcseError
from llmcse.retrieval.dense import DenseSearcher
from llmcse.utils.jsonl import read_jsonl

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


def load_expansions(path: str | Path) -> dict[str, dict]:
    """doc id -> {"queries": [...], "keywords": [...]}; a malformed line names file and line."""
    path = Path(path)
    if not path.exists():
        raise LlmcseError(f"expansions file not found: {path}")
    found: dict[str, dict] = {}
    for line_no, record in enumerate(read_jsonl(path), start=1):
        doc_id = record.get("_id")
        if not isinstance(doc_id, str) or not doc_id:
            raise DataFormatError(path, line_no, "expansion record lacks a string '_id'")
        for key in ("queries", "keywords"):
            value = record.get(key, [])
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise DataFormatError(path, line_no, f"{key!r} must be a list of strings")
        found[doc_id] = {"queries": record.get("queries", []), "keywords": record.get("keywords", [])}
    return found


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


def round_trip_filter(encoder, corpus: dict[str, Doc], expansions: dict[str, dict], top_k: int = 20) -> tuple[dict, dict]:
    """Keep a synthetic query only if the base retriever ranks its own document in the top ``top_k``
    of the whole corpus (InPars / Promptagator round-trip consistency). Keywords are kept as is.

    Returns:
        (filtered expansions, report with counts)
    """
    from llmcse.retrieval.dense import exact_top_k

    doc_ids = list(corpus)
    position = {d: i for i, d in enumerate(doc_ids)}
    pairs = [(d, q) for d, e in expansions.items() if d in position for q in e["queries"]]
    unknown = sorted(d for d in expansions if d not in position)
    if unknown:
        logger.warning("%d expanded documents are not in the corpus (e.g. %r): dropped", len(unknown), unknown[0])
    kept: dict[str, dict] = {d: {"queries": [], "keywords": e["keywords"]} for d, e in expansions.items() if d in position}
    if pairs:
        doc_emb = encoder.encode([corpus[d].default_text() for d in doc_ids], prompt_name="document")
        query_emb = encoder.encode([q for _, q in pairs], prompt_name="query")
        _, top = exact_top_k(query_emb, doc_emb, top_k)  # (n_queries, k) document indices
        for (doc_id, query), hits in zip(pairs, top.tolist()):
            if position[doc_id] in hits:
                kept[doc_id]["queries"].append(query)
    n_kept = sum(len(e["queries"]) for e in kept.values())
    report = {"top_k": top_k, "queries": len(pairs), "kept": n_kept, "dropped": len(pairs) - n_kept,
              "kept_fraction": round(n_kept / len(pairs), 4) if pairs else None,
              "documents_left_without_queries": sum(1 for d, e in kept.items() if not e["queries"] and expansions[d]["queries"]),
              "unknown_documents": len(unknown)}
    return kept, report


def check_keywords(corpus: dict[str, Doc], expansions: dict[str, dict]) -> tuple[dict, dict]:
    """Drop keywords that say nothing about their document (``keyword_problem``: meta phrases such as
    "the document contains multiple keywords:", function words): what ``llmcse expand`` now rejects
    as it generates, applied to expansions written before it did. Queries are kept as they are."""
    from collections import Counter

    from llmcse.retrieval.expand import keyword_problem
    from llmcse.synth.prompts import load_template

    instruction = load_template("expand").fields["keywords"].instruction
    rejected: Counter = Counter()
    checked: dict[str, dict] = {}
    for doc_id, e in expansions.items():
        text = corpus[doc_id].default_text() if doc_id in corpus else ""
        keep = []
        for keyword in e["keywords"]:
            problem = keyword_problem(keyword, text, instruction)
            rejected.update([problem] if problem else [])
            keep += [] if problem else [keyword]
        checked[doc_id] = {"queries": e["queries"], "keywords": keep}
    total = sum(len(e["keywords"]) for e in expansions.values())
    report = {"keywords": total, "kept": total - sum(rejected.values()), "rejected_by_reason": dict(rejected),
              "documents_left_without_keywords": sum(1 for d, e in checked.items()
                                                     if not e["keywords"] and expansions[d]["keywords"])}
    return checked, report


def run_round_trip_filter(corpus_path: str | Path, input_path: str | Path, out: str | Path, *, model: str = "all-MiniLM-L6-v2",
                          top_k: int = 20, device: str | None = None, batch_size: int = 64, dtype: str | None = None,
                          keyword_check: bool = True) -> dict:
    """``check_keywords`` then ``round_trip_filter`` (skipped when ``top_k`` is 0), from files: writes the
    kept expansions to ``out`` and ``<out stem>.report.json``.
    ``dtype``: the retriever's, as in ``load_embedder`` (bfloat16 embeds a corpus ~2x faster on CPUs with bf16)."""
    import json

    from llmcse.data.loaders import load_beir_corpus
    from llmcse.embed.encode import CachedEncoder
    from llmcse.embed.models import load_embedder
    from llmcse.utils.io import atomic_write_json, atomic_write_text

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:  # a negative k once meant 0 silently
        raise LlmcseError(f"filter-expansions top_k must be an integer >= 0 (0: no round trip), got {top_k!r}")
    expansions = load_expansions(input_path)
    corpus = load_beir_corpus(corpus_path)
    keyword_report = None
    if keyword_check:
        expansions, keyword_report = check_keywords(corpus, expansions)
    if top_k > 0:
        encoder = CachedEncoder(load_embedder(model, device=device, dtype=dtype), batch_size=batch_size)
        kept, report = round_trip_filter(encoder, corpus, expansions, top_k=top_k)
        report.update({"model": model, "dtype": dtype or "float32"})
    else:
        kept, report = expansions, {"top_k": 0}
    report.update({"input": str(input_path), "keyword_check": keyword_report})
    out = Path(out)
    atomic_write_text(out, "".join(json.dumps({"_id": d, **e}, ensure_ascii=False) + "\n" for d, e in kept.items()))
    atomic_write_json(out.with_name(out.stem + ".report.json"), report)
    return report
