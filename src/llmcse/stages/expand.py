"""``expand``: an LLM writes synthetic queries and keywords for each document of a corpus (``run_expand``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmcse.config import Range
from llmcse.eval import report as reports
from llmcse.stages.base import (LLM_FLAGS, LLM_RULES, Flag, LLMOptions, Stage, StageResult, library_config,
                                load_backend, opt)
from llmcse.stages.flags import add_worker_flags
from llmcse.synth.expand import ExpandConfig


@dataclass
class ExpandStageConfig(LLMOptions, ExpandConfig):
    """``ExpandConfig`` (what is generated) plus how the LLM back end runs and which share this process takes."""

    shard: str | None = opt(None, "be worker K of N (machines sharing the output folder); a run without it folds "
                                  "the shards into the output")


@dataclass
class ExpandResult(StageResult):
    out: Path
    documents: int  # expanded in all (this worker's documents this run, with a shard)


def run(cfg: ExpandStageConfig) -> ExpandResult:
    from llmcse.synth.expand import run_expand
    from llmcse.utils.shards import parse_shard

    s = run_expand(library_config(cfg, ExpandConfig), llm=load_backend(cfg), shard=parse_shard(cfg.shard))
    return ExpandResult(s, Path(cfg.out), s["this_run"]["documents"] if cfg.shard else s["documents"])


def check(cfg: ExpandStageConfig) -> None:
    from llmcse.utils.shards import parse_shard

    parse_shard(cfg.shard)


def summary(cfg: ExpandStageConfig, result: ExpandResult) -> str:
    s = result.summary
    run_ = s["this_run"]
    if cfg.shard:
        return (f"worker {cfg.shard}: {run_['documents']} documents expanded in {run_['seconds']} s; run without "
                f"--shard when all workers are done to fold their shards into {cfg.out}")
    lines = [f"{s['documents']} documents expanded ({s['with_all_queries']} with all {cfg.queries} queries, "
             f"{s['without_queries']} with none; mean {s['mean_queries']} queries, {s['mean_keywords']} keywords; "
             f"{s['truncated_documents']} truncated); this run: {run_['documents']} documents in {run_['seconds']} s"]
    if s["rejections_by_reason"]:
        lines.append("rejected by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(s["rejections_by_reason"].items())))
    lines.append(f"expansions: {cfg.out}")
    return "\n".join(lines)


def cli_extras(parser) -> None:
    add_worker_flags(parser, "N Ray actors on this machine (same as --executor ray --actors N; needs llmcse[ray])",
                     "be worker K of N (machines sharing the output folder); a run without --shard folds the "
                     "shards into --out")


def from_args(args, values: dict) -> None:
    if args.shard:
        values["shard"] = args.shard


STAGE = Stage(
    name="expand", help="an LLM writes synthetic queries and keywords for each document of a BEIR corpus",
    config=ExpandStageConfig, run=run, inputs=("corpus",), outputs=("out",), summary=summary,
    report=reports.expand_section, check=check, cli_extras=cli_extras, from_args=from_args, executor=True,
    rules={**{k: Range(1) for k in ("max_doc_tokens", "max_new_tokens", "keyword_max_new_tokens", "max_attempts",
                                    "chunk_size", "n", "shard_size")},
           **{k: Range(0) for k in ("queries", "keywords", "temperature", "max_retries")},
           "request_timeout": Range(0, low_open=True), "top_p": Range(0, 1, low_open=True), **LLM_RULES},
    flags={**LLM_FLAGS,
           "corpus": Flag(required=True, help="BEIR corpus.jsonl"),
           "out": Flag(required=True, help="expansions JSONL ({_id, queries, keywords} + provenance)"),
           "llm": Flag(help="hf:<path-or-id> (local), openai:<base-url>#<model> (server), fake: (tests)"),
           "prompts": Flag(help="template: shipped name or .toml (copy src/llmcse/synth/templates/expand.toml)"),
           "max_doc_tokens": Flag(help="documents are truncated to this many tokens"),
           "max_new_tokens": Flag(help="token budget of one query"),
           "keyword_max_new_tokens": Flag(help="token budget of the keyword list"),
           "n": Flag(help="first N documents only"),
           "tokenizer": Flag(help="tokenizer for truncation (default: the hf back end's own)"),
           "request_timeout": Flag(metavar="SECONDS", help="openai: seconds per request attempt"),
           "max_retries": Flag(help="openai: further attempts after a timeout, connection error, 429/5xx or a "
                                    "malformed answer; then the run stops"),
           "shard": Flag(skip=True)},
    epilog="example:\n  llmcse expand --corpus ../shared/data/beir/arguana/corpus.jsonl --n 100 "
           "--out runs/arguana.exp.jsonl\n  llmcse eval --model all-MiniLM-L6-v2 --tasks arguana "
           "--expansions runs/arguana.exp.jsonl --expansion-weights 1,0.5,0.5\n"
           "Resumable: rerun the same command after an interruption.",
)
