"""``self-instruct-pairs``: training pairs from an expansion, the prompt that produced each kept query /
keyword list -> that text (``write_expansion_pairs``; round 1 of arXiv 2409.16497)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmcse.config import Range
from llmcse.stages.base import Flag, Stage, StageResult, opt


@dataclass
class SelfInstructConfig:
    corpus: str = opt("corpus.jsonl", "BEIR corpus.jsonl the expansions belong to")
    expansions: str = opt("expansions.jsonl", "the raw llmcse expand output (round 0)")
    kept: str | None = opt(None, "its filtered version (llmcse filter-expansions --out): the completions "
                                 "(default: the raw file's texts)")
    out: str = opt("self_instruct.pairs.jsonl", "pairs JSONL (report: <out stem>.report.json)")
    # in a recipe ([self_instruct] prompts): round 1's expand template; the pairs keep round 0's
    prompts: str | None = opt(None, "template (default: the one the expansion used, from its summary); in a recipe: "
                                    "round 1's expand template (default: [expand] prompts)")
    max_doc_tokens: int | None = opt(None, "document truncation (default: the expansion's)")
    tokenizer: str | None = opt(None, "tokenizer for truncation (default: the expansion's)")
    queries: bool = opt(True, "a pair per kept query")
    keywords: bool = opt(True, "a pair per document's kept keyword list")
    demos: bool = opt(True, "keep the template's in-context demos in the prompts (shorter to train on without)")


@dataclass
class PairsResult(StageResult):
    out: Path
    pairs: int


def run(cfg: SelfInstructConfig) -> PairsResult:
    from llmcse.synth.self_instruct import write_expansion_pairs

    r = write_expansion_pairs(cfg.corpus, cfg.expansions, cfg.kept, cfg.out, prompts=cfg.prompts,
                              max_doc_tokens=cfg.max_doc_tokens, tokenizer=cfg.tokenizer, queries=cfg.queries,
                              keywords=cfg.keywords, demos=cfg.demos)
    return PairsResult(r, Path(cfg.out), r["pairs"])


def summary(cfg: SelfInstructConfig, result: PairsResult) -> str:
    r = result.summary
    return (f"{r['pairs']} training pairs ({r['query_pairs']} queries, {r['keyword_pairs']} keyword lists) from "
            f"{r['documents']} documents, prompts of {r['template']}{'' if r['demos'] else ' without demos'}: {cfg.out}")


STAGE = Stage(
    name="self-instruct-pairs", section="self_instruct",
    help="training pairs from an expansion: the prompt that produced each kept query / keyword list -> that text",
    config=SelfInstructConfig, run=run, inputs=("corpus", "expansions", "kept"), outputs=("out",), summary=summary,
    library_checks_files=True, rules={"max_doc_tokens": Range(1)},
    flags={"corpus": Flag(required=True), "expansions": Flag(required=True), "out": Flag(required=True),
           "queries": Flag(names=("--no-queries",), help="no query pairs"),
           "keywords": Flag(names=("--no-keywords",), help="no keyword pairs"),
           "demos": Flag(names=("--no-demos",), help="leave the template's in-context demos out of the prompts "
                                                     "(shorter to train on)")},
    epilog="example:\n  llmcse self-instruct-pairs --corpus corpus.jsonl --expansions runs/exp.jsonl "
           "--kept runs/exp.rt.jsonl --out runs/pairs.jsonl\nPrompts are rebuilt as llmcse expand "
           "built them (template, truncation from <expansions>.summary.json).",
)
