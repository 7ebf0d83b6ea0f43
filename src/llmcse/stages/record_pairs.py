"""``record-pairs``: training pairs for ``tune-generator`` from pair records (a generate / filter output,
or human SimCSE triplets): the chat ``generate`` sends for each seed -> each field's text. A generator
tuned on human triplets is issue 23's seeded generator; tuned on its own kept records, its
self-instruct round."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmcse.config import Range
from llmcse.stages.base import Flag, Stage, opt
from llmcse.stages.self_instruct_pairs import PairsResult


@dataclass
class RecordPairsConfig:
    records: str = opt("records.jsonl", "llmcse generate / filter JSONL, or SimCSE triplets .tsv (sent0 sent1 "
                                        "hard_neg: seed, positive, negative)")
    out: str = opt("record.pairs.jsonl", "pairs JSONL (report: <out stem>.report.json, with every record used)")
    recipe: str = opt("nli", "which fields to learn: nli (positive, negative) or sts3 (+ intermediate)")
    prompts: str | None = opt(None, "template .toml (default: the recipe's shipped one, as generate uses it)")
    demos: bool = opt(True, "keep the template's in-context demos in the prompts (as generate sends them)")
    sample: int | None = opt(None, "a seeded random sample of this many records (default: all)")
    seed: int = opt(42, "sampling seed")


def run(cfg: RecordPairsConfig) -> PairsResult:
    from llmcse.synth.self_instruct import write_record_pairs

    r = write_record_pairs(cfg.records, cfg.out, recipe=cfg.recipe, prompts=cfg.prompts, demos=cfg.demos,
                           sample=cfg.sample, seed=cfg.seed)
    return PairsResult(r, Path(cfg.out), r["pairs"])


def summary(cfg: RecordPairsConfig, result: PairsResult) -> str:
    r = result.summary
    return (f"{r['pairs']} training pairs from {r['records']} records ({cfg.recipe}, prompts of {r['template']}"
            f"{'' if r['demos'] else ' without demos'}): {cfg.out}")


STAGE = Stage(
    name="record-pairs", section="record_pairs",
    help="training pairs for tune-generator from generated records or human triplets: generate's prompt -> "
         "each field",
    config=RecordPairsConfig, run=run, inputs=("records",), outputs=("out",), summary=summary,
    library_checks_files=True, rules={"sample": Range(1), "recipe": ("nli", "sts3")},
    flags={"records": Flag(required=True), "out": Flag(required=True),
           "demos": Flag(names=("--no-demos",), help="leave the template's in-context demos out of the prompts")},
    epilog="example:\n  llmcse record-pairs --records ../shared/data/nli/triplets.tsv --sample 500 "
           "--out runs/seeded.pairs.jsonl\n  llmcse tune-generator --data runs/seeded.pairs.jsonl --out runs/gen-seeded",
)
