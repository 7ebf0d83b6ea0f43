"""The evaluation side of each task kind: how its tasks are scored and how results tables show them.

``data/tasks.py`` holds the data side (``TASK_KINDS``: folder, discovery, main metric, files read).
It sits below ``eval`` in the layer order, so it cannot name evaluation code; instead this module
registers each kind's evaluator on top of it (peft's ``register_peft_method`` habit). A new kind is one
file with a ``discover`` and an ``evaluate`` function plus one ``register_task_kind(...)`` line, which
fills both registries; ``eval/run.py`` dispatches through ``evaluator_for`` and needs no new branch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmcse.data.tasks import TASK_KINDS, TaskKind, TaskSpec, split_file
from llmcse.errors import LlmcseError
from llmcse.utils.registry import Registry


def two_decimals(result: dict) -> str:
    return f"{result['main_score']:.2f}"


@dataclass(frozen=True)
class TaskEvaluator:
    """How the tasks of one kind (a ``TASK_KINDS`` name) are evaluated and reported.

    Attributes:
        evaluate: ``(encoder, spec, split, cfg, cache) -> dict`` holding ``main_score`` and any other
            metrics, or ``"module:function"`` (imported when such a task runs). ``cfg`` is the
            ``EvalConfig``; ``cache`` a dict the tasks of one run share (retrieval keeps its searcher there).
        lexical: A lexical model (bm25) can run it.
        score_text: ``task result -> str``: the score as results tables show it.
    """

    evaluate: object
    lexical: bool = False
    score_text: Callable[[dict], str] = two_decimals


TASK_EVALUATORS: Registry[TaskEvaluator] = Registry("task evaluator")


def register_task_kind(
    name: str,
    *,
    folder: str,
    main_metric: str,
    discover: Callable[[Path], list[TaskSpec]],
    evaluate: object,
    files: Callable[[TaskSpec, str], list[Path]] = split_file,
    lexical: bool = False,
    score_text: Callable[[dict], str] = two_decimals,
) -> TaskEvaluator:
    """Register a new task kind in one call: its data side in ``TASK_KINDS`` and its evaluator here.

    See ``TaskKind`` (data/tasks.py) and ``TaskEvaluator`` for the arguments.

    Raises:
        ValueError: ``name`` is already registered in either registry (nothing is registered then).
    """
    for registry in (TASK_KINDS, TASK_EVALUATORS):
        if name in registry:  # checked first, so a clash leaves neither registry half-filled
            raise ValueError(f"{registry.kind} {name!r} is already registered")
    TASK_KINDS.register(name, TaskKind(folder, main_metric, discover, files))
    return TASK_EVALUATORS.register(name, TaskEvaluator(evaluate, lexical, score_text))


def evaluator_for(spec: TaskSpec) -> TaskEvaluator:
    """The evaluator of a task's kind.

    Raises:
        LlmcseError: Its kind has a data side (so the task was found) but no evaluator.
    """
    if spec.kind not in TASK_EVALUATORS:
        raise LlmcseError(f"task {spec.name!r} is of kind {spec.kind!r}, which has no evaluator registered "
                          f"(llmcse.eval.kinds.register_task_kind registers both sides of a kind); "
                          f"kinds with one: {', '.join(TASK_EVALUATORS)}")
    return TASK_EVALUATORS.get(spec.kind)


def score_texts() -> dict[str, Callable[[dict], str]]:
    """main metric -> how results tables show it. results.json keeps each task's metric, not its kind,
    so the kind is found by its main metric; where two kinds share one, the first registered wins."""
    return {TASK_KINDS.get(name).main_metric: evaluator.score_text
            for name, evaluator in reversed(list(TASK_EVALUATORS.items())) if name in TASK_KINDS}


# The built-in kinds' evaluators, ``(encoder, spec, split, cfg, cache) -> dict`` with ``main_score``.
# Each imports its evaluation module only when called: importing this registry stays light.

def evaluate_sts_task(encoder, spec: TaskSpec, split: str, cfg, cache: dict) -> dict:
    from llmcse.eval.sts import evaluate_sts

    return evaluate_sts(encoder, spec, split)


def evaluate_geometry_task(encoder, spec: TaskSpec, split: str, cfg, cache: dict) -> dict:
    from llmcse.eval.geometry import evaluate_geometry

    return evaluate_geometry(encoder, spec, split)


def evaluate_transfer_task(encoder, spec: TaskSpec, split: str, cfg, cache: dict) -> dict:
    from llmcse.eval.transfer import evaluate_transfer

    return evaluate_transfer(encoder, spec, split, seed=cfg.seed, max_examples=cfg.transfer_max_examples)


def evaluate_retrieval_task(encoder, spec: TaskSpec, split: str, cfg, cache: dict) -> dict:
    """One searcher (index) per run, shared by its retrieval tasks."""
    from llmcse.eval.retrieval import evaluate_retrieval

    if "searcher" not in cache:
        if cfg.model.lower() == "bm25":
            from llmcse.retrieval.bm25 import BM25Searcher

            cache["searcher"] = BM25Searcher()
        elif cfg.multirep:  # sentences / passages / synthetic queries (with --expansions) as units
            from llmcse.data.loaders import load_expansions
            from llmcse.retrieval.multirep import MultiRepSearcher

            cache["searcher"] = MultiRepSearcher(
                encoder, cfg.multirep, load_expansions(cfg.expansions) if cfg.expansions else None)
        elif cfg.expansions:
            from llmcse.data.loaders import load_expansions
            from llmcse.retrieval.expansion import ExpandedDenseSearcher, ExpansionWeights

            cache["searcher"] = ExpandedDenseSearcher(encoder, load_expansions(cfg.expansions),
                                                      ExpansionWeights.parse(cfg.expansion_weights))
        else:
            from llmcse.retrieval.dense import DenseSearcher

            cache["searcher"] = DenseSearcher(encoder)
    return evaluate_retrieval(cache["searcher"], spec, split)


TASK_EVALUATORS.register("sts", TaskEvaluator(evaluate_sts_task))
TASK_EVALUATORS.register("transfer", TaskEvaluator(evaluate_transfer_task))
TASK_EVALUATORS.register("retrieval", TaskEvaluator(evaluate_retrieval_task, lexical=True))
TASK_EVALUATORS.register("geometry", TaskEvaluator(
    evaluate_geometry_task, score_text=lambda r: f"{r['main_score']:.4f} (uniformity {r['uniformity']:.4f})"))
