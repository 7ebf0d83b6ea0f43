"""``eval``: a model on STS, transfer, retrieval and geometry tasks (``run_evaluations``)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from llmcse.config import Range
from llmcse.errors import LlmcseError
from llmcse.eval import report as reports
from llmcse.eval.run import EvalConfig
from llmcse.stages.base import Flag, Stage, StageResult, library_config, opt

EMBEDDER_DTYPES = ("float32", "bfloat16", "float16", "auto")
MODEL_HELP = ("sentence-transformers folder or hub id, raw transformer, .gguf, bundled name (all-MiniLM-L6-v2, "
              "SmolLM2-135M-Instruct), or bm25 (eval only)")
POOLING_HELP = "mean, cls or last: only for raw transformer checkpoints without saved pooling"
DATA_DIR_HELP = "benchmark data folder (default: $LLMCSE_DATA, else ../shared/data)"
# the flags every command that loads an embedder shares (eval, embed)
EMBEDDER_FLAGS = {"model": Flag(required=True, help=MODEL_HELP), "device": Flag(help="cuda, mps or cpu (default: auto)"),
                  "dtype": Flag(help="default float32; bfloat16 is 2-3x faster on CPUs with bf16"),
                  "max_seq_length": Flag(help="truncate inputs to this many tokens")}
EMBEDDER_RULES = {"batch_size": Range(1), "max_seq_length": Range(1), "dtype": EMBEDDER_DTYPES}


@dataclass
class EvalStageConfig(EvalConfig):
    """``EvalConfig`` (what decides the numbers) plus where the results go."""

    output_dir: str | None = opt(None, "write results.json and results.md here")
    format: str = opt("llmcse", "llmcse: results.json and results.md; mteb: also MTEB result files (MTEB's task "
                                "names, splits and 0-1 scores) in OUTPUT_DIR/mteb/ for the tasks MTEB has")
    format: str = opt("llmcse", "llmcse or mteb: mteb also writes MTEB result files for the tasks MTEB has, in "
                                "OUTPUT_DIR/mteb/results/<model>/<revision>/ (see llmcse export-mteb)")


@dataclass
class Results(StageResult):
    """One evaluation: ``scores`` maps each task (and average) to its main score (x100)."""

    model: str
    scores: dict[str, float]
    runs: list[dict] = field(repr=False)  # each pooling's full results.json content (``summary`` is the first)
    output_dir: Path | None = None
    mteb: list = field(default_factory=list, repr=False)  # with format="mteb": an MtebExport per results.json

    def __getitem__(self, task: str) -> float:
        return self.scores[task]


def run(cfg: EvalStageConfig) -> Results:
    from llmcse.eval.mteb import check_format, export_eval_runs
    from llmcse.eval.run import run_evaluations

    check_format(cfg.format, cfg.output_dir)  # before the model loads
    runs = run_evaluations(library_config(cfg, EvalConfig), Path(cfg.output_dir) if cfg.output_dir else None)
    if cfg.format == "mteb":
        export_eval_runs(cfg.output_dir, runs)
    first = runs[0]
    scores = {task: r["main_score"] for task, r in first["tasks"].items()}
    scores.update(first.get("averages", {}))
    return Results(first, first["model"], scores, runs, Path(cfg.output_dir) if cfg.output_dir else None)


def check(cfg: EvalStageConfig) -> None:
    from llmcse.eval.mteb import check_format

    check_format(cfg.format, cfg.output_dir)  # before anything is evaluated
    if cfg.multirep:
        from llmcse.retrieval.multirep import MultiRepSpec

        if MultiRepSpec.parse(cfg.multirep).uses_expansions and not cfg.expansions:
            raise LlmcseError(f"--multirep {cfg.multirep}: synthetic queries as units need --expansions")
        if cfg.model.lower() == "bm25":
            raise LlmcseError("--multirep works with dense models, not bm25")
    if cfg.expansions and cfg.model.lower() == "bm25":
        raise LlmcseError("--expansions works with dense models (documents become averaged vectors), not bm25")


def summary(cfg: EvalStageConfig, result: Results) -> str:
    from llmcse.eval.run import results_table_rows

    parts = []
    for r in result.runs:
        pooling = f", {r['pooling']} pooling" if r["pooling"] else ""
        parts.append(_table(f"{r['model']}  ({r['device']}, {r['dtype']}{pooling}, {r['evaluation_time']:.0f} s)",
                            results_table_rows(r)))
    if cfg.output_dir:
        sub = [r["pooling"] for r in result.runs] if len(result.runs) > 1 else [""]
        parts.append("results: " + ", ".join(str(Path(cfg.output_dir) / s / "results.json") for s in sub))
    if result.mteb:
        from llmcse.eval.mteb import summary as mteb_summary

        parts += [mteb_summary(export, export.model_dir.parents[2]) for export in result.mteb]
    return "\n".join(parts)


def _table(title: str, rows: list[tuple[str, ...]]) -> str:
    """A rich table as text (plain columns where rich is missing)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        return "\n".join([title] + ["  ".join(row) for row in rows])
    table = Table(title=title)
    for name in ("task", "split", "metric", "score"):
        table.add_column(name, justify="right" if name == "score" else "left")
    for row in rows:
        table.add_row(*row)
    console = Console(file=io.StringIO(), width=120)
    console.print(table)
    return console.file.getvalue().rstrip("\n")


