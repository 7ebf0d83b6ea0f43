"""``tune-generator``: LoRA fine-tuning of a causal LM on (prompt, completion) pairs (``tune_generator``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmcse.config import Range
from llmcse.eval import report as reports
from llmcse.stages.base import Flag, Stage, StageResult
from llmcse.train.tune_generator import TuneConfig


@dataclass
class TuneResult(StageResult):
    out: Path  # a merged transformers folder: --llm hf:<out>
    steps: int


def run(cfg: TuneConfig) -> TuneResult:
    from llmcse.train.tune_generator import tune_generator

    report = tune_generator(cfg)
    return TuneResult(report, Path(cfg.out), report["steps"])


def summary(cfg: TuneConfig, result: TuneResult) -> str:
    r = result.summary
    resumed = f" (resumed at step {r['steps'] - r['steps_this_run']})" if r["resumed_from"] else ""
    return (f"tuned {cfg.base} on {r['examples']} pairs ({r['dropped_too_long']} over {cfg.max_length} tokens left out): "
            f"{r['steps']} steps{resumed}, loss {r['first_loss']:.3f} -> {r['final_loss']:.3f}; this run "
            f"{r['steps_this_run']} steps in {r['seconds_this_run']} s, {r['tokens_seen']} tokens seen in all\n"
            f"model: {cfg.out} (use --llm hf:{cfg.out}); report: {Path(cfg.out) / 'tune_generator.json'}")


STAGE = Stage(
    name="tune-generator", help="LoRA fine-tuning of a causal LM on (prompt, completion) pairs (self-instruct); saves "
                                "a merged folder for --llm hf:DIR",
    config=TuneConfig, run=run, inputs=("data",), output_dirs={"out": ()}, summary=summary,
    report=reports.round1_section,
    cli_checks=False, library_checks_files=True,  # its own messages name the flag ("give --epochs > 0 ...")
    rules={**{k: Range(1) for k in ("lora_r", "batch_size", "gradient_accumulation", "max_length", "logging_steps",
                                    "save_steps", "lora_alpha")},
           **{k: Range(0) for k in ("epochs", "keep_checkpoints")},
           "max_steps": Range(-1), "lr": Range(0, low_open=True), "warmup_ratio": Range(0, 1),
           "lora_dropout": Range(0, 1, high_open=True), "dtype": ("float32", "bfloat16", "float16")},
    flags={"data": Flag(help="JSONL (prompt, completion) pairs, e.g. from llmcse self-instruct-pairs"),
           "out": Flag(help="output folder (merged model + tokenizer, tune_generator.json); checkpoints go to "
                             "<out>.checkpoints/ and are deleted at the end (--keep-checkpoints 0 keeps them)"),
           "max_steps": Flag(help="> 0: train this many steps in all (overrides --epochs)"),
           "max_length": Flag(help="pairs over this many tokens are left out (counted)"),
           "dtype": Flag(help="the frozen base's dtype (adapters train in float32; the merged model is saved in "
                              "float32)"),
           "save_steps": Flag(help="checkpoint every N steps (the resume points)"),
           "device": Flag(help="cuda or cpu (default: cuda if available)")},
    epilog="examples:\n  llmcse tune-generator --data runs/pairs.jsonl --out runs/gen-r1 --epochs 1\n"
           "  llmcse expand --llm hf:runs/gen-r1 --corpus corpus.jsonl --out runs/exp-r1.jsonl\n"
           "data: JSONL {\"prompt\": str or [chat messages], \"completion\": str}; loss on the "
           "completion only.\nResumable: rerun the same command after a stop (with --keep-checkpoints 0, a larger "
           "--max-steps trains on after the end too).",
)
