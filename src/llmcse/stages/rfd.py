"""``rfd``: Relative Fitting Difficulty (NGCSE), train vs eval geometry across checkpoints (``eval.rfd``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmcse.config import Range
from llmcse.errors import LlmcseError
from llmcse.eval import report as reports
from llmcse.stages.base import Flag, Stage, StageResult, opt
from llmcse.stages.eval import DATA_DIR_HELP, EMBEDDER_DTYPES


@dataclass
class RfdConfig:
    data: list[str] = opt(help="training data (.jsonl records, .tsv triplets, .txt sentences); repeatable")
    output_dir: str = opt(help="rfd.json, rfd.md (and rfd.png) go here")
    model_dir: list[str] = opt([], "a training run folder (one per --data, same order)")
    model: str | None = opt(None, "one fixed model: rank the --data sets before training")
    max_pairs: int = opt(1000, "training pairs sampled per data set")
    eval_task: str = opt("stsb:dev", "STS dev split whose pairs scored >= 4 are the eval positives")
    max_eval_sentences: int | None = opt(None, "sample the eval sentences (uniformity) to this many")
    device: str | None = opt(None, "cuda, mps or cpu (default: auto)")
    dtype: str | None = opt(None, "load checkpoints in this dtype (bfloat16: 2-3x faster for LLM embedders on CPU)")
    data_dir: str | None = opt(None, DATA_DIR_HELP)


@dataclass
class RfdResult(StageResult):
    output_dir: Path
    table: str  # rfd.md


def check(cfg: RfdConfig) -> None:
    if bool(cfg.model_dir) == bool(cfg.model):
        raise LlmcseError("give --model-dir (one per --data: training runs) or --model (rank data sets), not both")
    if cfg.model_dir and len(cfg.model_dir) != len(cfg.data):
        raise LlmcseError(f"--model-dir given {len(cfg.model_dir)} times, --data {len(cfg.data)} times: "
                          "pair each training run with its data")


def run(cfg: RfdConfig) -> RfdResult:
    from llmcse.data.tasks import sts_dev_file
    from llmcse.eval import rfd
    from llmcse.utils.io import atomic_write_json, atomic_write_text

    stsb_dev = sts_dev_file(cfg.eval_task, cfg.data_dir, "RFD")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.model_dir:
        results = [rfd.rfd_over_checkpoints(m, d, stsb_dev, max_pairs=cfg.max_pairs, device=cfg.device,
                                            dtype=cfg.dtype, max_eval_sentences=cfg.max_eval_sentences)
                   for m, d in zip(cfg.model_dir, cfg.data)]
        summary = {"runs": results}
        atomic_write_json(out / "rfd.json", summary)
        rfd.plot(results, out / "rfd.png")
        rows = [(Path(r["data"]).name, Path(r["model_dir"]).name, str(len(r["checkpoints"])),
                 f"{r['rfd_alignment']:.4f}", f"{r['rfd_uniformity']:.4f}") for r in results]
        header = ("data", "run", "checkpoints", "RFD alignment", "RFD uniformity")
    else:
        summary = rfd.rank_datasets(cfg.model, cfg.data, stsb_dev, max_pairs=cfg.max_pairs, device=cfg.device)
        atomic_write_json(out / "rfd.json", summary)
        rows = [(Path(r["data"]).name, "before training", "-", f"{r['rfd_alignment']:.4f}", f"{r['rfd_uniformity']:.4f}")
                for r in summary["datasets"]]
        header = ("data", "model state", "checkpoints", "RFD alignment", "RFD uniformity")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
    atomic_write_text(out / "rfd.md", "\n".join(lines) + "\n")
    return RfdResult(summary, out, "\n".join(lines))


def summary(cfg: RfdConfig, result: RfdResult) -> str:
    plot = f"   plot: {result.output_dir / 'rfd.png'}" if cfg.model_dir else ""
    return f"{result.table}\nresults: {result.output_dir / 'rfd.json'}{plot}"


def cli_extras(parser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model-dir", action="append", dest="model_dirs",
                        help="a training run folder (one per --data, same order)")
    target.add_argument("--model", dest="fixed_model", help="one fixed model: rank the --data sets before training")


def from_args(args, values: dict) -> None:
    if args.model_dirs:
        values["model_dir"] = args.model_dirs
    if args.fixed_model:
        values["model"] = args.fixed_model


STAGE = Stage(
    name="rfd", help="Relative Fitting Difficulty (NGCSE): train vs eval geometry across checkpoints",
    config=RfdConfig, run=run, inputs=("data", "model_dir"), output_dirs={"output_dir": ("rfd.json", "rfd.md", "rfd.png")},
    summary=summary, report=reports.rfd_section, check=check, cli_extras=cli_extras, from_args=from_args,
    rules={"max_pairs": Range(1), "max_eval_sentences": Range(1), "dtype": EMBEDDER_DTYPES},
    flags={"data": Flag(required=True), "model_dir": Flag(skip=True), "model": Flag(skip=True)},
    epilog="examples:\n  llmcse rfd --data runs/sts3.kept.jsonl --model-dir runs/ngcse --output-dir runs/rfd\n"
           "  llmcse rfd --model all-MiniLM-L6-v2 --data a.jsonl --data b.tsv --output-dir runs/rank"
           "   (before training: rank data sets)\n"
           "Train with --set keep_checkpoints=0 so every checkpoint stays for the trajectory.",
)
