"""A toy task kind, ``matching``: every ``<data>/matching/<name>.tsv`` (header, then
``sentence1<TAB>sentence2`` paraphrase pairs) is a task. The score is the share of first sentences
whose nearest second sentence (cosine) is their own pair, in %."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmcse.data.tasks import TaskSpec
from llmcse.eval.kinds import register_task_kind


def discover(data_dir: Path) -> list[TaskSpec]:
    folder = data_dir / "matching"
    return [TaskSpec(p.stem.lower(), "matching", {"test": p}, folder) for p in sorted(folder.glob("*.tsv"))]


def evaluate(encoder, spec: TaskSpec, split: str, cfg, cache: dict) -> dict:
    lines = spec.file_for(split).read_text(encoding="utf-8").splitlines()[1:]
    pairs = [line.split("\t")[:2] for line in lines if line.strip()]
    left = encoder.encode([a for a, _ in pairs])  # (n, D), unit rows
    right = encoder.encode([b for _, b in pairs])  # (n, D)
    hits = (left @ right.T).argmax(axis=1) == np.arange(len(pairs))  # (n,)
    return {"main_score": 100 * float(hits.mean()), "num_pairs": len(pairs)}


register_task_kind("matching", folder="matching", main_metric="match_accuracy", discover=discover, evaluate=evaluate)
