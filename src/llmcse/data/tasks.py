"""Benchmark tasks, discovered by convention from the data dir.

* every ``<data>/sts/<name>.tsv`` is an STS task ``<name>``; ``<name>_<split>.tsv`` files
  (split = train, dev, test) are splits of one task ``<name>``;
* every ``<data>/transfer/<name>/`` holding ``all.tsv`` (cross-validated) or
  ``train.tsv`` + ``test.tsv`` is a transfer task ``<name>``;
* every ``<data>/beir/<name>/`` holding ``corpus.jsonl`` is a retrieval task ``<name>``,
  one split per ``qrels/<split>.tsv``;
* ``geometry`` (alignment/uniformity) is built on ``stsb`` dev.

So a user adds a task by dropping files in, with no code change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from llmcse.errors import LlmcseError, MissingDataError, UnknownNameError
from llmcse.utils.registry import Registry, did_you_mean

STS_TASKS = ["sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sick"]
TRANSFER_TASKS = ["mr", "cr", "subj", "mpqa", "sst2", "trec", "mrpc"]
RETRIEVAL_TASKS = ["arguana"]
GROUPS = {"sts": STS_TASKS, "transfer": TRANSFER_TASKS}
# Names papers and SentEval use for the same sets.
ALIASES = {
    "stsb": ("stsbenchmark", "sts-b", "stsb-en"),
    "sick": ("sickr", "sick-r", "sickrelatedness"),
}
SPLIT_NAMES = ("train", "dev", "test")
_SPLIT_SUFFIX = re.compile(r"^(?P<name>.+)_(?P<split>train|dev|test)$")


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark task found in the data dir.

    Attributes:
        name: Task name (lower case), e.g. ``stsb``.
        kind: ``sts``, ``transfer``, ``retrieval`` or ``geometry``.
        files: split -> file (STS, transfer) or split -> qrels file (retrieval).
        root: The task's folder (retrieval, transfer) or the STS file's folder.
        main_metric: mteb-style name of the headline number.
    """

    name: str
    kind: str
    files: dict[str, Path] = field(hash=False)
    root: Path
    main_metric: str

    @property
    def default_split(self) -> str:
        """``test`` when there is one (the reported number), else the only split."""
        if "test" in self.files:
            return "test"
        if "all" in self.files:
            return "all"
        return sorted(self.files)[0]

    def file_for(self, split: str) -> Path:
        if split not in self.files:
            raise UnknownNameError(
                f"task {self.name!r} has no split {split!r}; it has: {', '.join(sorted(self.files))}"
            )
        return self.files[split]


def _discover_sts(data_dir: Path) -> list[TaskSpec]:
    folder = data_dir / "sts"
    by_name: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.glob("*.tsv")) if folder.is_dir() else []:
        match = _SPLIT_SUFFIX.match(path.stem.lower())
        name, split = (match["name"], match["split"]) if match else (path.stem.lower(), "test")
        by_name.setdefault(name, {})[split] = path
    return [TaskSpec(n, "sts", files, folder, "cosine_spearman") for n, files in by_name.items()]


def _discover_transfer(data_dir: Path) -> list[TaskSpec]:
    folder = data_dir / "transfer"
    tasks = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        files = {p.stem: p for p in sub.glob("*.tsv") if p.stem in ("all", *SPLIT_NAMES)}
        if "all" in files or {"train", "test"} <= files.keys():
            tasks.append(TaskSpec(sub.name.lower(), "transfer", files, sub, "accuracy"))
    return tasks


def _discover_beir(data_dir: Path) -> list[TaskSpec]:
    folder = data_dir / "beir"
    tasks = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        if (sub / "corpus.jsonl").is_file():
            files = {p.stem: p for p in (sub / "qrels").glob("*.tsv")}
            tasks.append(TaskSpec(sub.name.lower(), "retrieval", files, sub, "ndcg_at_10"))
    return tasks


class TaskCatalog:
    """All tasks found in one data dir, plus the task groups (``sts``, ``transfer``)."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.registry: Registry[TaskSpec] = Registry("task")
        for spec in _discover_sts(data_dir) + _discover_transfer(data_dir) + _discover_beir(data_dir):
            if spec.name in self.registry:
                other = self.registry.get(spec.name)
                raise ValueError(
                    f"task name {spec.name!r} is used twice: {other.root} ({other.kind}) and {spec.root} ({spec.kind})"
                )
            self.registry.register(spec.name, spec, aliases=ALIASES.get(spec.name, ()))
        if "stsb" in self.registry and "dev" in self.registry.get("stsb").files:
            stsb = self.registry.get("stsb")
            self.registry.register("geometry", TaskSpec("geometry", "geometry", {"dev": stsb.files["dev"]}, stsb.root, "alignment"))

    def __iter__(self):
        return (spec for _, spec in self.registry.items())

    def missing_standard(self) -> list[str]:
        """Standard tasks (7 STS, 7 transfer, ArguAna) that are not in the data dir."""
        return [n for n in STS_TASKS + TRANSFER_TASKS + RETRIEVAL_TASKS if n not in self.registry]

    def get(self, name: str) -> TaskSpec:
        try:
            return self.registry.get(name)
        except UnknownNameError:
            valid = sorted(list(self.registry) + list(GROUPS))
            raise UnknownNameError(
                f"unknown task {name!r} in data dir {self.data_dir}.{did_you_mean(name.lower(), valid)} "
                f"Found: {', '.join(valid) or '(none)'}. Groups: {', '.join(GROUPS)}."
            ) from None

    def select(self, names: str | list[str]) -> list[tuple[TaskSpec, str]]:
        """Expand a task selection such as ``"sts,transfer,arguana,stsb:dev"``.

        Returns:
            (task, split) pairs in order, without duplicates.

        Raises:
            MissingDataError: A group member is missing from the data dir.
            UnknownNameError: An unknown task or split.
        """
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        selected: list[tuple[TaskSpec, str]] = []
        for item in names:
            name, _, split = item.partition(":")
            if name.lower() in GROUPS:
                members = GROUPS[name.lower()]
                missing = [m for m in members if m not in self.registry]
                if missing:
                    raise MissingDataError(
                        f"task group {name!r} needs {', '.join(missing)}, not found under {self.data_dir} "
                        f"(expected e.g. {self.data_dir / ('sts' if name.lower() == 'sts' else 'transfer') / missing[0]}...)"
                    )
                specs = [self.registry.get(m) for m in members]
            else:
                specs = [self.get(name)]
            for spec in specs:
                chosen = split or spec.default_split
                spec.file_for(chosen)  # raises on an unknown split
                if (spec, chosen) not in selected:
                    selected.append((spec, chosen))
        return selected


def sts_dev_file(task: str, data_dir: str | Path | None, purpose: str) -> Path:
    """The file of an STS *dev* split (``stsb:dev``); anything else, test splits above all, is refused:
    choices made on it (model selection, demos, RFD) must never see test data."""
    from llmcse.data.paths import resolve_data_dir

    [(spec, split)] = TaskCatalog(resolve_data_dir(data_dir)).select(task)
    if spec.kind != "sts" or split == "test":
        raise LlmcseError(f"{task!r}: {purpose} needs an STS dev split (e.g. stsb:dev), not {spec.kind} {split}; "
                          "never a test split")
    return spec.file_for(split)
