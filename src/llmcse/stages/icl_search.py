"""``icl-search``: PromptEOL, pick the in-context demo that scores best on an STS dev split (``icl_search``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmcse.stages.base import Flag, Stage, StageResult, opt
from llmcse.stages.eval import DATA_DIR_HELP


@dataclass
class IclSearchConfig:
    base: str = opt(help="causal LM (folder, hub id, bundled name or .gguf)")
    template: str = opt("prompteol", "PromptEOL template")
    candidates: str | None = opt(None, "demo candidates: .tsv sentence<TAB>word or .jsonl (default: the shipped ones)")
    eval_task: str = opt("stsb:dev", "STS dev split used for the choice")
    max_pairs: int | None = opt(None, "sample this many dev pairs (faster)")
    max_seq_length: int | None = opt(None, "token budget of the whole prompt")
    dtype: str | None = opt(None, "default float32")
    device: str = opt("cpu", "cuda, mps or cpu")
    out: str | None = opt(None, "save a PromptEOL folder with the best demo here")
    data_dir: str | None = opt(None, DATA_DIR_HELP)


@dataclass
class IclSearchResult(StageResult):
    rows: list[dict]  # one per setting, best Spearman first: {"demo": (sentence, word) or None, "spearman"}
    out: Path | None


def run(cfg: IclSearchConfig) -> IclSearchResult:
    from llmcse.data.loaders import load_sts
    from llmcse.data.tasks import sts_dev_file
    from llmcse.embed.icl_search import icl_search, load_candidates, sample_pairs
    from llmcse.embed.prompteol import Demo, save_prompteol_model
    from llmcse.utils.io import atomic_write_json

    pairs = sample_pairs(load_sts(sts_dev_file(cfg.eval_task, cfg.data_dir, "demo search")), cfg.max_pairs)
    rows = icl_search(cfg.base, pairs, load_candidates(cfg.candidates), template=cfg.template, dtype=cfg.dtype,
                      max_seq_length=cfg.max_seq_length, device=cfg.device)
    summary = {"eval_task": cfg.eval_task, "pairs": len(pairs), "rows": rows}
    if cfg.out:
        best = rows[0]["demo"]
        save_prompteol_model(cfg.base, cfg.out, cfg.template, icl=0 if best is None else 1,
                             demos=None if best is None else [Demo(*best)], dtype=cfg.dtype,
                             max_seq_length=cfg.max_seq_length, device=cfg.device)
        atomic_write_json(Path(cfg.out) / "icl_search.json", summary)
    return IclSearchResult(summary, rows, Path(cfg.out) if cfg.out else None)


def summary(cfg: IclSearchConfig, result: IclSearchResult) -> str:
    lines = [f"{cfg.eval_task}, {result.summary['pairs']} pairs, template {cfg.template}:"]
    for r in result.rows:
        demo = "(no demo)" if r["demo"] is None else f"{r['demo'][0]!r} -> {r['demo'][1]}"
        lines.append(f"  {r['spearman']:6.2f}  {demo}")
    if cfg.out:
        lines.append(f"saved the best setting to {cfg.out}")
    return "\n".join(lines)


STAGE = Stage(
    name="icl-search", help="PromptEOL: pick the in-context demo that scores best on an STS dev split",
    config=IclSearchConfig, run=run, inputs=("candidates",), output_dirs={"out": ()}, summary=summary,
    rules={"dtype": ("float32", "bfloat16", "float16")}, flags={"base": Flag(required=True)},
    epilog="example:\n  llmcse icl-search --base SmolLM2-135M-Instruct --max-pairs 500 --out runs/pe-icl\n"
           "candidates: the shipped demos, or --candidates FILE (.tsv sentence<TAB>word, .jsonl)",
)
