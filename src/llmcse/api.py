"""The Python API: every stage as a function whose keyword arguments are its config fields.

    import llmcse

    llmcse.generate(seeds="seeds.txt", out="gen.jsonl", llm="fake:", n=8)
    results = llmcse.evaluate(model="all-MiniLM-L6-v2", tasks="stsb")
    results["stsb"]  # the main score, x100

Each function runs the same stage code as its ``llmcse`` command (``Stage.execute``: inputs must
exist, no output overwrites an input, the settings are checked like a recipe's), then returns the
stage's typed result (``GenerateResult``, ``Results``, ...; ``.summary`` holds the library's full
report). Bad input raises ``LlmcseError`` with the same one-line message the CLI prints. Keyword
names, defaults and checks are the command's flags (``llmcse <command> --help``), written with
underscores; a stage's LLM back end takes ``llm`` (the spec) plus ``batch_size``, ``dtype``,
``concurrency``, ``request_timeout`` and ``max_retries``.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

from llmcse.pipeline import RunResult, executor_overrides, run_recipe
from llmcse.stages import STAGES
from llmcse.stages.eval import Results

__all__ = ["embed", "evaluate", "expand", "export_mteb", "filter", "filter_expansions", "generate", "icl_search",
           "index", "record_pairs", "rfd", "run", "search", "self_instruct_pairs", "sweep", "train", "tune_generator", "Results",
           "RunResult"]


EXECUTOR_KEYWORDS = ("executor", "ray_address", "actors")  # the sharded stages' --executor, --ray-address, --actors


def call_stage(name: str, settings: dict[str, Any]):
    """Build the stage's config from keyword arguments (type- and range-checked) and execute it; a
    sharded stage's ``executor``/``ray_address``/``actors`` keywords scope it as the CLI flags do."""
    from llmcse.utils.executor import using

    stage = STAGES.get(name)
    scale = {k: settings.pop(k) for k in EXECUTOR_KEYWORDS if k in settings}
    config = stage.make_config(settings, explicit=set(settings))
    if not scale:
        return stage.execute(config)
    with using(scale.get("executor", "local"), scale.get("ray_address"), scale.get("actors", 1),
               origin="executor='ray'"):
        return stage.execute(config)


def _stage_function(name: str, function_name: str):
    """``llmcse.<function_name>(**settings)`` for a stage, its signature and docstring from the config."""
    from llmcse.stages.flags import field_help

    stage = STAGES.get(name)

    def function(**settings):
        return call_stage(name, settings)

    function.__name__ = function.__qualname__ = function_name
    function.__module__ = __name__
    defaults, hints = stage.defaults(), stage.field_types()
    parameters = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
                                    default=inspect.Parameter.empty if defaults[f.name] is dataclasses.MISSING
                                    else defaults[f.name]) for f in stage.fields()]
    fields = "\n".join(f"    {f.name}: {field_help(stage, f)}".rstrip() for f in stage.fields())
    if stage.executor:
        parameters += [inspect.Parameter("executor", inspect.Parameter.KEYWORD_ONLY, annotation=str, default="local"),
                       inspect.Parameter("ray_address", inspect.Parameter.KEYWORD_ONLY, annotation="str | None",
                                         default=None),
                       inspect.Parameter("actors", inspect.Parameter.KEYWORD_ONLY, annotation=int, default=1)]
        fields += ("\n    executor: local (this process) or ray (a pool of Ray actors, each loading the model once)"
                   "\n    ray_address: with executor='ray': auto, host:port or ray://host:10001 (None: $RAY_ADDRESS, "
                   "else a new local Ray)\n    actors: with executor='ray': actors in the pool")
    function.__signature__ = inspect.Signature(parameters,
                                               return_annotation=inspect.signature(stage.run).return_annotation)
    function.__doc__ = f"{stage.help[0].upper()}{stage.help[1:]} (``llmcse {name}``).\n\nKeyword arguments:\n{fields}\n"
    return function


generate = _stage_function("generate", "generate")
filter = _stage_function("filter", "filter")  # noqa: A001 - the stage's name; builtins.filter stays reachable
train = _stage_function("train", "train")
evaluate = _stage_function("eval", "evaluate")
expand = _stage_function("expand", "expand")
filter_expansions = _stage_function("filter-expansions", "filter_expansions")
self_instruct_pairs = _stage_function("self-instruct-pairs", "self_instruct_pairs")
record_pairs = _stage_function("record-pairs", "record_pairs")
tune_generator = _stage_function("tune-generator", "tune_generator")
sweep = _stage_function("sweep-expansions", "sweep")
index = _stage_function("index", "index")
embed = _stage_function("embed", "embed")
search = _stage_function("search", "search")
rfd = _stage_function("rfd", "rfd")
icl_search = _stage_function("icl-search", "icl_search")
export_mteb = _stage_function("export-mteb", "export_mteb")


def run(recipe: str | Path, out: str | Path | None = None, set: list[str] | tuple[str, ...] = (),  # noqa: A002
        data_dir: str | None = None, dry_run: bool = False, executor: str | None = None, actors: int | None = None,
        ray_address: str | None = None) -> RunResult:
    """``llmcse run``: a recipe in one resumable run folder (default ``runs/<[run] name>``).

    ``set``: ``section.key=value`` overrides, as ``llmcse run --set``. Returns the plan (step, run | resume |
    skip, why), each step's result, the report paths and the before/after (or sweep) table.
    """
    overrides = [*set, *executor_overrides(executor, actors, ray_address)]  # recipe's [run] values, overridden
    return run_recipe(recipe, out=out, overrides=overrides, data_dir=data_dir, dry_run=dry_run)
