"""``filter-expansions``: drop meta-phrase keywords and keep synthetic queries that retrieve their own
document (``run_round_trip_filter``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmcse.config import Range
from llmcse.eval import report as reports
from llmcse.stages.base import Flag, Stage, StageResult, opt
from llmcse.stages.eval import EMBEDDER_DTYPES


@dataclass
class FilterExpansionsConfig:
    corpus: str = opt("corpus.jsonl", "BEIR corpus.jsonl the expansions belong to")
    input: str = opt("expansions.jsonl", "expansions from llmcse expand")
    out: str = opt("expansions.rt.jsonl", "filtered expansions (report: <out>.report.json)")
    model: str = opt("all-MiniLM-L6-v2", "the base retriever that must rank a query's own document high")
    top_k: int = opt(20, "the source document must rank in this many (0: no round trip)")
    keyword_check: bool = opt(True, "drop meta phrases such as 'the document contains keywords:' and function "
                                    "words from the keywords, as llmcse expand does while generating")
    device: str | None = opt(None, "cuda, mps or cpu (default: auto)")
    batch_size: int = opt(64, "texts per forward pass")
    dtype: str | None = opt(None, "retriever dtype (default float32; bfloat16 ~2x faster on CPUs with bf16)")


@dataclass
class FilterExpansionsResult(StageResult):
    out: Path
    kept_queries: int
    queries: int


def run(cfg: FilterExpansionsConfig) -> FilterExpansionsResult:
    from llmcse.synth.expansion_filter import run_round_trip_filter

    report = run_round_trip_filter(cfg.corpus, cfg.input, cfg.out, model=cfg.model, top_k=cfg.top_k, device=cfg.device,
                                   batch_size=cfg.batch_size, dtype=cfg.dtype, keyword_check=cfg.keyword_check)
    return FilterExpansionsResult(report, Path(cfg.out), report.get("kept", 0), report.get("queries", 0))


def summary(cfg: FilterExpansionsConfig, result: FilterExpansionsResult) -> str:
    report, lines = result.summary, []
    if kw := report["keyword_check"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(kw["rejected_by_reason"].items())) or "none"
        lines.append(f"kept {kw['kept']} of {kw['keywords']} keywords (rejected: {reasons}); "
                     f"{kw['documents_left_without_keywords']} documents lost all")
    if cfg.top_k > 0:
        lines.append(f"kept {report['kept']} of {report['queries']} synthetic queries ({report['kept_fraction']}) whose "
                     f"document {cfg.model} ranks in the top {cfg.top_k}; {report['documents_left_without_queries']} "
                     "documents lost all")
    lines.append(f"filtered expansions: {Path(cfg.out)}")
    return "\n".join(lines)


STAGE = Stage(
    name="filter-expansions", help="drop meta-phrase keywords, and keep synthetic queries that retrieve their own "
                                   "document (round trip)",
    config=FilterExpansionsConfig, run=run, inputs=("corpus", "input"), outputs=("out",), summary=summary,
    report=reports.filter_expansions_section,
    rules={"top_k": Range(0), "batch_size": Range(1), "dtype": EMBEDDER_DTYPES},
    flags={"corpus": Flag(required=True), "input": Flag(names=("--in",), required=True), "out": Flag(required=True)},
    epilog="example:\n  llmcse filter-expansions --corpus ../shared/data/beir/arguana/corpus.jsonl "
           "--in runs/arguana.exp.jsonl --out runs/arguana.exp.rt.jsonl --top-k 20",
)
