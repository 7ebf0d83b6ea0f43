"""``sweep-expansions``: plain vs expanded retrieval, weights chosen on held-out queries (``run_sweep``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from llmcse.config import Range
from llmcse.errors import LlmcseError
from llmcse.eval import report as reports
from llmcse.stages.base import Flag, Stage, StageResult, opt
from llmcse.stages.eval import DATA_DIR_HELP, EMBEDDER_DTYPES


@dataclass
class SweepConfig:
    task: str = opt("arguana", "a BEIR task from llmcse data list (e.g. arguana); [expand] expands its corpus")
    expansions: dict[str, str] = opt({}, "NAME -> expansions file (llmcse run: the run's raw and filtered sets)")
    weights: list[str] = opt(["1,1,0", "1,0,1", "1,1,1", "mean"], "w_doc,w_q,w_k or mean; repeatable")
    tune_fraction: float = opt(0.5, "share of the queries used to choose the setting; the rest is reported")
    output_dir: str = opt("sweep", "sweep.json and sweep.md go here")
    model: str = opt("all-MiniLM-L6-v2", "the retriever")
    bm25: bool = opt(False, "add BM25 as a row, a candidate like the others (needs llmcse[bm25])")
    multirep: list[str] = opt([], "multi-representation rows: a document = its sentences (sent) or passages "
                                  "(pass) [+doc] [+queries: each synthetic query], scored by the max; ':0.3' mixes "
                                  "in the whole-document cosine; repeatable, e.g. --multirep sent "
                                  "--multirep sent+doc+queries")
    device: str | None = opt(None, "cuda, mps or cpu (default: auto)")
    dtype: str | None = opt(None, "default float32; bfloat16 is 2-3x faster on CPUs with bf16")
    data_dir: str | None = opt(None, DATA_DIR_HELP)


@dataclass
class SweepResult(StageResult):
    output_dir: Path
    chosen: str  # the setting chosen on the tune queries


def run(cfg: SweepConfig) -> SweepResult:
    from llmcse.eval.sweep import run_sweep

    result = run_sweep(cfg.model, cfg.task, cfg.expansions, cfg.weights, cfg.output_dir, data_dir=cfg.data_dir,
                       tune_fraction=cfg.tune_fraction, device=cfg.device, dtype=cfg.dtype, bm25=cfg.bm25,
                       multirep=cfg.multirep or None)
    return SweepResult(result, Path(cfg.output_dir), result["chosen"])


def resolve(cfg: SweepConfig, explicit: set[str]) -> SweepConfig:
    """``--set weights="1,1,0;mean"``: a list given as one text, split on ';'."""
    split = {k: [item.strip() for item in getattr(cfg, k).split(";") if item.strip()]
             for k in ("weights", "multirep") if isinstance(getattr(cfg, k), str)}
    return dataclasses.replace(cfg, **split) if split else cfg


def summary(cfg: SweepConfig, result: SweepResult) -> str:
    return ((Path(cfg.output_dir) / "sweep.md").read_text(encoding="utf-8")
            + f"\nchosen on the tune queries (plain and BM25 among the candidates): {result.chosen}; "
              f"results: {Path(cfg.output_dir) / 'sweep.json'}")


def cli_extras(parser) -> None:
    parser.add_argument("--expansions", action="append", required=True, metavar="NAME=FILE", dest="expansion_files",
                        help="a named expansions file; repeatable")


def from_args(args, values: dict) -> None:
    files = {}
    for item in args.expansion_files:
        name, eq, path = item.partition("=")
        if not eq or not name or not path:
            raise LlmcseError(f"--expansions {item!r}: expected NAME=FILE, e.g. raw=runs/exp.jsonl")
        files[name] = path
    values["expansions"] = files


STAGE = Stage(
    name="sweep-expansions", section="sweep", aliases=("sweep",),
    help="plain vs expanded retrieval, weights chosen on held-out queries",
    config=SweepConfig, run=run, inputs=("expansions",), output_dirs={"output_dir": ("sweep.json", "sweep.md")},
    summary=summary, report=reports.sweep_section, resolve=resolve, cli_extras=cli_extras, from_args=from_args,
    rules={"tune_fraction": Range(0, 1, low_open=True, high_open=True), "dtype": EMBEDDER_DTYPES},
    flags={"task": Flag(required=True), "output_dir": Flag(required=True), "expansions": Flag(skip=True),
           "weights": Flag(help="w_doc,w_q,w_k or mean; repeatable"),
           "multirep": Flag(metavar="UNITS[:MIX]")},
    epilog="example:\n  llmcse sweep-expansions --task arguana --expansions raw=runs/exp.jsonl "
           "--expansions filtered=runs/exp.rt.jsonl --weights 1,1,0 --weights 1,1,1 --output-dir runs/sweep\n"
           "The task's queries are split by id hash: weights are chosen on one part, reported on the other.",
)
