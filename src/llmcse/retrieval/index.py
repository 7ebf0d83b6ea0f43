"""A dense index on disk: ``llmcse index`` builds it, ``llmcse search`` queries it.

Folder layout (plain files, readable without llmcse):
    vectors.npy   (n_docs, dim) float32 unit vectors, row i = docs.jsonl line i
    docs.jsonl    {"_id", "title"} per row
    index.json    model, expansion weights, corpus md5, counts
    manifest.json, shards/NNNNN.npy   the per-shard work (see llmcse.utils.shards)
The corpus is embedded in shards of ``shard_size`` documents, so memory stays flat on big corpora,
several processes can share the work (``--workers N`` or ``--shard K/N``), and a killed run
continues from its finished shards.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from llmcse.errors import LlmcseError
from llmcse.utils.io import atomic_save_npy, atomic_write_json, atomic_write_text, file_md5

logger = logging.getLogger(__name__)


def build_index(model_name: str, corpus_path: str | Path, out: str | Path, *, expansions: str | None = None,
                weights: str = "1,1,1", shard_size: int = 10_000, device: str | None = None, batch_size: int = 64,
                shard: tuple[int, int] | None = None) -> dict:
    """Embed the corpus shard by shard into ``out/shards/``, then assemble ``vectors.npy``.

    ``shard=(K, N)``: this process is worker K of N and embeds only shards with index % N == K
    (workers on other processes, GPUs or machines sharing ``out`` take the rest); it assembles
    the index only if no shard is left. A rerun skips finished shards.
    """
    from llmcse.data.loaders import load_beir_corpus
    from llmcse.utils.shards import pending, prepare_manifest

    corpus = load_beir_corpus(corpus_path)
    doc_ids = list(corpus)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    identity = {"model": model_name, "corpus_md5": file_md5(corpus_path), "expansions": expansions,
                "expansions_md5": file_md5(expansions) if expansions else None, "weights": weights}
    manifest = prepare_manifest(out, identity, len(doc_ids), shard_size, ".npy")
    todo = pending(out, manifest, shard)
    if todo:
        _embed_shards(model_name, corpus, doc_ids, out, todo, expansions, weights, device, batch_size)
    left = pending(out, manifest, None)
    if left:  # other workers' shards
        logger.info("%d of %d shards done; %d left to other workers", len(manifest["shards"]) - len(left),
                    len(manifest["shards"]), len(left))
        return {"model": model_name, "documents": len(doc_ids), "complete": False,
                "shards_done": len(manifest["shards"]) - len(left), "shards": len(manifest["shards"])}
    return _assemble(out, manifest, corpus, doc_ids, model_name, corpus_path, expansions, weights)


def _embed_shards(model_name, corpus, doc_ids, out: Path, todo: list[dict], expansions, weights, device, batch_size) -> None:
    from llmcse.embed.encode import CachedEncoder, progress_enabled
    from llmcse.embed.models import load_embedder
    from llmcse.retrieval.expansion import ExpandedDenseSearcher, ExpansionWeights, load_expansions

    encoder = CachedEncoder(load_embedder(model_name, device=device), batch_size=batch_size)
    searcher = ExpandedDenseSearcher(encoder, load_expansions(expansions) if expansions else {},
                                     ExpansionWeights.parse(weights))
    from tqdm.auto import tqdm

    for s in tqdm(todo, desc="index shards", unit="shard", disable=not progress_enabled(None)):
        vectors = searcher.document_vectors(corpus, doc_ids[s["start"]:s["end"]]).astype(np.float32)  # (docs, dim)
        encoder.clear()  # the cache would otherwise grow with the corpus
        atomic_save_npy(out / s["file"], vectors)  # a shard file is complete or absent


def _assemble(out: Path, manifest: dict, corpus, doc_ids, model_name, corpus_path, expansions, weights) -> dict:
    from llmcse.retrieval.expansion import ExpansionWeights

    vectors = np.concatenate([np.load(out / s["file"]) for s in manifest["shards"]]) if manifest["shards"] \
        else np.zeros((0, 0), dtype=np.float32)
    atomic_save_npy(out / "vectors.npy", vectors)
    atomic_write_text(out / "docs.jsonl", "".join(json.dumps({"_id": d, "title": corpus[d].title or corpus[d].text[:80]},
                                                             ensure_ascii=False) + "\n" for d in doc_ids))
    meta = {"model": model_name, "corpus": str(corpus_path), "corpus_md5": file_md5(corpus_path), "documents": len(doc_ids),
            "dim": int(vectors.shape[1]) if vectors.size else 0, "expansions": expansions,
            "weights": ExpansionWeights.parse(weights).label() if expansions else None,
            "shards": len(manifest["shards"]), "complete": True}
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
