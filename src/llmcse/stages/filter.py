"""``filter``: MultiCSR refinement, cheap checks then LLM 0-5 scoring with thresholds (``run_filter``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from llmcse.config import Range
from llmcse.eval import report as reports
from llmcse.stages.base import LLM_FLAGS, LLM_RULES, Flag, LLMOptions, Stage, StageResult, library_config, load_backend
from llmcse.synth.filter import SCORINGS, FilterConfig


@dataclass
class FilterStageConfig(LLMOptions, FilterConfig):
    """``FilterConfig`` (what is kept) plus how the LLM back end runs."""


@dataclass
class FilterResult(StageResult):
    out: Path
    kept: int
    total: int


def run(cfg: FilterStageConfig) -> FilterResult:
    from llmcse.synth.filter import run_filter

    llm = load_backend(cfg) if cfg.scoring != "cosine" else None  # cosine needs the embedder only
    report = run_filter(library_config(cfg, FilterConfig), llm=llm)
    return FilterResult(report, Path(cfg.out), report["kept"], report["total"])


def summary(cfg: FilterStageConfig, result: FilterResult) -> str:
    from llmcse.synth.filter import report_path

    r = result.summary
    t = r["thresholds"]
    if r["total"] and r["kept_fraction"] < 0.1 and cfg.quantile is None and r["score_stats"]:
        print("note: fixed thresholds dropped over 90%: a small scorer's scores sit in a narrow band "
              f"(positives: {r['score_stats']['positive']['quantiles_10_50_90']} at 10/50/90%); "
              "try --quantile 0.25", file=sys.stderr)
    return "\n".join([
        f"kept {r['kept']} of {r['total']} ({r['kept_fraction']}); dropped by reason: "
        + (", ".join(f"{k} {v}" for k, v in sorted(r["dropped_by_reason"].items())) or "none"),
        f"thresholds ({t['from']}): positive >= {t['t_pos']}, negative <= {t['t_neg']}",
        f"kept: {cfg.out}   report: {report_path(Path(cfg.out))}"])


def cli_extras(parser) -> None:
    parser.add_argument("--no-llm", action="store_true", help="cheap checks only (same as --set llm=none)")


def from_args(args, values: dict) -> None:
    if args.no_llm:
        values["llm"] = None


STAGE = Stage(
    name="filter", help="MultiCSR refinement: cheap checks, then LLM 0-5 scoring with thresholds",
    config=FilterStageConfig, run=run, inputs=("input",), outputs=("out",), summary=summary, report=reports.filter_section,
    cli_extras=cli_extras, from_args=from_args, executor=True,
    rules={"chunk_size": Range(1), "max_positive_overlap": Range(0), "max_retries": Range(0),
           "request_timeout": Range(0, low_open=True), "t_pos": Range(0, 5), "t_neg": Range(0, 5),
           "quantile": Range(0, 1), "min_positive_overlap": Range(0, 1), "min_negative_overlap": Range(0, 1),
           "scoring": SCORINGS, **LLM_RULES},
    flags={**LLM_FLAGS,
           "input": Flag(names=("--in",), required=True, help="records from llmcse generate"),
           "out": Flag(required=True, help="kept records (dropped: <out>.dropped.jsonl, report: <out>.report.json)"),
           "llm": Flag(help="hf:<path-or-id> (local), openai:<base-url>#<model> (server), fake: (tests)"),
           "t_pos": Flag(help="keep positives scored >= this (MultiCSR: 3)"),
           "t_neg": Flag(help="keep negatives scored <= this (MultiCSR: 3)"),
           "scoring": Flag(help="yesno: 5 x P(Yes) to 'same meaning?' (small LLMs); rating: MultiCSR 0-5 rubric; "
                                "cosine: 5 x cosine under --embedder (no LLM); yesno+cosine: mean of their "
                                "percentile ranks (benchmarks/results/judges.md)"),
           "embedder": Flag(metavar="MODEL", help="the embedder for cosine scoring: any --model spec of llmcse "
                                                  "embed, e.g. the model you will train (prompteol:SmolLM2-135M-"
                                                  "Instruct) or all-MiniLM-L6-v2"),
           "quantile": Flag(help="thresholds from this run's scores: t_pos = this quantile of positive scores, "
                                 "t_neg = 1 - this quantile of negative scores (e.g. 0.25; for weak scorers)"),
           "request_timeout": Flag(metavar="SECONDS", help="openai: seconds per request attempt"),
           "max_retries": Flag(help="openai: further attempts after a timeout, connection error, 429/5xx or a "
                                    "malformed answer; then the run stops")},
    epilog="example:\n  llmcse filter --in runs/sts3.jsonl --out runs/sts3.kept.jsonl --quantile 0.25\n"
           "  llmcse filter --in runs/nli.jsonl --out runs/nli.kept.jsonl --quantile 0.25 --scoring yesno+cosine "
           "--embedder prompteol:SmolLM2-135M-Instruct\n"
           "Resumable: scores are kept in <out>.scores.jsonl.",
)
