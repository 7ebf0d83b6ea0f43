"""What the Ray paths of ``generate``, ``filter`` and ``expand`` share (``executor="ray"``).

Each stage's items (seeds, records, documents) are cut into fixed shards listed in
``<out>.shards/manifest.json`` (``llmcse.utils.shards``). A shard worker, built once per Ray actor
(the LLM loads once), works through its shard chunk by chunk with the stage's own chunk code and
appends each finished chunk to ``<out>.shards/shards/NNNNN.jsonl`` (durable, torn tails repaired),
so a lost actor or node costs at most its current chunk: Ray runs the shard again elsewhere and the
new worker continues after the chunks already there. When all shards are done, the driver appends
what the output lacks to it in input order, exactly what a single process would have written
(same chunks, same chunk seeds: shards are whole chunks), except the ``created`` timestamps.

The LLM is rebuilt in each actor from its spec (``LLMSource``); an ``openai:`` server's
concurrency is shared among the actors, so the limit stays global. Each stage keeps its own shard
worker and ``*_on_ray`` function beside its chunk code (``generate.py``, ``filter.py``, ``expand.py``).
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

from llmcse.llm.base import LLM
from llmcse.utils.jsonl import AppendOnlyJsonl

logger = logging.getLogger(__name__)


class LLMSource:
    """Builds a stage's LLM inside a Ray actor: ``load_llm(spec, **options)``, or a copy of a light
    back end the caller already made (a fake, an HTTP client)."""

    def __init__(self, spec: str, options: dict | None = None, shipped: LLM | None = None):
        self.spec, self.options, self.shipped = spec, options or {}, shipped

    def __call__(self) -> LLM:
        if self.shipped is not None:
            return self.shipped
        from llmcse.llm import load_llm

        return load_llm(self.spec, **self.options)

    @property
    def uses_gpu(self) -> bool:
        return self.spec.startswith("hf:")


def llm_source(llm: LLM | None, spec: str, request_timeout: float, max_retries: int, actors: int) -> LLMSource:
    """How each actor gets the stage's LLM: ``llm`` if the caller built one (an ``hf:`` model is
    rebuilt with the same batch size and dtype: weights do not travel), else ``spec``."""
    from llmcse.llm import transport_options
    from llmcse.llm.base import GenerationStats
    from llmcse.utils.executor import split_concurrency

    if isinstance(llm, LLMSource):  # the stage deferred loading to the actors (stages.base.load_backend)
        return llm
    if llm is None:
        options = transport_options(spec, request_timeout, max_retries)
        if spec.startswith("openai:"):
            import inspect

            from llmcse.llm.openai_http import OpenAIHTTPGenerator

            default = inspect.signature(OpenAIHTTPGenerator).parameters["concurrency"].default
            options["concurrency"] = split_concurrency(default, actors)
        return LLMSource(spec, options)
    if llm.spec.startswith("hf:") and hasattr(llm, "model"):
        dtype = str(getattr(llm.model, "dtype", "auto")).removeprefix("torch.")
        return LLMSource(llm.spec, {"batch_size": llm.batch_size, "dtype": dtype,
                                    "prefix_cache": getattr(llm, "prefix_cache", True)})
    shipped = copy.copy(llm)
    shipped.stats = GenerationStats()
    if hasattr(shipped, "concurrency"):
        shipped.concurrency = split_concurrency(shipped.concurrency, actors)
    return LLMSource(llm.spec, shipped=shipped)


def shard_folder(out: Path) -> Path:
    """``<out>.shards``: a side file of ``out`` (``llmcse.utils.safety.NAME_SUFFIXES``)."""
    return out.with_name(out.name + ".shards")


def shard_rows(folder: Path, manifest: dict) -> dict[int, list[dict]]:
    """Rows already in each shard file (repairing a torn last line)."""
    return {s["index"]: AppendOnlyJsonl(folder / s["file"]).read() for s in manifest["shards"]
            if (folder / s["file"]).exists()}


def run_on_ray(worker, tasks: list[dict], folder: Path, source: LLMSource | None, ray_address, actors, show_progress_bar,
         desc: str) -> tuple[list[dict], dict]:
    """Run the tasks on Ray; (provenance rows, the ``this_run`` fields every stage reports)."""
    from llmcse.utils.executor import run_shards
    from llmcse.utils.shards import PROVENANCE

    started = time.perf_counter()
    rows = run_shards(worker, tasks, executor="ray", ray_address=ray_address, actors=actors,
                      uses_gpu=bool(source and source.uses_gpu), provenance_file=folder / PROVENANCE,
                      show_progress_bar=show_progress_bar, desc=desc)
    return rows, {"executor": "ray", "actors": actors, "shards_run": len(tasks),
                  "workers": len({(r["node"], r["pid"]) for r in rows}), "nodes": len({r["node"] for r in rows}),
                  "wall_seconds": round(time.perf_counter() - started, 1),
                  "actor_seconds": round(sum(r["seconds"] for r in rows), 1)}


def open_shard_file(path: Path) -> AppendOnlyJsonl:
    from llmcse.utils.executor import require_shared_folder

    require_shared_folder(path.parent)
    return AppendOnlyJsonl(path)
