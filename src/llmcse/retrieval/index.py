"""A dense index on disk: ``llmcse index`` builds it, ``llmcse search`` queries it.

Folder layout (plain files, readable without llmcse):
    vectors.npy   (n_docs, dim) float32 unit vectors, row i = docs.jsonl line i
    docs.jsonl    {"_id", "title"} per row
    index.json    model, expansion weights, corpus md5, counts
The corpus is embedded in shards of ``shard_size`` documents, so memory stays flat on big corpora.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from llmcse.errors import LlmcseError
from llmcse.utils.io import atomic_write_json, atomic_write_text, file_md5

logger = logging.getLogger(__name__)


def build_index(model_name: str, corpus_path: str | Path, out: str | Path, *, expansions: str | None = None,
                weights: str = "1,1,1", shard_size: int = 10_000, device: str | None = None, batch_size: int = 64) -> dict:
    from llmcse.data.loaders import load_beir_corpus
    from llmcse.embed.encode import CachedEncoder
    from llmcse.embed.models import load_embedder
    from llmcse.retrieval.expansion import ExpandedDenseSearcher, ExpansionWeights, load_expansions

    corpus = load_beir_corpus(corpus_path)
    encoder = CachedEncoder(load_embedder(model_name, device=device), batch_size=batch_size)
    parsed = ExpansionWeights.parse(weights)
    searcher = ExpandedDenseSearcher(encoder, load_expansions(expansions) if expansions else {}, parsed)
    doc_ids = list(corpus)
    shards = []
    for start in range(0, len(doc_ids), shard_size):
        shard = doc_ids[start:start + shard_size]
        shards.append(searcher.document_vectors(corpus, shard).astype(np.float32))
        encoder.clear()  # the cache would otherwise grow with the corpus
    vectors = np.concatenate(shards) if shards else np.zeros((0, encoder.dim), dtype=np.float32)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "vectors.npy", vectors)
    atomic_write_text(out / "docs.jsonl", "".join(json.dumps({"_id": d, "title": corpus[d].title or corpus[d].text[:80]},
                                                             ensure_ascii=False) + "\n" for d in doc_ids))
    meta = {"model": model_name, "corpus": str(corpus_path), "corpus_md5": file_md5(corpus_path), "documents": len(doc_ids),
            "dim": int(vectors.shape[1]), "expansions": expansions, "weights": parsed.label() if expansions else None}
    atomic_write_json(out / "index.json", meta)
    return meta


def search_index(index_dir: str | Path, queries: list[str], k: int = 10, device: str | None = None) -> list[list[dict]]:
    """Top ``k`` hits per query: ``{"rank", "_id", "title", "score"}``."""
    from llmcse.embed.encode import CachedEncoder
    from llmcse.embed.models import load_embedder
    from llmcse.retrieval.dense import exact_top_k

    index_dir = Path(index_dir)
    if not (index_dir / "index.json").exists():
        raise LlmcseError(f"{index_dir} is not an llmcse index (no index.json); build one with llmcse index")
    meta = json.loads((index_dir / "index.json").read_text(encoding="utf-8"))
    vectors = np.load(index_dir / "vectors.npy")
    docs = [json.loads(line) for line in (index_dir / "docs.jsonl").read_text(encoding="utf-8").splitlines()]
    encoder = CachedEncoder(load_embedder(meta["model"], device=device))
    query_emb = encoder.encode(queries, prompt_name="query")
    scores, indices = exact_top_k(query_emb.astype(np.float32), vectors, k)
    return [[{"rank": r + 1, "_id": docs[i]["_id"], "title": docs[i]["title"], "score": round(float(s), 4)}
             for r, (s, i) in enumerate(zip(row_s, row_i))] for row_s, row_i in zip(scores.tolist(), indices.tolist())]
