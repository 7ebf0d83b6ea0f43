"""``llmcse run RECIPE.toml``: seed sentences -> generate -> filter -> train -> eval (or, for
retrieval recipes, documents -> expand -> filter-expansions -> sweep), in one run folder.

A recipe section holds one stage's settings: the fields of that stage's config dataclass
(``llmcse.stages``), the same names as the stage command's flags and ``--set`` keys, with the same
defaults and checks. ``[generate.llm]`` (also ``[filter.llm]``, ``[expand.llm]``) sets the LLM back end:
``spec``, ``batch_size``, ``dtype``, ``concurrency``, ``request_timeout``, ``max_retries`` (``llm =
"hf:..."`` in the section still sets the spec). The files a stage reads and writes are the run's
(``STEPS``); a recipe that sets one of them is refused.

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

import argparse
import dataclasses
import datetime as dt
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from llmcse.config import check_values, load_recipe, value_sources
from llmcse.errors import LlmcseError
from llmcse.stages import STAGES
from llmcse.stages.base import LLM_TABLE, Stage
from llmcse.synth.expand import ExpandConfig
from llmcse.synth.filter import FilterConfig
from llmcse.synth.generate import GenerateConfig
from llmcse.train.recipes import TrainConfig
from llmcse.train.tune_generator import TuneConfig
from llmcse.utils.io import atomic_write_json, atomic_write_text, config_hash, file_md5

logger = logging.getLogger(__name__)


@dataclass
class RunSection:
    name: str = "run"
    data_dir: str | None = None  # None: --data-dir / $LLMCSE_DATA / ../shared/data
    stages: list[str] | None = None  # None: decided by the recipe's sections (module docstring)
    # where the sharded stages (generate, filter, expand) run: "local" (this process) or "ray" (a pool of
    # `actors` Ray actors, at `ray_address`: auto, host:port, ray://...; None: $RAY_ADDRESS or a new local
    # Ray). Not hashed: the outputs are the single process's, so a run may switch executors and resume.
    executor: str = "local"
    ray_address: str | None = None
    actors: int = 1


@dataclass(frozen=True)
class Step:
    """One step of a run: the registered stage it runs (its settings: that stage's recipe section) and
    the run-folder files it reads and writes.

    ``files``: config field -> path in the run folder. ``outputs``: what must exist for the step to count
    as done (default: its output files / folder). ``side_outputs``: what it writes beside them, by
    suffix of the output's stem, "+" suffixes after its full name, "/" the output's whole folder.
    ``hashed``: the settings its stamp hashes even at their default (the fields it hashed before
    the stage registry, so old run folders keep their stamps); other settings count once set.
    """

    name: str
    stage: str
    files: dict[str, str] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    side_outputs: tuple[str, ...] = ()
    hashed: tuple[str, ...] | type = ()
    wrap: str | None = None  # the stamp hashes {wrap: settings} (as before the registry)
    extra_inputs: tuple[str, ...] = ()  # run-folder files it reads besides its config's inputs


_EXPAND_SIDE = (".summary.json", ".identity.json", "+.runs.jsonl", "+.shards")
_EVAL_HASHED = ("tasks", "batch_size", "dtype", "transfer_max_examples")
_FILTER_EXPANSIONS_HASHED = ("model", "top_k", "batch_size", "dtype", "keyword_check")
STEPS = {s.name: s for s in (
    Step("generate", "generate", {"out": "generated.jsonl"}, side_outputs=(".rejected.jsonl", ".summary.json",
                                                                           ".identity.json", "+.shards"),
         hashed=GenerateConfig),
    Step("filter", "filter", {"input": "generated.jsonl", "out": "kept.jsonl"},
         side_outputs=(".dropped.jsonl", ".scores.jsonl", ".report.json", "+.shards"), hashed=FilterConfig),
    # model.checkpoints/, model.previous/ (train/folders.py)
    Step("train", "train", {"out": "model"}, side_outputs=("+.checkpoints", "+.previous"), hashed=TrainConfig),
    Step("eval", "eval", {"output_dir": "eval"}, outputs=("eval/before_after.md",), side_outputs=("/",),
         hashed=_EVAL_HASHED, wrap="eval", extra_inputs=("model/llmcse_training.json",)),
    Step("expand", "expand", {"out": "expansions.jsonl"}, side_outputs=_EXPAND_SIDE, hashed=ExpandConfig),
    Step("filter-expansions", "filter-expansions", {"input": "expansions.jsonl", "out": "expansions.rt.jsonl"},
         side_outputs=(".report.json",), hashed=_FILTER_EXPANSIONS_HASHED, wrap="filter_expansions"),
    Step("self-instruct-pairs", "self-instruct-pairs", {"expansions": "expansions.jsonl", "kept": "expansions.rt.jsonl",
                                                        "out": "self_instruct.pairs.jsonl"},
         side_outputs=(".report.json",), hashed=("queries", "keywords", "demos", "prompts"), wrap="self_instruct"),
    Step("tune-generator", "tune-generator", {"data": "self_instruct.pairs.jsonl", "out": "generator"},
         outputs=("generator/tune_generator.json",), side_outputs=("/",), hashed=TuneConfig),  # model, checkpoints/
    Step("expand-r1", "expand", {"out": "expansions.r1.jsonl"}, side_outputs=_EXPAND_SIDE, hashed=ExpandConfig,
         extra_inputs=("generator/tune_generator.json",)),
    Step("filter-expansions-r1", "filter-expansions", {"input": "expansions.r1.jsonl", "out": "expansions.r1.rt.jsonl"},
         side_outputs=(".report.json",), hashed=_FILTER_EXPANSIONS_HASHED, wrap="filter_expansions"),
    Step("sweep", "sweep-expansions", {"output_dir": "sweep"}, outputs=("sweep/sweep.json",), side_outputs=("/",),
         hashed=("task", "model", "weights", "tune_fraction", "dtype", "bm25", "multirep"), wrap="sweep"),
)}
SENTENCE_STAGES = ("generate", "filter", "train", "eval")
# round 1 (self-instruct): tune the generator on round 0's kept texts, expand and filter again
SELF_INSTRUCT_STAGES = ("self-instruct-pairs", "tune-generator", "expand-r1", "filter-expansions-r1")
RETRIEVAL_STAGES = ("expand", "filter-expansions", *SELF_INSTRUCT_STAGES, "sweep")
STAGE_ORDER = SENTENCE_STAGES + RETRIEVAL_STAGES

# recipe section -> its stage's config dataclass (a section is a stage's settings)
SECTIONS: dict[str, type] = {"run": RunSection, **{STAGES.get(s.stage).section_name(): STAGES.get(s.stage).config
                                                   for s in STEPS.values()}}
TABLES = {"llm": LLM_TABLE}  # [generate.llm] spec = ... -> generate.llm, batch_size -> generate.batch_size, ...
# fields the run sets (its files, data dir, the evaluated model): a recipe may not; placeholders until wired
WIRED: dict[str, dict[str, Any]] = {}
for _step in STEPS.values():
    _section = STAGES.get(_step.stage).section_name()
    WIRED.setdefault(_section, {}).update({k: "" for k in _step.files})
for _section, _fields in {"filter_expansions": {"corpus": ""}, "self_instruct": {"corpus": ""},
                          "eval": {"model": "", "data_dir": None}, "train": {"data_dir": None},
                          "sweep": {"expansions": {}, "data_dir": None}, "expand": {"shard": None}}.items():
    WIRED[_section].update(_fields)
# where the run's defaults differ from the stage command's, and why
RUN_DEFAULTS = {"eval": {"tasks": "stsb"}}  # the before/after table: STS-B alone (the command's default is sts)
# allowed values beyond the field's type (checked on load: a bad value is one line, not a traceback
# minutes into a run); None values mean "unset" and are not checked
VALUE_RULES = {f"{stage.section_name()}.{k}": rule for _, stage in STAGES.items() if stage.config
               and stage.section_name() in SECTIONS for k, rule in stage.rules.items()}
# how a stage is restarted, reaches its server or finds its data is not what it computes
NOT_HASHED = ("resume", "request_timeout", "max_retries", "concurrency", "data_dir")
# library config fields added since run folders got stamps: hashed once set, so an older stamp stays valid
ADDED_SINCE_STAMPS = {"train": ("loss",), "filter": ("embedder",)}


def load_pipeline(recipe: str | Path, overrides: list[str] = ()) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """The recipe's sections, and per section the keys the user set (the rest keep their defaults)."""
    config = load_recipe(recipe, SECTIONS, overrides, tables=TABLES, wired=WIRED)
    sources = value_sources(recipe, overrides, tables=TABLES)
    keys: dict[str, set[str]] = {name: set() for name in SECTIONS}
    for name in sources:
        section, _, key = name.partition(".")
        keys.setdefault(section, set()).add(key)
    for section, defaults in RUN_DEFAULTS.items():
        config[section] = dataclasses.replace(config[section], **{k: v for k, v in defaults.items()
                                                                   if k not in keys[section]})
    config["run"] = dataclasses.replace(config["run"], stages=selected_stages(config["run"].stages, _sections(recipe)))
    check_values(config, VALUE_RULES, sources)
    check_run_name(config["run"].name, sources.get("run.name", ""))
    config["run"] = _check_executor(config["run"], recipe, sources)
    return config, keys


def _check_executor(run: RunSection, recipe: str | Path, sources: dict[str, str]) -> RunSection:
    """[run] executor / actors / ray_address: a bad value is one line naming the recipe (Ray itself is
    checked when a sharded stage starts, so a recipe without one runs without Ray). ``--executor local``
    (an override) over a recipe made for Ray drops the recipe's Ray settings instead of refusing them."""
    from llmcse.utils.executor import check_executor

    if run.executor == "local" and sources.get("run.executor") == "--set ":
        run = dataclasses.replace(run, **{k: v for k, v in (("actors", 1), ("ray_address", None))
                                          if sources.get(f"run.{k}") != "--set "})
    try:
        check_executor(run.executor, run.actors, run.ray_address, need_ray=False)
    except LlmcseError as e:
        message = str(e).replace("--actors", "actors").replace("--ray-address", "ray_address").replace(
            "--executor ray", 'executor = "ray"').replace("the local executor", 'executor = "local"')
        raise LlmcseError(f"{Path(recipe).name}: [run] {message}") from None
    return run


def _sections(recipe: str | Path) -> set[str]:
    """The sections the recipe file has (which decide the default stages)."""
    import tomllib

    return set(tomllib.loads(Path(recipe).read_text(encoding="utf-8")))


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
    unknown = [s for s in stages if s not in STAGE_ORDER]
    if unknown or not stages:
        raise LlmcseError(f"[run] stages {stages!r}: choose from {', '.join(SENTENCE_STAGES)} (sentence recipes) "
                          f"or {', '.join(RETRIEVAL_STAGES)} (retrieval recipes)")
    if not (set(stages) <= set(SENTENCE_STAGES) or set(stages) <= set(RETRIEVAL_STAGES)):
        raise LlmcseError(f"[run] stages {stages!r} mix sentence and retrieval stages; one recipe does one or the other")
    return [s for s in STAGE_ORDER if s in stages]


def _files(step: str, run_dir: Path) -> dict[str, str]:
    return {name: str(run_dir / rel) for name, rel in STEPS[step].files.items()}


def wire(config: dict[str, Any], keys: dict[str, set[str]], run_dir: Path) -> dict[str, Any]:
    """Each step's stage config, pointed at the run folder: step i's output is step i+1's input."""
    from llmcse.data.paths import resolve_data_dir

    stages_ = config["run"].stages
    data_dir = config["run"].data_dir
    if stages_[0] in RETRIEVAL_STAGES:
        return _wire_retrieval(config, keys, run_dir, stages_)
    seeds = config["generate"].seeds or str(resolve_data_dir(data_dir) / "unlabeled" / "wiki_sentences.txt")
    generate = dataclasses.replace(config["generate"], seeds=seeds, **_files("generate", run_dir))
    filter_ = dataclasses.replace(config["filter"], **_files("filter", run_dir))
    if "filter" in stages_:
        train_data = filter_.out
    elif "generate" in stages_:
        train_data = generate.out
    elif config["train"].data:
        train_data = config["train"].data.replace("{data_dir}", str(resolve_data_dir(data_dir)))
    else:
        raise LlmcseError("a recipe without generate/filter stages needs [train] data = \"...\" "
                          "(e.g. \"{data_dir}/nli/triplets.tsv\")")
    train = dataclasses.replace(config["train"], data=train_data, data_dir=data_dir, **_files("train", run_dir))
    train = STAGES.get("train").resolve(train, keys["train"] | {"data", "out"})  # the recipe's deviations
    eval_ = dataclasses.replace(config["eval"], model=train.base, data_dir=data_dir, **_files("eval", run_dir))
    return {"generate": generate, "filter": filter_, "train": train, "eval": eval_}


def _wire_retrieval(config: dict[str, Any], keys: dict[str, set[str]], run_dir: Path, stages_: list[str]) -> dict:
    from llmcse.data.paths import resolve_data_dir

    data_dir = config["run"].data_dir
    sweep = STAGES.get("sweep").resolve(config["sweep"], keys["sweep"])
    corpus = config["expand"].corpus
    if "corpus" not in keys["expand"]:  # not set: the sweep task's corpus
        corpus = str(resolve_data_dir(data_dir) / "beir" / sweep.task / "corpus.jsonl")
    expand = dataclasses.replace(config["expand"], corpus=corpus, **_files("expand", run_dir))
    filter_expansions = dataclasses.replace(config["filter_expansions"], corpus=corpus,
                                            **_files("filter-expansions", run_dir))
    # each round's sets, when its stage is part of the run; "raw-r1" pairs with "raw" in sweep/rounds.md
    steps = {"expand": expand, "filter-expansions": filter_expansions,
             **_wire_round1(config, keys, expand, filter_expansions, run_dir, stages_)}
    sets = {name: steps[step].out for name, step in (("raw", "expand"), ("filtered", "filter-expansions"),
                                                     ("raw-r1", "expand-r1"), ("filtered-r1", "filter-expansions-r1"))
            if step in stages_ or name == "raw"}
    steps["sweep"] = dataclasses.replace(sweep, expansions=sets, data_dir=data_dir, **_files("sweep", run_dir))
    return steps


def _wire_round1(config: dict[str, Any], keys: dict[str, set[str]], expand, filter_expansions, run_dir: Path,
                 stages_: list[str]) -> dict[str, Any]:
    """Round 1: the generator tuned on round 0's kept texts (run_dir/generator) expands the corpus again."""
    tune = config["tune_generator"]
    base = tune.base if "base" in keys["tune_generator"] else None
    if base is None and expand.llm.startswith("hf:"):
        base = expand.llm[3:]  # the round-0 generator tunes itself, as in the paper
    if base is None and "tune-generator" in stages_:
        raise LlmcseError(f"[tune_generator] base: [expand] llm = {expand.llm!r} is not a local hf: model to tune; "
                          "set [tune_generator] base = \"SmolLM2-135M-Instruct\" (or a model folder)")
    tune = dataclasses.replace(tune, base=base or TuneConfig.base, **_files("tune-generator", run_dir))
    si = config["self_instruct"]
    kept = filter_expansions.out if "filter-expansions" in stages_ else None  # round 1 learns from what round 0 kept
    pairs = dataclasses.replace(si, corpus=expand.corpus, **{**_files("self-instruct-pairs", run_dir), "kept": kept})
    expand_r1 = dataclasses.replace(expand, llm=f"hf:{tune.out}", prompts=si.prompts or expand.prompts,
                                    **_files("expand-r1", run_dir))
    filter_r1 = dataclasses.replace(filter_expansions, **_files("filter-expansions-r1", run_dir))
    return {"self-instruct-pairs": pairs, "tune-generator": tune, "expand-r1": expand_r1,
            "filter-expansions-r1": filter_r1}


@dataclass
class Job:
    """A step ready to run: what its stamp hashes, its input and output paths, and how to run it."""

    name: str
    config: Any
    inputs: list[str]
    outputs: list[str]
    run: Callable[[bool], Any]  # argument: resume an interrupted run


def jobs(steps: dict[str, Any], run_dir: Path, selected: list[str]) -> list[Job]:
    """The selected steps as jobs, in pipeline order."""
    return [_job(name, steps, run_dir) for name in STAGE_ORDER if name in selected]


def _job(name: str, steps: dict[str, Any], run_dir: Path) -> Job:
    step, cfg = STEPS[name], steps[name]
    stage = STAGES.get(step.stage)
    inputs, outputs, folders = stage.files(cfg)
    outputs = [str(run_dir / o) for o in step.outputs] or [str(p) for p in outputs + folders]
    inputs = [p for _, p in inputs] + [str(run_dir / i) for i in step.extra_inputs]
    run: Callable[[bool], Any] = lambda resume: stage.run(cfg)  # noqa: E731 - generation and filtering resume by themselves
    hashed = _settings(cfg, step)
    if name == "train":
        run = lambda resume: stage.run(dataclasses.replace(cfg, resume=resume))  # noqa: E731
    elif name == "eval":
        hashed["base"] = steps["train"].base
        run = lambda resume: evaluate_before_after(steps["train"].base, steps["train"].out, cfg)  # noqa: E731
    elif name == "self-instruct-pairs":  # [self_instruct] prompts is round 1's template; the pairs keep round 0's
        run = lambda resume: stage.run(dataclasses.replace(cfg, prompts=None))  # noqa: E731
    elif name == "sweep":
        hashed["sets"] = sorted(cfg.expansions)
        run = lambda resume: _sweep_rounds(cfg)  # noqa: E731
    return Job(name, hashed, inputs, outputs, run)


def _settings(cfg, step: Step) -> dict[str, Any]:
    """What a step's stamp hashes: ``step.hashed`` always, any other setting once it differs from its
    default; never the run's own files (hashed as inputs) nor ``NOT_HASHED``."""
    always = [f.name for f in dataclasses.fields(step.hashed)] if isinstance(step.hashed, type) else list(step.hashed)
    always = [k for k in always if k not in ADDED_SINCE_STAMPS.get(step.name, ())]
    defaults = STAGES.get(step.stage).defaults()
    wired = set() if isinstance(step.hashed, type) else set(WIRED.get(STAGES.get(step.stage).section_name(), ()))
    settings = dataclasses.asdict(cfg)
    if step.stage == "train":  # defaults changed since old stamps: hashed as they were where the result is the same
        from llmcse.train.run import stamped_settings

        settings.update(stamped_settings(cfg))
    values = {k: v for k, v in settings.items()
              if k not in NOT_HASHED and k not in wired and (k in always or v != defaults.get(k))}
    if step.name == "sweep" and not values.get("multirep"):  # a run from before multirep rows keeps its stamp's hash
        values.pop("multirep", None)
    return {step.wrap: values} if step.wrap else values


def _sweep_rounds(cfg) -> Any:
    """The sweep over every set; with round-1 sets, also sweep/rounds.md: round 1 vs round 0 per row."""
    from llmcse.eval.rounds import compare_rounds, rounds_table

    result = STAGES.get("sweep").run(cfg)
    sets = cfg.expansions
    pairs = {r1: r0 for r1, r0 in (("raw-r1", "raw"), ("filtered-r1", "filtered")) if r1 in sets and r0 in sets}
    comparisons = compare_rounds(result.summary, pairs) if pairs else []
    if comparisons:
        sweep_dir = Path(cfg.output_dir)
        atomic_write_json(sweep_dir / "rounds.json", comparisons)
        atomic_write_text(sweep_dir / "rounds.md", "Round 1 (self-instruct tuned generator) vs round 0 on the same "
                          "report queries, nDCG@10 x100.\n\n" + rounds_table(comparisons))
    return result


def stage_hash(job: Job) -> str:
    inputs = {p: file_md5(p) if Path(p).is_file() else None for p in job.inputs}
    return config_hash({"config": job.config, "inputs": inputs})


def plan(run_dir: Path, all_stages: list[Job]) -> list[tuple[Job, str, str]]:
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


def written_by(stage: Job, run_dir: Path) -> list[str]:
    """Every file or folder the stage may write, relative to the run folder (what its stamp records)."""
    paths = []
    for output in map(Path, stage.outputs):
        paths += [output] + [_side_output(output, suffix) for suffix in STEPS[stage.name].side_outputs]
    rel = [str(p.relative_to(run_dir)) for p in paths if p.is_relative_to(run_dir)]
    return sorted(set(rel))


def _side_output(output: Path, suffix: str) -> Path:
    if suffix == "/":
        return output.parent
    if suffix.startswith("+"):
        return output.with_name(output.name + suffix[1:])
    return output.with_name(output.stem + suffix)


def _record(run_dir: Path, stage: Job, current: str, finished: bool) -> None:
    """The stage's stamp: config hash, whether it finished, and exactly which paths it wrote (_clean
    deletes those and nothing else). Before it runs, everything it may write; after, what exists."""
    written = written_by(stage, run_dir)
    if finished:
        written = [p for p in written if (run_dir / p).exists() or (run_dir / p).is_symlink()]
    atomic_write_json(_stamp_path(run_dir, stage.name), {"hash": current, "finished": finished, "outputs": written})


def _clean(stage: Job, run_dir: Path) -> None:
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
    config, keys = load_pipeline(recipe, overrides)
    run_dir = Path(run_dir)
    data_dir = data_dir or config["run"].data_dir
    config["run"] = dataclasses.replace(config["run"], data_dir=data_dir)
    steps = wire(config, keys, run_dir)
    all_jobs = jobs(steps, run_dir, config["run"].stages)
    planned = plan(run_dir, all_jobs)
    claim_run_dir(run_dir, dry_run=dry_run)  # before anything is written or removed
    if dry_run:
        return {"plan": [(j.name, action, why) for j, action, why in planned]}
    resolved = {name: dataclasses.asdict(section) for name, section in config.items()}
    resolved.update({name.replace("-", "_"): dataclasses.asdict(cfg) for name, cfg in steps.items()})
    from llmcse.llm.base import redact_spec  # an llm URL may carry credentials: never saved

    saved = {name: {**s, "llm": redact_spec(s["llm"])} if s.get("llm") else s for name, s in resolved.items()}
    atomic_write_json(run_dir / "config.json", {"recipe": str(recipe), "overrides": [redact_spec(o) for o in overrides],
                                                "config": saved,
                                                "config_hash": config_hash(resolved)})
    results = {}
    from llmcse.utils.executor import using

    run = config["run"]
    # the sharded stages take their executor from this scope (utils/executor.resolve); the others ignore it
    with using(run.executor, run.ray_address, run.actors, origin='[run] executor = "ray"'):
        for job, action, why in planned:
            if action == "skip":
                logger.info("stage %s: skipped (%s)", job.name, why)
                continue
            logger.info("stage %s: %s (%s)", job.name, action, why)
            if action == "run":
                _clean(job, run_dir)
            current = stage_hash(job)  # inputs exist now: the previous stage has run
            _record(run_dir, job, current, finished=False)
            results[job.name] = job.run(action == "resume")
            _record(run_dir, job, current, finished=True)
    from llmcse.eval.report import build_report

    report_md, report_html = build_report(run_dir, [s.report for _, s in STAGES.items() if s.report])
    return {"plan": [(j.name, action, why) for j, action, why in planned], "results": results,
            "report": [str(report_md), str(report_html)],
            "before_after": (run_dir / "eval" / "before_after.md").read_text(encoding="utf-8")
            if (run_dir / "eval" / "before_after.md").exists() else None,
            "sweep": (run_dir / "sweep" / "sweep.md").read_text(encoding="utf-8")
            if (run_dir / "sweep" / "sweep.md").exists() else None}


@dataclass
class RunResult:
    """One ``llmcse run``: the plan (step, run | resume | skip, why), each step's stage result, the report."""

    run_dir: Path
    plan: list[tuple[str, str, str]]
    results: dict[str, Any] = field(default_factory=dict, repr=False)
    report: list[str] = field(default_factory=list)  # report.md, report.html
    before_after: str | None = None  # sentence recipes: eval/before_after.md
    sweep: str | None = None  # retrieval recipes: sweep/sweep.md


def run_recipe(recipe: str | Path, out: str | Path | None = None, overrides: list[str] = (),
               data_dir: str | None = None, dry_run: bool = False) -> RunResult:
    """``llmcse run``: the recipe in ``out`` (default: runs/<[run] name>); ``overrides``: ``section.key=value``."""
    config, _ = load_pipeline(recipe, overrides)
    run_dir = Path(out or Path("runs") / config["run"].name)
    result = run_pipeline(recipe, run_dir, overrides, data_dir=data_dir, dry_run=dry_run)
    return RunResult(run_dir, result["plan"], result.get("results", {}), result.get("report", []),
                     result.get("before_after"), result.get("sweep"))


def evaluate_before_after(base: str, trained: str, cfg) -> dict:
    """The eval stage on the base and the trained model (``eval/base/``, ``eval/trained/``) and the
    table of both (``eval/before_after.md``)."""
    out = Path(cfg.output_dir)
    stage = STAGES.get("eval")
    results = {label: stage.run(dataclasses.replace(cfg, model=model, output_dir=str(out / label))).summary
               for label, model in (("base", base), ("trained", trained))}
    rows = ["| task | base | trained | change |", "|---|---|---|---|"]
    for task, base_scores in results["base"]["tasks"].items():
        before, after = base_scores["main_score"], results["trained"]["tasks"][task]["main_score"]
        rows.append(f"| {task} | {before:.2f} | {after:.2f} | {after - before:+.2f} |")
    table = "\n".join([f"Base `{base}` vs trained `{trained}`.", "", *rows]) + "\n"
    atomic_write_text(out / "before_after.md", table)
    return {"base": results["base"]["tasks"], "trained": results["trained"]["tasks"]}


# ------------------------------------------------------------------------------------- llmcse run
def executor_overrides(executor: str | None = None, actors: int | None = None,
                       ray_address: str | None = None) -> list[str]:
    """``--executor``/``--actors``/``--ray-address`` of ``llmcse run`` (and the API's keywords) as
    ``run.*`` overrides: one way in, checked like the recipe's own [run] values."""
    given = {"executor": executor, "actors": actors, "ray_address": ray_address}
    return [f"run.{key}={value}" for key, value in given.items() if value is not None]


def cmd_run(args) -> int:
    overrides = [*(args.set or []), *executor_overrides(args.executor, args.actors, args.ray_address)]
    result = run_recipe(args.recipe, out=args.out, overrides=overrides, data_dir=args.data_dir,
                        dry_run=args.dry_run)
    width = max(len(name) for name, _, _ in result.plan)
    print(f"run folder: {result.run_dir}")
    for name, action, why in result.plan:
        print(f"  {name:<{width}}  {action:<6}  {why}")
    if not args.dry_run and (result.before_after or result.sweep):
        print()
        print(result.before_after or result.sweep)
        details = result.run_dir / ("eval" if result.before_after else "sweep")
        print(f"report: {result.report[0]} (and .html)   details: {details}   config: {result.run_dir / 'config.json'}")
    return 0


def add_run(sub):
    ru = sub.add_parser("run", help=RUN_COMMAND.help, formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="example:\n  llmcse run recipes/quickstart.toml\n  llmcse run recipes/quickstart.toml "
                               "--set train.lr=3e-5 --dry-run   (shows which stages rerun)\n"
                               "  llmcse run recipes/retrieval-expansion.toml --set expand.n=500\n"
                               "  llmcse run recipes/quickstart.toml --set generate.llm.batch_size=8\n"
                               "recipes: quickstart, ngcse, multicsr, prompteol-lora, retrieval-expansion,\n"
                               "  retrieval-self-instruct (recipes/*.toml)\n"
                               "Rerun after an interruption: finished stages are skipped, the interrupted one resumes.")
    ru.add_argument("recipe", help="recipe TOML: [run] [generate] [filter] [train] [eval], or [expand] "
                                   "[filter_expansions] [sweep]; a section holds that stage's settings")
    ru.add_argument("--out", help="run folder (default: runs/<run.name>)")
    ru.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a recipe value (repeatable)")
    ru.add_argument("--dry-run", action="store_true", help="show the plan: stages to run, resume or skip, and why")
    ru.add_argument("--data-dir", help="benchmark data folder (default: [run] data_dir, $LLMCSE_DATA, else ../shared/data)")
    from llmcse.utils.executor import add_executor_options

    add_executor_options(ru, recipe=True)
    ru.set_defaults(func=cmd_run)
    return ru


RUN_COMMAND = Stage(name="run", help="a recipe in one resumable run: generate -> filter -> train -> eval (or expand -> "
                                     "sweep)", add_arguments=add_run)
if RUN_COMMAND.name not in STAGES:  # a command built on the stages, so registered from here
    STAGES.register(RUN_COMMAND.name, RUN_COMMAND)
