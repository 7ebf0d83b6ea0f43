"""Run a set of tasks on one model and write ``results.json`` (+ ``results.md``).

The results file follows mteb's habits: mteb metric names, ``main_score`` per task (x100 for
Spearman / accuracy / nDCG@10), the split in every entry, and everything needed to
reproduce the number: library versions, data file hashes, device, dtype, seed, timings and
a hash of the resolved configuration.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llmcse.data.paths import resolve_data_dir
from llmcse.data.tasks import GROUPS, TASK_KINDS, TaskCatalog, TaskSpec
from llmcse.errors import LlmcseError
from llmcse.eval.kinds import evaluator_for, score_texts, two_decimals
from llmcse.utils.io import atomic_write_json, atomic_write_text, config_hash, file_md5
from llmcse.utils.registry import load_target

logger = logging.getLogger(__name__)

LEXICAL_MODELS = ("bm25",)


@dataclass
class EvalConfig:
    """Everything that decides the numbers of one ``llmcse eval`` run."""

    model: str
    tasks: str = "sts"
    data_dir: str | None = None
    pooling: str | None = None  # only for raw transformer checkpoints
    device: str | None = None  # None = auto (cuda > mps > cpu)
    dtype: str | None = None  # None = float32 (exact); "bfloat16" is 2-3x faster on AMX CPUs
    batch_size: int = 64
    max_seq_length: int | None = None
    seed: int = 1111  # transfer-task fold shuffling
    transfer_max_examples: int | None = None  # cap each transfer split (seeded sample): quick comparisons
    show_progress_bar: bool | None = None
    expansions: str | None = None  # retrieval: synthetic queries/keywords per document (llmcse expand)
    expansion_weights: str = "1,1,1"  # w_doc,w_q,w_k or "mean"
    multirep: str | None = None  # retrieval: documents as several vectors, max-scored (MultiRepSpec, e.g. "sent+doc")
    extra: dict = field(default_factory=dict)


def result_key(spec: TaskSpec, split: str) -> str:
    """``stsb`` for a task's default split, ``stsb:dev`` for another one."""
    return spec.name if split == spec.default_split else f"{spec.name}:{split}"


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for package in ("llmcse", "torch", "transformers", "sentence-transformers", "scikit-learn", "bm25s"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def task_data_files(spec: TaskSpec, split: str, data_dir: Path) -> dict[str, str]:
    """md5 of every file a task reads, keyed by path relative to the data dir."""
    out = {}
    for p in TASK_KINDS.get(spec.kind).files(spec, split):
        try:
            key = str(p.relative_to(data_dir))
        except ValueError:
            key = str(p)
        out[key] = file_md5(p)
    return out


def compute_averages(tasks: dict[str, dict]) -> dict[str, float]:
    """Average main score of each complete task group (the numbers papers report)."""
    averages = {}
    for group, members in GROUPS.items():
        # a member that another data folder also holds is keyed by its qualified name (sts/sts12)
        keys = [m if m in tasks else f"{group}/{m}" for m in members]
        if all(k in tasks for k in keys):
            import numpy as np  # here, not at import: `llmcse --help` loads this module

            averages[group] = float(np.mean([tasks[k]["main_score"] for k in keys]))
    return averages


def run_evaluation(cfg: EvalConfig, output_dir: str | Path | None = None) -> dict:
    """Evaluate ``cfg.model`` on ``cfg.tasks``; write results.json/results.md if ``output_dir``.

    Returns:
        The results dict (the same content as results.json).
    """
    results = run_evaluations(cfg, output_dir)
    if len(results) > 1:
        raise LlmcseError("several poolings give several results; call run_evaluations")
    return results[0]


def run_evaluations(cfg: EvalConfig, output_dir: str | Path | None = None) -> list[dict]:
    """Like ``run_evaluation``, but ``cfg.pooling`` may list several poolings ("mean,last").

    They share one forward pass per text; each gets its own results (in
    ``output_dir/<pooling>/`` when there are several).
    """
    if cfg.batch_size < 1:
        raise LlmcseError(f"batch size must be >= 1, got {cfg.batch_size}")
    data_dir = resolve_data_dir(cfg.data_dir)
    catalog = TaskCatalog(data_dir)
    selected = catalog.select(cfg.tasks)
    for spec, _ in selected:  # a kind found in the data dir but never given an evaluator fails before any work
        evaluator_for(spec)
    poolings = cfg.pooling.split(",") if cfg.pooling else [None]
    if output_dir is not None:  # before the model loads: a bad output folder must not cost a whole evaluation
        check_output_dir(Path(output_dir), [Path(p) for p in poolings] if len(poolings) > 1 else [Path()])
    is_lexical = cfg.model.lower() in LEXICAL_MODELS
    if is_lexical:
        not_retrieval = [s.name for s, _ in selected if not evaluator_for(s).lexical]
        if not_retrieval:
            raise LlmcseError(f"--model bm25 is a lexical retriever; it only runs retrieval tasks, not {', '.join(not_retrieval)}")

    started = time.perf_counter()
    encoders, device, resolved = [None], "cpu", cfg.model
    if not is_lexical:
        from llmcse.embed.models import load_embedder
        from llmcse.utils.modelspec import auto_device, resolve_model_path

        resolved = resolve_model_path(cfg.model)  # a missing model fails here, before torch is imported
        from llmcse.embed.encode import CachedEncoder, PoolingSlice

        device = cfg.device or auto_device()
        model = load_embedder(resolved, pooling=cfg.pooling, device=device, dtype=cfg.dtype, max_seq_length=cfg.max_seq_length)
        base = CachedEncoder(model, batch_size=cfg.batch_size, show_progress_bar=cfg.show_progress_bar)
        width = base.dim // len(poolings)
        encoders = [base] if len(poolings) == 1 else [PoolingSlice(base, i * width, (i + 1) * width)
                                                      for i in range(len(poolings))]
    load_seconds = time.perf_counter() - started

    all_results = []
    for pooling, encoder in zip(poolings, encoders):
        one_cfg = EvalConfig(**{**asdict(cfg), "pooling": pooling})
        t0 = time.perf_counter()
        tasks, data_files = _evaluate_tasks(selected, encoder, one_cfg, data_dir)
        config = {k: v for k, v in asdict(one_cfg).items() if k not in ("show_progress_bar", "data_dir")}
        results = {
            "model": cfg.model,
            "model_path": resolved,
            "pooling": pooling,
            "tasks": tasks,
            "averages": compute_averages(tasks),
            "config": config,
            "config_hash": config_hash(config),
            "data_dir": str(data_dir),
            "data_files": data_files,
            "device": device,
            "dtype": None if is_lexical else (cfg.dtype or "float32"),
            "seed": cfg.seed,
            "texts_encoded": encoder.texts_encoded if encoder else 0,
            "model_load_time": round(load_seconds, 2),
            "evaluation_time": round(time.perf_counter() - t0 + (load_seconds if not all_results else 0), 2),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": library_versions(),
        }
        if len(poolings) > 1:
            results["shared_forward_pass_with"] = [p for p in poolings if p != pooling]
        if output_dir is not None:
            write_results(results, Path(output_dir) / pooling if len(poolings) > 1 else Path(output_dir))
        all_results.append(results)
    return all_results


def check_output_dir(output_dir: Path, subdirs: list[Path]) -> None:
    """Refuse an output folder that cannot take results.json/results.md, without creating anything:
    a file in the way (the folder itself, a parent, or a results file that is a folder), or no write
    permission on the nearest existing folder."""
    for folder in (output_dir / sub for sub in subdirs):
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise LlmcseError(f"--output-dir {str(output_dir)!r} is a file, not a folder" if existing == output_dir
                              else f"--output-dir {str(output_dir)!r}: {existing} is a file, not a folder")
        for name in ("results.json", "results.md"):
            if (folder / name).is_dir():
                raise LlmcseError(f"--output-dir {str(output_dir)!r}: {folder / name} is a folder; results cannot be written")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise LlmcseError(f"--output-dir {str(output_dir)!r}: no permission to write in {existing}")


def _evaluate_tasks(selected, encoder, cfg: EvalConfig, data_dir: Path) -> tuple[dict[str, dict], dict[str, str]]:
    tasks: dict[str, dict] = {}
    data_files: dict[str, str] = {}
    cache: dict = {}  # shared by the tasks of this run (retrieval's searcher)
    for spec, split in selected:
        key = result_key(spec, split)
        logger.info("evaluating %s (%s, split %s%s)", key, spec.kind, split, f", pooling {cfg.pooling}" if cfg.pooling else "")
        t0 = time.perf_counter()
        result = load_target(evaluator_for(spec).evaluate)(encoder, spec, split, cfg, cache)
        result = {"main_score": result.pop("main_score"), "main_metric": spec.main_metric, "split": split, **result}
        result["evaluation_time"] = round(time.perf_counter() - t0, 2)
        tasks[key] = result
        data_files.update(task_data_files(spec, split, data_dir))
    return tasks, data_files


def results_table_rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(task, split, metric, score) rows, averages last."""
    score_text = score_texts()
    rows = []
    for key, r in results["tasks"].items():
        rows.append((key, r["split"], r["main_metric"], score_text.get(r["main_metric"], two_decimals)(r)))
    for group, value in results["averages"].items():
        rows.append((f"{group} (avg)", "", "", f"{value:.2f}"))
    return rows


def results_markdown(results: dict) -> str:
    lines = [
        f"# Results: {results['model']}",
        "",
        f"device {results['device']}, dtype {results['dtype']}, config {results['config_hash']}, {results['date']}",
        "",
        "| task | split | metric | score |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in results_table_rows(results)]
    return "\n".join(lines) + "\n"


def write_results(results: dict, output_dir: Path) -> None:
    """results.json and results.md, each written atomically."""
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / "results.json", results)
    atomic_write_text(output_dir / "results.md", results_markdown(results))