STAGE = Stage(
    name="eval", help="evaluate a model on STS, transfer, retrieval and geometry tasks",
    config=EvalStageConfig, run=run, inputs=("expansions",), output_dirs={"output_dir": ("results.json", "results.md")},
    summary=summary, report=reports.eval_section, check=check,
    rules={**EMBEDDER_RULES, "transfer_max_examples": Range(1), "format": ("llmcse", "mteb")},
    flags={**EMBEDDER_FLAGS,
           "pooling": Flag(help=POOLING_HELP + "; eval takes several (mean,last) sharing one forward pass"),
           "tasks": Flag(help="comma-separated tasks or groups; a name that two data folders hold is qualified by "
                              "its folder: sts/NAME, transfer/NAME, beir/NAME"),
           "seed": Flag(help="seed for transfer-task folds"),
           "transfer_max_examples": Flag(metavar="N", help="cap each transfer split at N rows (seeded sample): a "
                                                           "quick probe to compare many models"),
           "expansions": Flag(help="retrieval: index documents with their synthetic queries/keywords (llmcse expand)"),
           "expansion_weights": Flag(help="w_doc,w_queries,w_keywords for the document vector, or 'mean'"),
           "multirep": Flag(metavar="UNITS[:MIX]",
                            help="retrieval: a document = several vectors, scored by the max: sent or pass [+doc] "
                                 "[+queries (needs --expansions)], ':0.3' mixes in the whole-document cosine "
                                 "(e.g. sent+doc+queries)"),
           "data_dir": Flag(help=DATA_DIR_HELP),
           "show_progress_bar": Flag(skip=True), "extra": Flag(skip=True)},
    epilog="""examples:
  llmcse eval --model all-MiniLM-L6-v2 --tasks sts
  llmcse eval --model all-MiniLM-L6-v2 --tasks sts,transfer,arguana --output-dir runs/minilm
  llmcse eval --model SmolLM2-135M-Instruct --pooling last --dtype bfloat16 --tasks stsb
  llmcse eval --model bm25 --tasks arguana
  llmcse eval --model all-MiniLM-L6-v2 --tasks sts --output-dir runs/minilm --format mteb
tasks: sts (STS12-16, STS-B, SICK-R + avg), transfer (MR CR SUBJ MPQA SST2 TREC MRPC + avg),
any task from `llmcse data list`, geometry; `task:split` picks a split (stsb:dev).""",
)
