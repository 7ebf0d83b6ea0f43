"""``llmcse run RECIPE.toml``: seed sentences -> generate -> filter -> train -> eval (or, for
retrieval recipes, documents -> expand -> filter-expansions -> sweep), in one run folder.

Every stage reads and writes files in the run folder:

    generate           generated.jsonl (+ .rejected.jsonl, .summary.json)
    filter             kept.jsonl (+ .dropped.jsonl, .scores.jsonl, .report.json)
    train              model/ (a plain sentence-transformers folder)
    eval               eval/base/results.json, eval/trained/results.json, before_after.md
    expand             expansions.jsonl (+ .summary.json): synthetic queries and keywords per document
    filter-expansions  expansions.rt.jsonl (+ .report.json): round-trip filtered
    self-instruct-pairs   self_instruct.pairs.jsonl (+ .report.json): round 0's kept texts with their prompts
    tune-generator        generator/: the expansion LLM LoRA-tuned on those pairs, merged (hf:<run>/generator)
    expand-r1             expansions.r1.jsonl: round 1, written by the tuned generator
    filter-expansions-r1  expansions.r1.rt.jsonl
    sweep              sweep/sweep.json, sweep.md: plain vs expanded retrieval, weights chosen on held-out queries
                       (+ sweep/rounds.md: round 1 vs round 0 on the same report queries, with round 1)

``[run] stages`` picks a subset in this order (e.g. ``["train", "eval"]`` trains on ``[train] data``,
which may start with ``{data_dir}``); by default a recipe with an ``[expand]`` or ``[sweep]`` section
runs expand, filter-expansions and sweep, one that also has ``[self_instruct]`` or ``[tune_generator]``
every retrieval stage (recipes/retrieval-self-instruct.toml), any other the sentence stages.

A run folder holds ``.llmcse-run.json``, written when llmcse made it; a non-empty folder without it is
refused (a run of an earlier llmcse, with ``.stages/`` and ``config.json``, is adopted), so a run never
deletes files it did not write. Each stage's stamp (``.stages/<stage>.json``) lists the exact paths the
stage wrote; a rerun removes those and nothing else.

A stage is skipped when its stamp says it finished with the same
config hash and the same input files (md5) and its outputs still exist. A stage interrupted
half-way is resumed when its config is unchanged (generation and filtering continue where they
stopped) and started afresh, its partial outputs removed, when the config changed. Changing one
value therefore reruns that stage and the ones after it, nothing before.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from llmcse.config import Range, check_values, load_recipe, parse_override, value_sources
from llmcse.errors import LlmcseError
from llmcse.eval.run import EvalConfig
from llmcse.retrieval.expand import ExpandConfig
from llmcse.synth.filter import FilterConfig
from llmcse.synth.generate import GenerateConfig
from llmcse.train.recipes import TrainConfig
from llmcse.utils.io import atomic_write_json, atomic_write_text, config_hash, file_md5

logger = logging.getLogger(__name__)


@dataclass
class RunSection:
    name: str = "run"
    data_dir: str | None = None  # None: --data-dir / $LLMCSE_DATA / ../shared/data
    stages: list[str] | None = None  # None: decided by the recipe's sections (module docstring)


@dataclass
class EvalSection:
    tasks: str = "stsb"  # what the before/after table shows
    batch_size: int = 64
    dtype: str | None = None
    transfer_max_examples: int | None = None  # transfer probe on a seeded sample of each split (cheaper)


@dataclass
class FilterExpansionsSection:
    model: str = "all-MiniLM-L6-v2"  # the base retriever that must find a query's own document
    top_k: int = 20
    batch_size: int = 64
    dtype: str | None = None  # the retriever's; bfloat16 embeds the corpus ~2x faster on CPUs with bf16
    keyword_check: bool = True  # drop meta-phrase / function-word keywords (as expand does); 0 top_k: no round trip


@dataclass
class SweepSection:
    task: str = "arguana"  # BEIR task in the data dir; its corpus is what [expand] expands
    model: str = "all-MiniLM-L6-v2"
    weights: list[str] = dataclasses.field(default_factory=lambda: ["1,1,0", "1,0,1", "1,1,1", "mean"])
    tune_fraction: float = 0.5  # share of the test queries used to choose the setting; the rest is reported
    dtype: str | None = None
    bm25: bool = False  # BM25 as a reference row on the same query parts (needs llmcse[bm25])
    multirep: list[str] = dataclasses.field(default_factory=list)  # MultiRepSpec texts, e.g. ["sent", "sent+queries"]


@dataclass
class SelfInstructSection:
    """Round 1 of arXiv 2409.16497: training pairs from round 0's kept texts (self-instruct-pairs)."""
    queries: bool = True  # a pair per kept query
    keywords: bool = True  # a pair per document's kept keyword list
    demos: bool = True  # keep the template's demos in the prompts (round 1 then expands with the same template)
    prompts: str | None = None  # round 1's expand template; None: [expand] prompts (give a demo-free one with demos = false)


