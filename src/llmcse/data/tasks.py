"""Benchmark tasks, discovered by convention from the data dir.

* every ``<data>/sts/<name>.tsv`` is an STS task ``<name>``; ``<name>_<split>.tsv`` files
  (split = train, dev, test) are splits of one task ``<name>``;
* every ``<data>/transfer/<name>/`` holding ``all.tsv`` (cross-validated) or
  ``train.tsv`` + ``test.tsv`` is a transfer task ``<name>``;
* every ``<data>/beir/<name>/`` holding ``corpus.jsonl`` is a retrieval task ``<name>``,
  one split per ``qrels/<split>.tsv``;
* ``geometry`` (alignment/uniformity) is built on ``stsb`` dev.

So a user adds a task by dropping files in, with no code change. Each kind is a ``TASK_KINDS``
entry saying where its tasks are found and which files they read: the data side. How they are scored
and shown lives above this layer, in ``eval/kinds.py``, which registers itself on top of this one (the
data layer never names evaluation code). A new kind is one file with a discover and an evaluate
function plus one ``register_task_kind(...)`` line there, which fills both; ``eval/run.py`` needs no
new branch.

A task name may be qualified by its folder (``sts/stsb``, ``transfer/mr``, ``beir/arguana``). A name
that two folders hold (``sts/foo.tsv`` and ``beir/foo/``) must be: both tasks keep working under their
qualified names (also their keys in results.json), and the bare name is an error naming both paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
        kind: A ``TASK_KINDS`` name: ``sts``, ``transfer``, ``retrieval``, ``geometry``, ...
        files: split -> file (STS, transfer) or split -> qrels file (retrieval).
        root: The task's folder (retrieval, transfer) or the STS file's folder.
        main_metric: mteb-style name of the headline number (``TaskCatalog`` sets the kind's).
    """

    name: str
    kind: str
    files: dict[str, Path] = field(hash=False)
    root: Path
    main_metric: str = ""

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
    return [TaskSpec(n, "sts", files, folder) for n, files in by_name.items()]


def _discover_transfer(data_dir: Path) -> list[TaskSpec]:
    folder = data_dir / "transfer"
    tasks = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        files = {p.stem: p for p in sub.glob("*.tsv") if p.stem in ("all", *SPLIT_NAMES)}
        if "all" in files or {"train", "test"} <= files.keys():
            tasks.append(TaskSpec(sub.name.lower(), "transfer", files, sub))
    return tasks


def _discover_beir(data_dir: Path) -> list[TaskSpec]:
    folder = data_dir / "beir"
    tasks = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        if (sub / "corpus.jsonl").is_file():
            files = {p.stem: p for p in (sub / "qrels").glob("*.tsv")}
            tasks.append(TaskSpec(sub.name.lower(), "retrieval", files, sub))
    return tasks


def _discover_geometry(data_dir: Path) -> list[TaskSpec]:
    """``geometry`` (alignment/uniformity) on the STS-B dev split, when there is one."""
    stsb = next((s for s in _discover_sts(data_dir) if s.name == "stsb"), None)
    return [TaskSpec("geometry", "geometry", {"dev": stsb.files["dev"]}, stsb.root)] if stsb and "dev" in stsb.files else []


def split_file(spec: TaskSpec, split: str) -> list[Path]:
    return [spec.file_for(split)]


@dataclass(frozen=True)
class TaskKind:
    """Where one kind of task is found in the data dir and what its tasks read (the data side of a
    kind; its evaluator is an ``eval.kinds.TASK_EVALUATORS`` entry of the same name).

    Attributes:
        folder: Its data-dir folder: ``<folder>/<name>`` names a task when two kinds hold that name.
        main_metric: mteb-style name of the headline number (``main_score`` in results.json).
        discover: ``data_dir -> [TaskSpec]``: the tasks of this kind found there (from file names).
        files: ``(spec, split) -> [Path]``: every file evaluating the split reads (md5s in results.json).
    """

    folder: str
    main_metric: str
    discover: Callable[[Path], list[TaskSpec]]
    files: Callable[[TaskSpec, str], list[Path]] = split_file


TASK_KINDS: Registry[TaskKind] = Registry("task kind")
TASK_KINDS.register("sts", TaskKind("sts", "cosine_spearman", _discover_sts))
TASK_KINDS.register("transfer", TaskKind("transfer", "accuracy", _discover_transfer,
                                         files=lambda spec, split: list(spec.files.values())))
TASK_KINDS.register("retrieval", TaskKind(
    "beir", "ndcg_at_10", _discover_beir,
    files=lambda spec, split: [spec.root / "corpus.jsonl", spec.root / "queries.jsonl", spec.file_for(split)]))
TASK_KINDS.register("geometry", TaskKind("geometry", "alignment", _discover_geometry))


