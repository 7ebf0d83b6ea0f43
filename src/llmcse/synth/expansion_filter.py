"""``llmcse filter-expansions``: clean synthetic queries and keywords before they are indexed or trained on.

Two filters on an ``llmcse expand`` file (arXiv 2409.16497 keeps only consistent expansions):

* ``check_keywords``: drops keywords that say nothing about their document, the check ``llmcse
  expand`` now runs as it generates, applied to files written before it did;
* ``round_trip_filter``: keeps a query only if a base retriever ranks its own document in the top
  k of the corpus (InPars / Promptagator round-trip consistency).

Filtering synthetic data belongs with generating it (as ``synth.filter`` does for MultiCSR); the
ranking is ``sentence_transformers.util.semantic_search`` over the embedder's vectors.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from llmcse.data.records import Doc
from llmcse.errors import LlmcseError
from llmcse.synth.expand import keyword_problem
from llmcse.synth.prompts import load_template

logger = logging.getLogger(__name__)


def round_trip_filter(encoder, corpus: dict[str, Doc], expansions: dict[str, dict], top_k: int = 20) -> tuple[dict, dict]:
    """Keep a synthetic query only if the base retriever ranks its own document in the top ``top_k``
    of the whole corpus (InPars / Promptagator round-trip consistency). Keywords are kept as is.

    Returns:
        (filtered expansions, report with counts)
    """
    from sentence_transformers.util import dot_score, semantic_search

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
        # Unit vectors (CachedEncoder normalises), so the dot product is the cosine the retriever ranks by.
        top = semantic_search(query_emb, doc_emb, top_k=top_k, score_function=dot_score)  # per query: k hits
        for (doc_id, query), hits in zip(pairs, top):
            if position[doc_id] in {hit["corpus_id"] for hit in hits}:
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
    from llmcse.data.loaders import load_beir_corpus, load_expansions
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