@dataclass
class TuneGeneratorSection:
    """``llmcse tune-generator`` settings (TuneConfig without data / out, which the run wires)."""
    base: str | None = None  # None: the model of [expand] llm = "hf:NAME" (round 0's generator tunes itself)
    epochs: float = 1.0
    max_steps: int = -1
    lr: float = 2e-4
    lora_r: int = 16
    lora_alpha: int | None = None
    lora_dropout: float = 0.05
    batch_size: int = 8
    gradient_accumulation: int = 1
    max_length: int = 512
    warmup_ratio: float = 0.03
    seed: int = 42
    dtype: str = "float32"
    logging_steps: int = 10
    save_steps: int = 100
    keep_checkpoints: int = 2
    device: str | None = None


SECTIONS = {"run": RunSection, "generate": GenerateConfig, "filter": FilterConfig, "train": TrainConfig,
            "eval": EvalSection, "expand": ExpandConfig, "filter_expansions": FilterExpansionsSection,
            "sweep": SweepSection, "self_instruct": SelfInstructSection, "tune_generator": TuneGeneratorSection}

# allowed values beyond the field's type (checked on load: a bad value is one line, not a traceback
# minutes into a run); None values mean "unset" and are not checked
AT_LEAST_1, AT_LEAST_0, POSITIVE, UNIT, OPEN_UNIT = Range(1), Range(0), Range(0, low_open=True), Range(0, 1), \
    Range(0, 1, low_open=True, high_open=True)
VALUE_RULES: dict[str, Range | tuple] = {
    **{f"{s}.{k}": AT_LEAST_1 for s, keys in {
        "generate": ("n", "max_new_tokens", "max_attempts", "chunk_size", "max_seed_words"),
        "filter": ("chunk_size",),
        "train": ("batch_size", "gradient_accumulation", "max_seq_length", "eval_steps", "logging_steps",
                  "eval_max_pairs", "max_examples", "lora_alpha"),
        "eval": ("batch_size", "transfer_max_examples"),
        "expand": ("max_doc_tokens", "max_new_tokens", "keyword_max_new_tokens", "max_attempts", "chunk_size", "n",
                   "shard_size"),
        "filter_expansions": ("batch_size",),
        "tune_generator": ("lora_r", "batch_size", "gradient_accumulation", "max_length", "logging_steps",
                           "save_steps", "lora_alpha")}.items() for k in keys},
    **{f"{s}.{k}": AT_LEAST_0 for s, keys in {
        "generate": ("temperature", "min_seed_words", "max_retries"), "filter": ("max_positive_overlap", "max_retries"),
        "train": ("keep_checkpoints", "lora_r", "beta"), "expand": ("queries", "keywords", "temperature", "max_retries"),
        "filter_expansions": ("top_k",), "tune_generator": ("epochs", "keep_checkpoints")}.items() for k in keys},
    **{f"{s}.{k}": POSITIVE for s, keys in {
        "generate": ("max_length_ratio", "request_timeout"), "filter": ("request_timeout",),
        "train": ("epochs", "lr", "temperature"), "expand": ("request_timeout",)}.items() for k in keys},
    "generate.top_p": Range(0, 1, low_open=True), "expand.top_p": Range(0, 1, low_open=True),
    "filter.t_pos": Range(0, 5), "filter.t_neg": Range(0, 5), "filter.quantile": UNIT,
    "filter.min_positive_overlap": UNIT, "filter.min_negative_overlap": UNIT, "filter.scoring": ("yesno", "rating"),
    "train.max_steps": Range(-1), "train.warmup_ratio": UNIT, "train.lora_dropout": Range(0, 1, high_open=True),
    "train.false_negative_threshold": Range(-1, 1), "train.false_negative_reference": ("precomputed", "frozen", "self"),
    "train.lora_export": ("merged", "adapter"), "sweep.tune_fraction": OPEN_UNIT,
    "tune_generator.max_steps": Range(-1), "tune_generator.lr": POSITIVE, "tune_generator.warmup_ratio": UNIT,
    "tune_generator.lora_dropout": Range(0, 1, high_open=True),
    "tune_generator.dtype": ("float32", "bfloat16", "float16"),
}

