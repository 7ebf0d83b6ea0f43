"""``index``: embed a BEIR corpus (optionally with its expansions) into a search index folder (``build_index``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmcse.config import Range
from llmcse.stages.base import Flag, Stage, StageResult, opt
from llmcse.stages.flags import add_worker_flags


@dataclass
class IndexConfig:
    corpus: str = opt(help="BEIR corpus.jsonl")
    out: str = opt(help="index folder (vectors.npy, docs.jsonl, index.json)")
    model: str = opt("all-MiniLM-L6-v2", "the embedder")
    expansions: str | None = opt(None, "synthetic queries/keywords per document (llmcse expand)")
    expansion_weights: str = opt("1,1,1", "w_doc,w_queries,w_keywords or 'mean'")
    shard_size: int = opt(10_000, "documents embedded per shard (resumable unit)")
    shard: str | None = opt(None, "be worker K of N (e.g. on N machines sharing the output folder); a run without "
                                  "it assembles the index")
    device: str | None = opt(None, "cuda, mps or cpu (default: auto)")
    batch_size: int = opt(64, "texts per forward pass")


@dataclass
class IndexResult(StageResult):
    out: Path
    complete: bool  # False for a worker (--shard): a run without it assembles the index
    documents: int | None


def run(cfg: IndexConfig) -> IndexResult:
    from llmcse.retrieval.index import build_index
    from llmcse.utils.shards import parse_shard

    meta = build_index(cfg.model, cfg.corpus, cfg.out, expansions=cfg.expansions, weights=cfg.expansion_weights,
                       shard_size=cfg.shard_size, device=cfg.device, batch_size=cfg.batch_size,
                       shard=parse_shard(cfg.shard))
    return IndexResult(meta, Path(cfg.out), bool(meta["complete"]), meta.get("documents"))


def check(cfg: IndexConfig) -> None:
    from llmcse.retrieval.index import check_index_folder
    from llmcse.utils.shards import parse_shard

    parse_shard(cfg.shard)
    check_index_folder(cfg.out)  # before anything is embedded


def summary(cfg: IndexConfig, result: IndexResult) -> str:
    meta = result.summary
    if not meta["complete"]:
        return (f"worker {cfg.shard}: done; {meta['shards_done']} of {meta['shards']} shards finished. "
                f"Run without --shard when all workers are done to assemble {cfg.out}")
    extra = f" with expansions (weights {meta['weights']})" if meta["expansions"] else ""
    return f"indexed {meta['documents']} documents ({meta['dim']}-dim, {meta['model']}){extra}: {cfg.out}"


def cli_extras(parser) -> None:
    add_worker_flags(parser, "N Ray actors on this machine (same as --executor ray --actors N; needs llmcse[ray])",
                     "be worker K of N (e.g. on N machines sharing --out); a run without --shard assembles the index")


def from_args(args, values: dict) -> None:
    if args.shard:
        values["shard"] = args.shard


STAGE = Stage(
    name="index", help="embed a BEIR corpus (optionally with expansions) into a search index folder",
    config=IndexConfig, run=run, inputs=("corpus", "expansions"),
    output_dirs={"out": ("vectors.npy", "docs.jsonl", "index.json")},  # retrieval.index.INDEX_FILES
    summary=summary, check=check, cli_extras=cli_extras, from_args=from_args, executor=True,
    rules={"shard_size": Range(1), "batch_size": Range(1)}, flags={"shard": Flag(skip=True)},
    epilog="example:\n  llmcse index --model all-MiniLM-L6-v2 --corpus corpus.jsonl --expansions exp.jsonl "
           "--out runs/idx\n  llmcse index --model all-MiniLM-L6-v2 --corpus corpus.jsonl --out runs/idx --executor ray --actors 4"
           "\n  llmcse search runs/idx \"how do volcanoes form\"",
)
