"""What ``llmcse data list`` shows: tasks found, their sizes, and standard sets that are missing."""

from __future__ import annotations

from pathlib import Path

from llmcse.data.paths import resolve_data_dir
from llmcse.data.tasks import TaskCatalog

# Training-data files other stages look for (not evaluation tasks).
TRAINING_FILES = {"unlabeled": "unlabeled/wiki_sentences.txt", "nli": "nli/triplets.tsv"}


def count_rows(path: Path, header: bool) -> int:
    """Non-blank lines, minus the header line if the format has one."""
    with open(path, "rb") as f:
        n = sum(1 for line in f if line.strip())
    return max(n - 1, 0) if header else n


def _task_sizes(spec) -> dict[str, int]:
    if spec.kind == "retrieval":
        sizes = {"docs": count_rows(spec.root / "corpus.jsonl", header=False),
                 "queries": count_rows(spec.root / "queries.jsonl", header=False)}
        for split, path in sorted(spec.files.items()):
            sizes[f"qrels:{split}"] = count_rows(path, header=True)
        return sizes
    return {split: count_rows(path, header=True) for split, path in sorted(spec.files.items())}


def data_inventory(data_dir: str | Path | None = None) -> dict:
    root = resolve_data_dir(data_dir)
    catalog = TaskCatalog(root)
    tasks = [
        {"name": spec.name, "kind": spec.kind, "default_split": spec.default_split, "sizes": _task_sizes(spec),
         "path": str(spec.root)}
        for spec in catalog
    ]
    training = {name: {"path": str(root / rel), "rows": count_rows(root / rel, header=rel.endswith(".tsv"))}
                for name, rel in TRAINING_FILES.items() if (root / rel).is_file()}
    return {"data_dir": str(root), "tasks": tasks, "training_data": training,
            "missing_standard": catalog.missing_standard(),
            "missing_training_data": [n for n, rel in TRAINING_FILES.items() if not (root / rel).is_file()]}


def format_inventory(inventory: dict) -> str:
    lines = [f"data dir: {inventory['data_dir']}", "", f"{'task':<12}{'kind':<11}{'default':<9}sizes"]
    for t in inventory["tasks"]:
        sizes = ", ".join(f"{k} {v:,}" for k, v in t["sizes"].items())
        lines.append(f"{t['name']:<12}{t['kind']:<11}{t['default_split']:<9}{sizes}")
    if inventory["training_data"]:
        lines += ["", "training data:"]
        lines += [f"  {k:<10} {v['rows']:,} rows  {v['path']}" for k, v in inventory["training_data"].items()]
    missing = inventory["missing_standard"] + inventory["missing_training_data"]
    lines += ["", f"missing standard sets: {', '.join(missing) if missing else 'none'}"]
    return "\n".join(lines)