class TaskCatalog:
    """All tasks found in one data dir, plus the task groups (``sts``, ``transfer``)."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.registry: Registry[TaskSpec] = Registry("task")
        specs = [replace(spec, main_metric=kind.main_metric) for _, kind in TASK_KINDS.items()
                 for spec in kind.discover(data_dir)]
        # A name found in two folders is ambiguous: both tasks are registered under their qualified
        # names (sts/foo, beir/foo), which are also their result keys, and the bare name is refused.
        self.ambiguous: dict[str, list[TaskSpec]] = {}
        for spec in specs:
            if sum(s.name == spec.name for s in specs) > 1:
                spec = replace(spec, name=qualified_name(spec))
                self.ambiguous.setdefault(spec.name.split("/", 1)[1], []).append(spec)
            self.registry.register(spec.name, spec, aliases=() if "/" in spec.name else ALIASES.get(spec.name, ()))

    def _find(self, name: str, kind: str) -> TaskSpec | None:
        """The task of this kind with this bare name (qualified or not), or None."""
        for key in (name, f"{TASK_KINDS.get(kind).folder}/{name}"):
            if key in self.registry and self.registry.get(key).kind == kind:
                return self.registry.get(key)
        return None

    def __iter__(self):
        return (spec for _, spec in self.registry.items())

    def missing_standard(self) -> list[str]:
        """Standard tasks (7 STS, 7 transfer, ArguAna) that are not in the data dir."""
        found = {spec.name.rsplit("/", 1)[-1] for spec in self}
        return [n for n in STS_TASKS + TRANSFER_TASKS + RETRIEVAL_TASKS if n not in found]

    def get(self, name: str) -> TaskSpec:
        """A task by name, alias or qualified name (``sts/stsb``, ``beir/arguana``).

        Raises:
            UnknownNameError: An unknown name, or a bare name that two data folders hold.
        """
        key = name.lower()
        if key in self.ambiguous:
            where = " and ".join(f"{s.root / s.files[s.default_split].name if s.kind == 'sts' else s.root} ({s.kind})"
                                 for s in self.ambiguous[key])
            raise UnknownNameError(f"task name {name!r} is ambiguous: it is found in {where}; "
                                   f"say which: {', '.join(s.name for s in self.ambiguous[key])}")
        folder, slash, bare = key.partition("/")
        if slash and key not in self.registry and bare in self.registry:  # sts/stsb for an unambiguous stsb
            spec = self.registry.get(bare)
            if TASK_KINDS.get(spec.kind).folder == folder:
                return spec
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
                kind = name.lower()  # a group holds tasks of the kind it is named after
                missing = [m for m in members if self._find(m, kind) is None]
                if missing:
                    raise MissingDataError(
                        f"task group {name!r} needs {', '.join(missing)}, not found under {self.data_dir} "
                        f"(expected e.g. {self.data_dir / TASK_KINDS.get(kind).folder / missing[0]}...)"
                    )
                specs = [self._find(m, kind) for m in members]
            else:
                specs = [self.get(name)]
            for spec in specs:
                chosen = split or spec.default_split
                spec.file_for(chosen)  # raises on an unknown split
                if (spec, chosen) not in selected:
                    selected.append((spec, chosen))
        return selected


def qualified_name(spec: TaskSpec) -> str:
    """``sts/foo``, ``transfer/foo`` or ``beir/foo``: a task name no other folder can share."""
    return f"{TASK_KINDS.get(spec.kind).folder}/{spec.name}"


def sts_dev_file(task: str, data_dir: str | Path | None, purpose: str) -> Path:
    """The file of an STS *dev* split (``stsb:dev``); anything else, test splits above all, is refused:
    choices made on it (model selection, demos, RFD) must never see test data."""
    from llmcse.data.paths import resolve_data_dir

    catalog = TaskCatalog(resolve_data_dir(data_dir))
    dev_splits = sorted(f"{s.name}:dev" for s in catalog if s.kind == "sts" and "dev" in s.files)
    accepted = f"one STS task with its dev split, here: {', '.join(dev_splits) or '(none in ' + str(catalog.data_dir) + ')'}"
    if "," in task or task.partition(":")[0].strip().lower() in GROUPS:  # a group or a list: several tasks
        raise LlmcseError(f"{task!r}: {purpose} needs {accepted}")
    try:
        selected = catalog.select(task)
    except UnknownNameError as e:
        raise UnknownNameError(f"{e} ({purpose} needs {accepted})") from None
    if len(selected) != 1:  # an empty name
        raise LlmcseError(f"{task!r}: {purpose} needs {accepted}")
    [(spec, split)] = selected
    if spec.kind != "sts" or split == "test":
        raise LlmcseError(f"{task!r}: {purpose} needs an STS dev split (e.g. stsb:dev), not {spec.kind} {split}; "
                          "never a test split")
    return spec.file_for(split)
