"""``search``: query an index built by ``llmcse index`` (``search_index``)."""

from __future__ import annotations

from dataclasses import dataclass

from llmcse.config import Range
from llmcse.stages.base import Flag, Stage, StageResult, opt


@dataclass
class SearchConfig:
    index: str = opt(help="index folder")
    query: list[str] = opt(help="one or more queries")
    k: int = opt(10, "hits per query")
    device: str | None = opt(None, "cuda, mps or cpu (default: auto)")


@dataclass
class SearchResult(StageResult):
    hits: list[list[dict]]  # per query: {"rank", "_id", "title", "score"}, best first


def run(cfg: SearchConfig) -> SearchResult:
    from llmcse.retrieval.index import search_index

    hits = search_index(cfg.index, cfg.query, k=cfg.k, device=cfg.device)
    return SearchResult({"queries": cfg.query, "hits": hits}, hits)


def summary(cfg: SearchConfig, result: SearchResult) -> str:
    lines = []
    for query, hits in zip(cfg.query, result.hits):
        lines.append(f"query: {query}")
        lines += [f"  {hit['rank']:>3}. {hit['score']:.4f}  {hit['_id']}  {hit['title']}" for hit in hits]
    return "\n".join(lines)


STAGE = Stage(
    name="search", help="query an index built by llmcse index",
    config=SearchConfig, run=run, summary=summary,  # search_index checks its folder: it can tell a build killed mid-swap
    rules={"k": Range(1)},
    flags={"index": Flag(names=("index",)), "query": Flag(names=("query",), nargs="+"), "k": Flag(names=("-k",))},
)