SENTENCE_STAGES = ("generate", "filter", "train", "eval")
# round 1 (self-instruct): tune the generator on round 0's kept texts, expand and filter again
SELF_INSTRUCT_STAGES = ("self-instruct-pairs", "tune-generator", "expand-r1", "filter-expansions-r1")
RETRIEVAL_STAGES = ("expand", "filter-expansions", *SELF_INSTRUCT_STAGES, "sweep")
STAGES = SENTENCE_STAGES + RETRIEVAL_STAGES


def load_pipeline(recipe: str | Path, overrides: list[str] = ()) -> tuple[dict[str, Any], set[str]]:
    """The recipe's sections, and which [train] keys the user set (recipe defaults fill the rest)."""
    config = load_recipe(recipe, SECTIONS, overrides)
    raw = tomllib.loads(Path(recipe).read_text(encoding="utf-8"))
    train_keys = set(raw.get("train", {})) | {parse_override(o)[1] for o in overrides if parse_override(o)[0] == "train"}
    config["run"] = dataclasses.replace(config["run"], stages=selected_stages(config["run"].stages, set(raw)))
    sources = value_sources(recipe, overrides)
    check_values(config, VALUE_RULES, sources)
    check_run_name(config["run"].name, sources.get("run.name", ""))
    return config, train_keys


