"""``train``: contrastive training recipes on the sentence-transformers Trainer (``run_training``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmcse.config import Range
from llmcse.eval import report as reports
from llmcse.stages.base import Flag, Stage, StageResult, library_config, opt
from llmcse.train.recipes import TrainConfig

DATA_DIR_HELP = "benchmark data folder (default: $LLMCSE_DATA, else ../shared/data)"


@dataclass
class TrainStageConfig(TrainConfig):
    """``TrainConfig`` plus where the dev split for model selection lives."""

    data_dir: str | None = opt(None, DATA_DIR_HELP)


@dataclass
class TrainResult(StageResult):
    out: Path  # a plain sentence-transformers folder: SentenceTransformer(str(out))
    dev_spearman_before: float
    dev_spearman_after: float


def run(cfg: TrainStageConfig) -> TrainResult:
    from llmcse.train.run import run_training

    s = run_training(library_config(cfg, TrainConfig), data_dir=cfg.data_dir)
    return TrainResult(s, Path(cfg.out), s["dev_spearman_before"], s["dev_spearman_after"])


def resolve(cfg: TrainStageConfig, explicit: set[str]) -> TrainStageConfig:
    """The recipe's deviations (unsup-simcse: lr 3e-5, ...) for every setting the user left alone."""
    from llmcse.train.run import apply_recipe_defaults, check_config

    cfg = apply_recipe_defaults(cfg, explicit)
    check_config(cfg)
    return cfg


def summary(cfg: TrainStageConfig, result: TrainResult) -> str:
    from llmcse.train.run import summary_line

    return f"{summary_line(result.summary)}\nmodel: {cfg.out} (loads with SentenceTransformer({cfg.out!r}))"


def _recipes() -> tuple[str, ...]:
    from llmcse.train.recipes import RECIPES

    return tuple(RECIPES)


STAGE = Stage(
    name="train", help="contrastive training recipes on the sentence-transformers Trainer",
    config=TrainStageConfig, run=run, inputs=("data",), output_dirs={"out": ()}, summary=summary,
    report=reports.train_section, resolve=resolve, set_example="max_steps=100",
    cli_checks=False,  # train.run.check_config checks every value (its messages are the ones users know)
    rules={**{k: Range(1) for k in ("batch_size", "gradient_accumulation", "max_seq_length", "eval_steps",
                                    "logging_steps", "eval_max_pairs", "max_examples", "lora_alpha")},
           **{k: Range(0) for k in ("keep_checkpoints", "lora_r", "beta")},
           **{k: Range(0, low_open=True) for k in ("epochs", "lr", "temperature")},
           "max_steps": Range(-1), "warmup_ratio": Range(0, 1), "lora_dropout": Range(0, 1, high_open=True),
           "false_negative_threshold": Range(-1, 1), "false_negative_reference": ("precomputed", "frozen", "self"),
           "lora_export": ("merged", "adapter"), "dtype": ("float32", "bfloat16", "float16", "auto")},
    flags={"recipe": Flag(required=True, choices=_recipes, help="the data kind, loss and defaults to train with"),
           "data": Flag(required=True, help="training data file"),
           "base": Flag(help="model to start from"), "out": Flag(required=True, help="output model folder")},
    epilog="examples:\n  llmcse train --recipe sup-simcse --data ../shared/data/nli/triplets.tsv "
           "--out runs/sup\n  llmcse train --recipe ngcse --data runs/sts3.kept.jsonl --out runs/ngcse "
           "--set max_steps=200 --set lr=3e-5\nrecipes: unsup-simcse (sentences .txt), sup-simcse and "
           "synth-nli and multicsr (triplets .tsv/.jsonl), ngcse (sts3 .jsonl)",
)
