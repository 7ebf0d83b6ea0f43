"""``llmcse run RECIPE.toml``: seed sentences -> generate -> filter -> train -> eval (or, for
retrieval recipes, documents -> expand -> filter-expansions -> sweep), in one run folder.

Every stage reads and writes files in the run folder:

    generate           generated.jsonl (+ .rejected.jsonl, .summary.json)
    filter             kept.jsonl (+ .dropped.jsonl, .scores.jsonl, .report.json)
    train              model/ (a plain sentence-transformers folder)
    eval               eval/base/results.json, eval/trained/results.json, before_after.md
    expand             expansions.jsonl (+ .summary.json): synthetic queries and keywords per document
    filter-expansions  expansions.rt.jsonl (+ .report.json): round-trip filtered
    sweep              sweep/sweep.json, sweep.md: plain vs expanded retrieval, weights chosen on held-out queries

``[run] stages`` picks a subset in this order (e.g. ``["train", "eval"]`` trains on ``[train] data``,
which may start with ``{data_dir}``); by default a recipe with an ``[expand]`` or ``[sweep]`` section
runs the retrieval stages, any other the sentence stages.

A stage is skipped when its stamp (``.stages/<stage>.json``) says it finished with the same
config hash and the same input files (md5) and its outputs still exist. A stage interrupted
half-way is resumed when its config is unchanged (generation and filtering continue where they
stopped) and started afresh, its partial outputs removed, when the config changed. Changing one
value therefore reruns that stage and the ones after it, nothing before.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from llmcse.config import load_recipe, parse_override
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


SECTIONS = {"run": RunSection, "generate": GenerateConfig, "filter": FilterConfig, "train": TrainConfig,
            "eval": EvalSection, "expand": ExpandConfig, "filter_expansions": FilterExpansionsSection,
            "sweep": SweepSection}
SENTENCE_STAGES = ("generate", "filter", "train", "eval")
RETRIEVAL_STAGES = ("expand", "filter-expansions", "sweep")
STAGES = SENTENCE_STAGES + RETRIEVAL_STAGES


def load_pipeline(recipe: str | Path, overrides: list[str] = ()) -> tuple[dict[str, Any], set[str]]:
    """The recipe's sections, and which [train] keys the user set (recipe defaults fill the rest)."""
    config = load_recipe(recipe, SECTIONS, overrides)
    raw = tomllib.loads(Path(recipe).read_text(encoding="utf-8"))
    train_keys = set(raw.get("train", {})) | {parse_override(o)[1] for o in overrides if parse_override(o)[0] == "train"}
    config["run"] = dataclasses.replace(config["run"], stages=selected_stages(config["run"].stages, set(raw)))
    return config, train_keys


def selected_stages(stages: list[str] | str | None, sections: set[str]) -> list[str]:
    """The stages to run, in pipeline order; checked."""
    if stages is None:
        return list(RETRIEVAL_STAGES if sections & {"expand", "sweep", "filter_expansions"} else SENTENCE_STAGES)
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
    return {**config, "expand": expand, "sweep": sweep}


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
    from llmcse.retrieval.sweep import run_sweep

    expand, fe, sweep = config["expand"], config["filter_expansions"], config["sweep"]
    filtered = str(run_dir / "expansions.rt.jsonl")
    sets = {"raw": expand.out, **({"filtered": filtered} if "filter-expansions" in config["run"].stages else {})}
    sweep_dir = run_dir / "sweep"
    return [
        Stage("expand", expand, [expand.corpus], [expand.out], lambda resume: run_expand(expand)),  # resumes by itself
        Stage("filter-expansions", {"filter_expansions": dataclasses.asdict(fe)}, [expand.corpus, expand.out], [filtered],
              lambda resume: run_round_trip_filter(expand.corpus, expand.out, filtered, model=fe.model, top_k=fe.top_k,
                                                   batch_size=fe.batch_size, dtype=fe.dtype, keyword_check=fe.keyword_check)),
        Stage("sweep", {"sweep": dataclasses.asdict(sweep), "sets": sorted(sets)}, list(sets.values()),
              [str(sweep_dir / "sweep.json")],
              lambda resume: run_sweep(sweep.model, sweep.task, sets, sweep.weights, sweep_dir, data_dir=data_dir,
                                       tune_fraction=sweep.tune_fraction, dtype=sweep.dtype, bm25=sweep.bm25)),
    ]


def stage_hash(stage: Stage) -> str:
    cfg = dataclasses.asdict(stage.config) if dataclasses.is_dataclass(stage.config) else stage.config
    cfg = {k: v for k, v in cfg.items() if k != "resume"}  # how a stage is restarted is not what it computes
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


def _clean(stage: Stage) -> None:
    """Remove a stage's outputs and their side files (a fresh start after a config change)."""
    for output in stage.outputs:
        path = Path(output)
        if path.is_dir():
            shutil.rmtree(path)
        for side in path.parent.glob(path.stem + ".*"):
            if side.is_file():
                side.unlink()


def run_pipeline(recipe: str | Path, run_dir: str | Path, overrides: list[str] = (), data_dir: str | None = None,
                 dry_run: bool = False) -> dict:
    config, train_keys = load_pipeline(recipe, overrides)
    run_dir = Path(run_dir)
    data_dir = data_dir or config["run"].data_dir
    config["run"] = dataclasses.replace(config["run"], data_dir=data_dir)
    config = wire(config, train_keys, run_dir)
    all_stages = stages(config, run_dir, data_dir)
    steps = plan(run_dir, all_stages)
    if dry_run:
        return {"plan": [(s.name, action, why) for s, action, why in steps]}
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = {name: dataclasses.asdict(section) for name, section in config.items()}
    atomic_write_json(run_dir / "config.json", {"recipe": str(recipe), "overrides": list(overrides), "config": resolved,
                                                "config_hash": config_hash(resolved)})
    results = {}
    for stage, action, why in steps:
        if action == "skip":
            logger.info("stage %s: skipped (%s)", stage.name, why)
            continue
        logger.info("stage %s: %s (%s)", stage.name, action, why)
        if action == "run":
            _clean(stage)
        current = stage_hash(stage)  # inputs exist now: the previous stage has run
        atomic_write_json(_stamp_path(run_dir, stage.name), {"hash": current, "finished": False})
        results[stage.name] = stage.run(action == "resume")
        atomic_write_json(_stamp_path(run_dir, stage.name), {"hash": current, "finished": True})
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
