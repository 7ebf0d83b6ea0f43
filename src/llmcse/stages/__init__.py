"""Every ``llmcse`` command, registered once (``STAGES``); see ``base.py`` for what a stage declares.

Pipeline stages come first, in pipeline order (the run report follows it), then the other commands;
``run`` is registered by ``llmcse.pipeline`` (it drives the stages, so it sits above them).
Adding a stage is one file here with a ``STAGE = Stage(...)`` and one line below; the CLI, the
recipe runner and the Python API pick it up from the registry.
"""

from __future__ import annotations

from llmcse.stages import (commands, embed, eval, expand, export_mteb, filter, filter_expansions, generate, icl_search,
                           index, record_pairs, rfd, search, self_instruct_pairs, sweep, train, tune_generator)
from llmcse.stages.base import Flag, LLMOptions, Stage, StageResult, opt
from llmcse.utils.registry import Registry

STAGES: Registry[Stage] = Registry("command")
for _stage in (generate.STAGE, filter.STAGE, train.STAGE, eval.STAGE, expand.STAGE, filter_expansions.STAGE,
               self_instruct_pairs.STAGE, record_pairs.STAGE, tune_generator.STAGE, sweep.STAGE, index.STAGE, embed.STAGE, search.STAGE,
               rfd.STAGE, icl_search.STAGE, export_mteb.STAGE, commands.PROMPTEOL, commands.SERVE_LLM, commands.DATA):
    STAGES.register(_stage.name, _stage, aliases=_stage.aliases)


__all__ = ["STAGES", "Flag", "LLMOptions", "Stage", "StageResult", "opt"]