def selected_stages(stages: list[str] | str | None, sections: set[str]) -> list[str]:
    """The stages to run, in pipeline order; checked."""
    if stages is None:
        if sections & {"self_instruct", "tune_generator"}:  # round 0, round 1, then the sweep over both
            return list(RETRIEVAL_STAGES)
        if sections & {"expand", "sweep", "filter_expansions"}:
            return [s for s in RETRIEVAL_STAGES if s not in SELF_INSTRUCT_STAGES]
        return list(SENTENCE_STAGES)
    if isinstance(stages, str):  # --set run.stages=train,eval
        stages = [s.strip() for s in stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise LlmcseError(f"[run] stages {stages!r}: choose from {', '.join(SENTENCE_STAGES)} (sentence recipes) "
                          f"or {', '.join(RETRIEVAL_STAGES)} (retrieval recipes)")
    if not (set(stages) <= set(SENTENCE_STAGES) or set(stages) <= set(RETRIEVAL_STAGES)):
        raise LlmcseError(f"[run] stages {stages!r} mix sentence and retrieval stages; one recipe does one or the other")
    return [s for s in STAGES if s in stages]


def wire(config: dict[str, Any], train_keys: set[str], run_dir: Path) -> dict[str, Any]:
    """Point every stage at the run folder: stage i's output is stage i+1's input."""
    from llmcse.data.paths import resolve_data_dir
    from llmcse.train.run import apply_recipe_defaults

    stages_ = config["run"].stages
    if stages_[0] in RETRIEVAL_STAGES:
        return _wire_retrieval(config, run_dir, stages_)
    data_dir = lambda: resolve_data_dir(config["run"].data_dir)  # noqa: E731 - only looked up when needed
    seeds = config["generate"].seeds or str(data_dir() / "unlabeled" / "wiki_sentences.txt")
    generate = dataclasses.replace(config["generate"], seeds=seeds, out=str(run_dir / "generated.jsonl"))
    filter_ = dataclasses.replace(config["filter"], input=generate.out, out=str(run_dir / "kept.jsonl"))
    if "filter" in stages_:
        train_data = filter_.out
    elif "generate" in stages_:
        train_data = generate.out
    elif config["train"].data:
        train_data = config["train"].data.replace("{data_dir}", str(data_dir()))
    else:
        raise LlmcseError("a recipe without generate/filter stages needs [train] data = \"...\" "
                          "(e.g. \"{data_dir}/nli/triplets.tsv\")")
    train = dataclasses.replace(config["train"], data=train_data, out=str(run_dir / "model"))
    train = apply_recipe_defaults(train, train_keys | {"data", "out"})
    return {**config, "generate": generate, "filter": filter_, "train": train}


def _wire_retrieval(config: dict[str, Any], run_dir: Path, stages_: list[str]) -> dict[str, Any]:
    from llmcse.data.paths import resolve_data_dir

    sweep = config["sweep"]
    corpus = config["expand"].corpus
    if corpus == ExpandConfig.corpus:  # not set: the sweep task's corpus
        corpus = str(resolve_data_dir(config["run"].data_dir) / "beir" / sweep.task / "corpus.jsonl")
    expand = dataclasses.replace(config["expand"], corpus=corpus, out=str(run_dir / "expansions.jsonl"))
    if isinstance(sweep.weights, str):  # --set sweep.weights="1,1,0;mean"
        sweep = dataclasses.replace(sweep, weights=[w.strip() for w in sweep.weights.split(";") if w.strip()])
    if isinstance(sweep.multirep, str):  # --set sweep.multirep="sent;sent+queries"
        sweep = dataclasses.replace(sweep, multirep=[m.strip() for m in sweep.multirep.split(";") if m.strip()])
    return {**config, "expand": expand, "sweep": sweep, **_wire_round1(config, expand, run_dir, stages_)}


def _wire_round1(config: dict[str, Any], expand: ExpandConfig, run_dir: Path, stages_: list[str]) -> dict[str, Any]:
    """Round 1: the generator tuned on round 0's kept texts (run_dir/generator) expands the corpus again."""
    from llmcse.train.tune_generator import TuneConfig

    section = config["tune_generator"]
    base = section.base
    if base is None and expand.llm.startswith("hf:"):
        base = expand.llm[3:]  # the round-0 generator tunes itself, as in the paper
    if base is None and "tune-generator" in stages_:
        raise LlmcseError(f"[tune_generator] base: [expand] llm = {expand.llm!r} is not a local hf: model to tune; "
                          "set [tune_generator] base = \"SmolLM2-135M-Instruct\" (or a model folder)")
    settings = {k: v for k, v in dataclasses.asdict(section).items() if k != "base"}
    tune = TuneConfig(data=str(run_dir / "self_instruct.pairs.jsonl"), out=str(run_dir / "generator"),
                      base=base or TuneConfig.base, **settings)
    expand_r1 = dataclasses.replace(expand, llm=f"hf:{tune.out}", out=str(run_dir / "expansions.r1.jsonl"),
                                    prompts=config["self_instruct"].prompts or expand.prompts)
    return {"tune_generator": tune, "expand_r1": expand_r1}


@dataclass
class Stage:
    name: str
    config: Any
    inputs: list[str]
    outputs: list[str]
    run: Callable[[bool], Any]  # argument: resume an interrupted run


def stages(config: dict[str, Any], run_dir: Path, data_dir: str | None) -> list[Stage]:
    """The selected stages, wired to the run folder."""
    every = _sentence_stages(config, run_dir, data_dir) if config["run"].stages[0] in SENTENCE_STAGES \
        else _retrieval_stages(config, run_dir, data_dir)
    return [s for s in every if s.name in config["run"].stages]


def _sentence_stages(config: dict[str, Any], run_dir: Path, data_dir: str | None) -> list[Stage]:
    from llmcse.synth.filter import run_filter
    from llmcse.synth.generate import run_generate
    from llmcse.train.run import run_training

    gen, filt, train, ev = config["generate"], config["filter"], config["train"], config["eval"]
    eval_dir = run_dir / "eval"
    return [
        # generation and filtering resume by themselves (append-only outputs)
        Stage("generate", gen, [gen.seeds], [gen.out], lambda resume: run_generate(gen)),
        Stage("filter", filt, [filt.input], [filt.out], lambda resume: run_filter(filt)),
        Stage("train", train, [train.data], [train.out],
              lambda resume: run_training(dataclasses.replace(train, resume=resume), data_dir=data_dir)),
        Stage("eval", {"eval": dataclasses.asdict(ev), "base": train.base}, [str(Path(train.out) / "llmcse_training.json")],
              [str(eval_dir / "before_after.md")], lambda resume: evaluate_before_after(train.base, train.out, ev, eval_dir, data_dir)),
    ]


def _retrieval_stages(config: dict[str, Any], run_dir: Path, data_dir: str | None) -> list[Stage]:
    from llmcse.retrieval.expand import run_expand
    from llmcse.retrieval.expansion import run_round_trip_filter

    expand, fe, sweep = config["expand"], config["filter_expansions"], config["sweep"]
    expand_r1, tune, si = config["expand_r1"], config["tune_generator"], config["self_instruct"]
    selected = config["run"].stages
    filtered, filtered_r1 = str(run_dir / "expansions.rt.jsonl"), str(run_dir / "expansions.r1.rt.jsonl")
    kept = filtered if "filter-expansions" in selected else None  # round 1 learns from what round 0 kept
    # each round's sets, when its stage is part of the run; "raw-r1" pairs with "raw" in sweep/rounds.md
    sets = {name: path for name, path, stage in (("raw", expand.out, "expand"), ("filtered", filtered, "filter-expansions"),
                                                 ("raw-r1", expand_r1.out, "expand-r1"),
                                                 ("filtered-r1", filtered_r1, "filter-expansions-r1"))
            if stage in selected or name == "raw"}
    sweep_dir = run_dir / "sweep"

    def filter_stage(name: str, source: str, out: str) -> Stage:
        return Stage(name, {"filter_expansions": dataclasses.asdict(fe)}, [expand.corpus, source], [out],
                     lambda resume: run_round_trip_filter(expand.corpus, source, out, model=fe.model, top_k=fe.top_k,
                                                          batch_size=fe.batch_size, dtype=fe.dtype,
                                                          keyword_check=fe.keyword_check))

    sweep_config = dataclasses.asdict(sweep)
    if not sweep.multirep:  # a run from before multirep rows existed keeps its stamp's hash
        sweep_config.pop("multirep")
    return [
        Stage("expand", expand, [expand.corpus], [expand.out], lambda resume: run_expand(expand)),  # resumes by itself
        filter_stage("filter-expansions", expand.out, filtered),
        Stage("self-instruct-pairs", {"self_instruct": dataclasses.asdict(si)},
              [expand.corpus, expand.out, *([kept] if kept else [])], [tune.data],
              lambda resume: _self_instruct_pairs(expand, kept, tune.data, si)),
        Stage("tune-generator", tune, [tune.data], [str(Path(tune.out) / "tune_generator.json")],
              lambda resume: _tune_generator(tune)),  # resumes from its checkpoints by itself
        Stage("expand-r1", expand_r1, [expand.corpus, str(Path(tune.out) / "tune_generator.json")], [expand_r1.out],
              lambda resume: run_expand(expand_r1)),
        filter_stage("filter-expansions-r1", expand_r1.out, filtered_r1),
        Stage("sweep", {"sweep": sweep_config, "sets": sorted(sets)}, list(sets.values()),
              [str(sweep_dir / "sweep.json")],
              lambda resume: _sweep_rounds(sweep, sets, sweep_dir, data_dir)),
    ]


def _self_instruct_pairs(expand: ExpandConfig, kept: str | None, out: str, si: SelfInstructSection) -> dict:
    from llmcse.train.tune_generator import write_expansion_pairs

    return write_expansion_pairs(expand.corpus, expand.out, kept, out, queries=si.queries, keywords=si.keywords,
                                 demos=si.demos)


def _tune_generator(tune) -> dict:
    from llmcse.train.tune_generator import tune_generator

    report = tune_generator(tune)
    return {k: report[k] for k in ("examples", "steps", "first_loss", "final_loss", "seconds_this_run")}


def _sweep_rounds(sweep: SweepSection, sets: dict[str, str], sweep_dir: Path, data_dir: str | None) -> dict:
    """The sweep over every set; with round-1 sets, also sweep/rounds.md: round 1 vs round 0 per row."""
    from llmcse.retrieval.rounds import compare_rounds, rounds_table
    from llmcse.retrieval.sweep import run_sweep

    result = run_sweep(sweep.model, sweep.task, sets, sweep.weights, sweep_dir, data_dir=data_dir,
                       tune_fraction=sweep.tune_fraction, dtype=sweep.dtype, bm25=sweep.bm25,
                       multirep=sweep.multirep or None)
    pairs = {r1: r0 for r1, r0 in (("raw-r1", "raw"), ("filtered-r1", "filtered")) if r1 in sets and r0 in sets}
    comparisons = compare_rounds(result, pairs) if pairs else []
    if comparisons:
        atomic_write_json(sweep_dir / "rounds.json", comparisons)
        atomic_write_text(sweep_dir / "rounds.md", "Round 1 (self-instruct tuned generator) vs round 0 on the same "
                          "report queries, nDCG@10 x100.\n\n" + rounds_table(comparisons))
    return result


def stage_hash(stage: Stage) -> str:
    cfg = dataclasses.asdict(stage.config) if dataclasses.is_dataclass(stage.config) else stage.config
    # how a stage is restarted or reaches its server is not what it computes
    cfg = {k: v for k, v in cfg.items() if k not in ("resume", "request_timeout", "max_retries")}
    inputs = {p: file_md5(p) if Path(p).is_file() else None for p in stage.inputs}
    return config_hash({"config": cfg, "inputs": inputs})


def plan(run_dir: Path, all_stages: list[Stage]) -> list[tuple[Stage, str, str]]:
    """(stage, action, why) with action run | resume | skip. Inputs of later stages may not exist
    yet; a stage after one that runs always runs."""
    out, upstream_runs = [], False
    for stage in all_stages:
        stamp = _read_stamp(run_dir, stage.name)
        if upstream_runs:
            out.append((stage, "run", "an earlier stage runs"))
            continue
        current = stage_hash(stage)
        if stamp and stamp.get("finished") and stamp.get("hash") == current and all(Path(p).exists() for p in stage.outputs):
            out.append((stage, "skip", "finished with this config and these inputs"))
            continue
        upstream_runs = True
        if stamp and not stamp.get("finished") and stamp.get("hash") == current:
            out.append((stage, "resume", "interrupted; same config"))
        elif stamp:
            out.append((stage, "run", "config or inputs changed" if stamp.get("hash") != current else "outputs missing"))
        else:
            out.append((stage, "run", "not run yet"))
    return out


def _stamp_path(run_dir: Path, name: str) -> Path:
    return run_dir / ".stages" / f"{name}.json"


def _read_stamp(run_dir: Path, name: str) -> dict | None:
    import json

    path = _stamp_path(run_dir, name)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


# what each stage writes beside its output: by suffix of the output's stem, "+" suffixes after its full
# name; "/" means the stage owns the output's whole folder (eval/, sweep/)
SIDE_OUTPUTS = {"generate": [".rejected.jsonl", ".summary.json", ".identity.json"],
                "filter": [".dropped.jsonl", ".scores.jsonl", ".report.json"],
                "train": ["+.checkpoints", "+.previous"],  # model.checkpoints/, model.previous/ (train/folders.py)
                "expand": [".summary.json", ".identity.json", "+.runs.jsonl", "+.shards"],
                "filter-expansions": [".report.json"], "eval": ["/"], "sweep": ["/"],
                "self-instruct-pairs": [".report.json"], "tune-generator": ["/"],  # generator/ (model, checkpoints/)
                "expand-r1": [".summary.json", ".identity.json", "+.runs.jsonl", "+.shards"],
                "filter-expansions-r1": [".report.json"]}


def written_by(stage: Stage, run_dir: Path) -> list[str]:
    """Every file or folder the stage may write, relative to the run folder (what its stamp records)."""
    paths = []
    for output in map(Path, stage.outputs):
        paths += [output] + [_side_output(output, suffix) for suffix in SIDE_OUTPUTS.get(stage.name, [])]
    rel = [str(p.relative_to(run_dir)) for p in paths if p.is_relative_to(run_dir)]
    return sorted(set(rel))


def _side_output(output: Path, suffix: str) -> Path:
    if suffix == "/":
        return output.parent
    if suffix.startswith("+"):
        return output.with_name(output.name + suffix[1:])
    return output.with_name(output.stem + suffix)


def _record(run_dir: Path, stage: Stage, current: str, finished: bool) -> None:
    """The stage's stamp: config hash, whether it finished, and exactly which paths it wrote (_clean
    deletes those and nothing else). Before it runs, everything it may write; after, what exists."""
    written = written_by(stage, run_dir)
    if finished:
        written = [p for p in written if (run_dir / p).exists() or (run_dir / p).is_symlink()]
    atomic_write_json(_stamp_path(run_dir, stage.name), {"hash": current, "finished": finished, "outputs": written})


def _clean(stage: Stage, run_dir: Path) -> None:
    """Remove what the stage's stamp says it wrote (a fresh start after a config change); nothing
    outside the run folder, and nothing the stamp does not list. A stamp from before stamps listed
    outputs (an older llmcse) falls back to the stage's declared outputs, by exact name."""
    stamp = _read_stamp(run_dir, stage.name)
    if stamp is None:
        return
    listed = stamp.get("outputs")
    for rel in listed if isinstance(listed, list) else written_by(stage, run_dir):
        path = run_dir / rel
        if not _inside(run_dir, path):
            logger.warning("stage %s: not removing %s: outside the run folder %s", stage.name, path, run_dir)
        elif path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


def _inside(run_dir: Path, path: Path) -> bool:
    """``path`` lies strictly inside ``run_dir`` (its own last component not followed, so a symlink
    inside counts as inside and is unlinked, never its target)."""
    where = Path(os.path.abspath(path.parent.resolve() / path.name))
    return run_dir.resolve() in where.parents and path.name not in ("", ".", "..")


MARKER = ".llmcse-run.json"


def check_run_name(name: str, source: str = "") -> None:
    """``[run] name`` names a folder under runs/: a plain name, never a path."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or Path(name).is_absolute():
        raise LlmcseError(f"{source}run.name = {name!r}: expected a plain folder name (no '/', '\\', '..'), e.g. "
                          "\"quickstart\"; use --out for another location")


def claim_run_dir(run_dir: Path, dry_run: bool = False) -> None:
    """Use ``run_dir`` only if llmcse made it (it holds MARKER), it is new or empty, or it is a run
    folder of an older llmcse (.stages/ and config.json; adopted). A stage deletes its earlier
    outputs before rerunning, so a folder holding anything else is refused before anything is touched."""
    if run_dir.exists() and not run_dir.is_dir():
        raise LlmcseError(f"run folder {run_dir} is a file; choose a folder with --out")
    if (run_dir / MARKER).is_file():
        return
    legacy = (run_dir / ".stages").is_dir() and (run_dir / "config.json").is_file()
    if run_dir.is_dir() and any(run_dir.iterdir()) and not legacy:
        where = f"{run_dir} ({run_dir.resolve()})" if str(run_dir) != str(run_dir.resolve()) else str(run_dir)
        raise LlmcseError(f"run folder {where} is not empty and was not made by llmcse run (no {MARKER}); "
                          "a run deletes its stages' old outputs there, so it only uses new, empty or its own "
                          "folders: choose another --out")
    if dry_run:
        return
    if legacy:
        logger.info("%s: a run folder of an earlier llmcse; adopting it", run_dir)
    from llmcse import __version__

    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / MARKER, {"made_by": "llmcse run", "llmcse_version": __version__,
                                         "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})


def run_pipeline(recipe: str | Path, run_dir: str | Path, overrides: list[str] = (), data_dir: str | None = None,
                 dry_run: bool = False) -> dict:
    config, train_keys = load_pipeline(recipe, overrides)
    run_dir = Path(run_dir)
    data_dir = data_dir or config["run"].data_dir
    config["run"] = dataclasses.replace(config["run"], data_dir=data_dir)
    config = wire(config, train_keys, run_dir)
    all_stages = stages(config, run_dir, data_dir)
    steps = plan(run_dir, all_stages)
    claim_run_dir(run_dir, dry_run=dry_run)  # before anything is written or removed
    if dry_run:
        return {"plan": [(s.name, action, why) for s, action, why in steps]}
    resolved = {name: dataclasses.asdict(section) for name, section in config.items()}
    from llmcse.llm.base import redact_spec  # an llm URL may carry credentials: never saved

    saved = {name: {**s, "llm": redact_spec(s["llm"])} if "llm" in s else s for name, s in resolved.items()}
    atomic_write_json(run_dir / "config.json", {"recipe": str(recipe), "overrides": [redact_spec(o) for o in overrides],
                                                "config": saved,
                                                "config_hash": config_hash(resolved)})
    results = {}
    for stage, action, why in steps:
        if action == "skip":
            logger.info("stage %s: skipped (%s)", stage.name, why)
            continue
        logger.info("stage %s: %s (%s)", stage.name, action, why)
        if action == "run":
            _clean(stage, run_dir)
        current = stage_hash(stage)  # inputs exist now: the previous stage has run
        _record(run_dir, stage, current, finished=False)
        results[stage.name] = stage.run(action == "resume")
        _record(run_dir, stage, current, finished=True)
    from llmcse.eval.report import build_report

    report_md, report_html = build_report(run_dir)
    return {"plan": [(s.name, action, why) for s, action, why in steps], "results": results,
            "report": [str(report_md), str(report_html)],
            "before_after": (run_dir / "eval" / "before_after.md").read_text(encoding="utf-8")
            if (run_dir / "eval" / "before_after.md").exists() else None,
            "sweep": (run_dir / "sweep" / "sweep.md").read_text(encoding="utf-8")
            if (run_dir / "sweep" / "sweep.md").exists() else None}


def evaluate_before_after(base: str, trained: str, section: EvalSection, out: Path, data_dir: str | None) -> dict:
    from llmcse.eval.run import run_evaluation

    results = {}
    for label, model in (("base", base), ("trained", trained)):
        cfg = EvalConfig(model=model, tasks=section.tasks, data_dir=data_dir, batch_size=section.batch_size,
                         dtype=section.dtype, transfer_max_examples=section.transfer_max_examples)
        results[label] = run_evaluation(cfg, out / label)
    rows = ["| task | base | trained | change |", "|---|---|---|---|"]
    for task, base_scores in results["base"]["tasks"].items():
        before, after = base_scores["main_score"], results["trained"]["tasks"][task]["main_score"]
        rows.append(f"| {task} | {before:.2f} | {after:.2f} | {after - before:+.2f} |")
    table = "\n".join([f"Base `{base}` vs trained `{trained}`.", "", *rows]) + "\n"
    atomic_write_text(out / "before_after.md", table)
    return {"base": results["base"]["tasks"], "trained": results["trained"]["tasks"]}
