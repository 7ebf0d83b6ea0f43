"""``generate``: an LLM writes NLI triplets or 3-level STS records from seed sentences (``run_generate``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmcse.config import Range
from llmcse.eval import report as reports
from llmcse.stages.base import LLM_FLAGS, LLM_RULES, Flag, LLMOptions, Stage, StageResult, library_config, load_backend
from llmcse.synth.generate import GenerateConfig


@dataclass
class GenerateStageConfig(LLMOptions, GenerateConfig):
    """``GenerateConfig`` (what is generated) plus how the LLM back end runs."""


@dataclass
class GenerateResult(StageResult):
    out: Path
    kept: int
    rejected: int


def run(cfg: GenerateStageConfig) -> GenerateResult:
    from llmcse.synth.generate import run_generate

    summary = run_generate(library_config(cfg, GenerateConfig), llm=load_backend(cfg))
    return GenerateResult(summary, Path(cfg.out), summary["kept"], summary["rejected"])


def check(cfg: GenerateStageConfig) -> None:
    from llmcse.llm import check_llm_spec

    check_llm_spec(cfg.llm)  # before anything is loaded or written: a bad spec is a one-line error


def summary(cfg: GenerateStageConfig, result: GenerateResult) -> str:
    s, out = result.summary, Path(cfg.out)
    run_ = s["this_run"]
    lines = [f"{s['recipe']}: {s['kept']} kept, {s['rejected']} rejected of {s['seeds_done']} seeds "
             f"(kept fraction {s['kept_fraction']}); this run: {run_['seeds_processed']} seeds in {run_['seconds']} s, "
             f"{run_['completion_tokens']} tokens ({run_['tokens_per_s']} tok/s)"]
    if s["rejected_by_final_reason"]:
        lines.append("rejected seeds by reason: " + _counts(s["rejected_by_final_reason"]))
    if s["field_rejections_by_reason"]:
        lines.append("rejected attempts by reason: " + _counts(s["field_rejections_by_reason"]))
    lines.append(f"records: {cfg.out}   summary: {out.with_name(out.stem + '.summary.json')}")
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def cli_extras(parser) -> None:
    parser.add_argument("--prompts", help="a prompt template .toml (copy src/llmcse/synth/templates/*.toml); "
                                          "same as --recipe PATH")


def from_args(args, values: dict) -> None:
    if args.prompts:
        values["recipe"] = args.prompts


STAGE = Stage(
    name="generate", help="an LLM writes NLI triplets or 3-level STS records from seed sentences",
    config=GenerateStageConfig, run=run, inputs=("seeds",), outputs=("out",), summary=summary, report=reports.generate_section,
    check=check, cli_extras=cli_extras, from_args=from_args, executor=True,
    rules={**{k: Range(1) for k in ("n", "max_new_tokens", "max_attempts", "chunk_size", "max_seed_words")},
           **{k: Range(0) for k in ("temperature", "min_seed_words", "max_retries")},
           "max_length_ratio": Range(0, low_open=True), "request_timeout": Range(0, low_open=True),
           "top_p": Range(0, 1, low_open=True), **LLM_RULES},
    flags={**LLM_FLAGS,
           "recipe": Flag(choices=("nli", "sts3"), help="what to generate (a template .toml: --prompts)"),
           "seeds": Flag(required=True, help=".txt (one per line), .jsonl (text) or .tsv (sentence)"),
           "out": Flag(required=True, help="output JSONL (rejected seeds go to <out>.rejected.jsonl)"),
           "llm": Flag(help="hf:<path-or-id> (local), openai:<base-url>#<model> (server), fake: (tests)"),
           "n": Flag(help="use the first N usable unique seeds"),
           "temperature": Flag(help="0 is greedy"), "top_p": Flag(help="nucleus sampling, in (0, 1]"),
           "seed": Flag(help="sampling seed"), "max_attempts": Flag(help="tries per field before a seed is rejected"),
           "chunk_size": Flag(help="seeds per durable write"),
           "request_timeout": Flag(metavar="SECONDS", help="openai: seconds per request attempt"),
           "max_retries": Flag(help="openai: further attempts after a timeout, connection error, 429/5xx or a "
                                    "malformed answer; then the run stops")},
    epilog="example:\n  llmcse generate --recipe sts3 --seeds ../shared/data/unlabeled/wiki_sentences.txt "
           "--n 200 --out runs/sts3.jsonl\n  llmcse generate --recipe nli --seeds seeds.txt "
           "--llm openai:http://127.0.0.1:8000/v1#smollm2 --out nli.jsonl\n"
           "Resumable: rerun the same command after an interruption.",
)
