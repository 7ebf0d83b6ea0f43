"""Export llmcse results as MTEB result files, so llmcse models sit in the same tables as MTEB's.

``llmcse eval`` writes ``results.json``; this module turns the tasks that MTEB also has into MTEB's
own files, one per task, in the folder layout MTEB uses::

    OUT/results/<model name, "/" -> "__">/<revision>/<TaskName>.json
    OUT/results/<model name, "/" -> "__">/<revision>/model_meta.json

``OUT`` is an MTEB results cache folder: what ``mteb run --output-folder OUT`` writes and
``mteb.ResultCache(OUT).load_results()`` reads (mteb 2.x). Each task file holds MTEB's task name,
its pinned dataset revision, its split names, its metric keys and ``main_score`` on MTEB's 0-1
scale (llmcse prints 0-100), plus an ``llmcse`` key saying where the numbers came from (mteb's
loader ignores keys it does not know). No mteb import is needed to write them; tests load them with
mteb's ``TaskResult`` / ``ResultCache``.

Which tasks are exported, and why the others are not:

* STS12-STS16 and STSBenchmark (test split, cosine Spearman): the same pairs and gold scores as
  MTEB's copies. MTEB's STS12-16 text is preprocessed a little differently (2-3% more characters);
  measured on all-MiniLM-L6-v2, llmcse's scores agree with MTEB's published ones to 5e-5.
* BEIR retrieval sets found in the data dir (ArguAna, NFCorpus, SciFact, ...; nDCG@10). ArguAna and
  NFCorpus in the shared data match MTEB's corpora, queries and qrels character for character.
  llmcse always drops a retrieved document whose id equals the query id; MTEB does that only for
  some tasks (ArguAna, Quora, ...), so a task where MTEB keeps them is exported only when no such
  document was dropped.
* SICK-R is **not** exported: MTEB scores all 9,927 SICK pairs (train + trial + test) as its "test"
  split, llmcse (like SentEval) the 4,927 pairs of the test split.
* SentEval transfer tasks are **not** exported: MTEB has no MR, CR, SUBJ, MPQA, SST2, TREC or MRPC,
  and its classification protocol differs (logistic regression on 10 small undersampled training
  sets, 8 examples per label by default, instead of a cross-validated probe on all the data).
* ``geometry`` (alignment/uniformity) is not an MTEB task.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from llmcse.errors import DataFormatError, LlmcseError, MissingDataError
from llmcse.utils.io import atomic_write_json

logger = logging.getLogger(__name__)

# The mteb release whose result format these files follow (checked field by field against its
# TaskResult / ModelMeta); written as "mteb_version" because mteb's loader reads old formats by it.
MTEB_FORMAT_VERSION = "2.26.24"
LANGUAGES = ["eng-Latn"]  # every exported task is English, one "default" subset
NO_REVISION = "no_revision_available"  # mteb's own placeholder for a model without a hub revision

# llmcse result key -> mteb metric key; scores are divided by 100 on the way
METRICS = {
    "sts": ("cosine_spearman", "cosine_pearson"),
    "retrieval": ("ndcg_at_10", "recall_at_100", "map_at_10", "mrr_at_10"),
}


@dataclass(frozen=True)
class MtebTask:
    """One MTEB task an llmcse task maps to (metadata as mteb 2.26 pins it).

    Attributes:
        name: MTEB's task name (the file name).
        revision: The dataset revision MTEB pins (``dataset_revision`` in its files).
        kind: ``sts`` or ``retrieval``: which metrics are exported.
        split: MTEB's evaluation split; only the llmcse result on the same split is exported.
        ignore_identical_ids: Whether MTEB drops retrieved documents whose id is the query id.
        note: What differs from MTEB's data, if anything (goes into the file's ``llmcse`` key).
    """

    name: str
    revision: str
    kind: str
    split: str = "test"
    ignore_identical_ids: bool = False
    note: str = ""


STS_TEXT_NOTE = ("same pairs and gold scores as MTEB's copy; llmcse reads the original SemEval release, whose text "
                 "MTEB's copy preprocesses slightly differently")
BEIR_NOTE = "data not compared with MTEB's copy by llmcse"
MTEB_TASKS: dict[str, MtebTask] = {
    "sts12": MtebTask("STS12", "a0d554a64d88156834ff5ae9920b964011b16384", "sts", note=STS_TEXT_NOTE),
    "sts13": MtebTask("STS13", "7e90230a92c190f1bf69ae9002b8cea547a64cca", "sts", note=STS_TEXT_NOTE),
    "sts14": MtebTask("STS14", "6031580fec1f6af667f0bd2da0a551cf4f0b2375", "sts", note=STS_TEXT_NOTE),
    "sts15": MtebTask("STS15", "ae752c7c21bf194d8b67fd573edf7ae58183cbe3", "sts", note=STS_TEXT_NOTE),
    "sts16": MtebTask("STS16", "4d8694f8f0e0100860b497b999b3dbed754a0513", "sts", note=STS_TEXT_NOTE),
    "stsb": MtebTask("STSBenchmark", "b0fddb56ed78048fa8b90373c8a3cfc37b684831", "sts"),
    "arguana": MtebTask("ArguAna", "c22ab2a51041ffd869aaddef7af8d8215647e41a", "retrieval", ignore_identical_ids=True),
    "nfcorpus": MtebTask("NFCorpus", "ec0fa4fe99da2ff19ca1214b7966684033a58814", "retrieval"),
    # BEIR folder names (as the BEIR zips unpack) of the other MTEB(eng) retrieval tasks
    "scifact": MtebTask("SciFact", "d56462d0e63a25450459c4f213e49ffdb866f7f9", "retrieval", note=BEIR_NOTE),
    "scidocs": MtebTask("SCIDOCS", "f8c2fcf00f625baaa80f62ec5bd9e1fff3b8ae88", "retrieval", note=BEIR_NOTE),
    "fiqa": MtebTask("FiQA2018", "27a168819829fe9bcd655c2df245fb19452e8e06", "retrieval",
                     ignore_identical_ids=True, note=BEIR_NOTE),
    "trec-covid": MtebTask("TRECCOVID", "bb9466bac8153a0349341eb1b22e06409e78ef4e", "retrieval", note=BEIR_NOTE),
    "quora": MtebTask("QuoraRetrieval", "e4e08e0b7dbe3c8700f0daef558ff32256715259", "retrieval",
                      ignore_identical_ids=True, note=BEIR_NOTE),
    "nq": MtebTask("NQ", "b774495ed302d8c44a3a7ea25c90dbce03968f31", "retrieval", note=BEIR_NOTE),
    "hotpotqa": MtebTask("HotpotQA", "ab518f4d6fcca38d87c25209f94beba119d02014", "retrieval", note=BEIR_NOTE),
    "fever": MtebTask("FEVER", "bea83ef9e8fb933d90a2f1d5515737465d613e12", "retrieval",
                      ignore_identical_ids=True, note=BEIR_NOTE),
    "climate-fever": MtebTask("ClimateFEVER", "47f2ac6acb640fc46020b02a5b59fdda04d39380", "retrieval", note=BEIR_NOTE),
    "dbpedia-entity": MtebTask("DBPedia", "c0f706b76e590d620bd6618b3ca8efdd34e2d659", "retrieval", note=BEIR_NOTE),
    "msmarco": MtebTask("MSMARCO", "c5a29a104738b98a9e76336939199e264163d4a0", "retrieval", split="dev",
                        ignore_identical_ids=True, note=BEIR_NOTE),
}

TRANSFER_REASON = ("MTEB has no SentEval transfer task, and its classification protocol (logistic regression on "
                   "10 undersampled training sets of 8 examples per label) is not SentEval's probe")
NOT_IN_MTEB = {
    "sick": "MTEB's SICK-R scores all 9,927 SICK pairs (train + trial + test); llmcse's sick is the 4,927-pair "
            "test split, a different number",
    "geometry": "alignment/uniformity is not an MTEB task",
    **{name: TRANSFER_REASON for name in ("mr", "cr", "subj", "mpqa", "sst2", "trec", "mrpc")},
}

# bundled model names (llmcse.utils.modelspec) -> the hub id MTEB knows them by
HUB_IDS = {
    "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "gemma-3-270m": "google/gemma-3-270m",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class MtebExport:
    """What ``export_mteb`` did.

    Attributes:
        model_dir: ``OUT/results/<model>/<revision>``.
        model_name: The MTEB model name used.
        revision: The revision folder used.
        written: Task files written (model_meta.json not included).
        skipped: llmcse result key -> why it has no MTEB file.
    """

    model_dir: Path
    model_name: str
    revision: str
    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------- reading results.json


def load_results(path: str | Path) -> tuple[dict, Path]:
    """``results.json`` (or a folder holding one) as written by ``llmcse eval``.

    Returns:
        (the results dict, the path of the file read)

    Raises:
        MissingDataError: No such file, or a folder without results.json.
        DataFormatError: Not JSON, or not an llmcse results file.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / "results.json").is_file():
            nested = sorted(str(p) for p in path.glob("*/results.json"))
            hint = (f"; it has one per pooling, export each: {', '.join(nested)}" if nested
                    else "; give the --output-dir of an llmcse eval run")
            raise MissingDataError(f"{path}: no results.json in this folder{hint}")
        path = path / "results.json"
    if not path.is_file():
        raise MissingDataError(f"{path}: file not found")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataFormatError(path, None, f"not readable as JSON ({e})") from None
    if not isinstance(results, dict) or not isinstance(results.get("tasks"), dict) or "model" not in results:
        raise DataFormatError(path, None, "not an llmcse results file: expected 'model' and 'tasks' "
                                          "(written by llmcse eval --output-dir)")
    return results, path


def default_model_name(results: dict) -> str:
    """The MTEB model name for a results file: the hub id of a bundled or hub model, else ``local/<name>``.

    A run whose numbers describe something other than the plain hub model (a pooling override, a
    PromptEOL template, retrieval with expansions or several vectors per document) gets ``local/``
    and a suffix, so it never passes for the hub model's own score.
    """
    spec = str(results["model"]).strip()
    config = results.get("config") or {}
    prefix, colon, rest = spec.partition(":")
    suffixes = []
    if colon and not Path(spec).exists() and "/" not in prefix:  # prompteol:NAME, hf:NAME (a model-spec prefix)
        spec, suffixes = rest, [prefix]
    if results.get("pooling"):
        suffixes.append(str(results["pooling"]))
    if config.get("expansions"):
        suffixes.append("expanded")
    if config.get("multirep"):
        suffixes.append("multirep")
    base = HUB_IDS.get(spec.lower())
    if base is None and spec.lower() == "bm25":
        base = "local/bm25"
    if base is None and _HUB_ID.match(spec) and not Path(spec).expanduser().exists():
        base = spec
    if base is None:  # a local folder
        base = "local/" + (Path(spec.rstrip("/\\")).name or "model")
    if suffixes:
        base = "local/" + base.rsplit("/", 1)[-1] + "".join(f"-{s}" for s in suffixes)
    return base


def model_name_as_path(name: str) -> str:
    """MTEB's folder name for a model name (``ModelMeta.model_name_as_path``)."""
    return name.replace("/", "__").replace(" ", "_")


# ----------------------------------------------------------------------------- building the files


def task_of(key: str) -> tuple[str, str]:
    """(bare task name, split) of a results.json key: ``stsb`` -> (stsb, default), ``beir/arguana:dev``
    -> (arguana, dev)."""
    name, _, split = key.partition(":")
    return name.rsplit("/", 1)[-1].lower(), split


def skip_reason(key: str, entry: dict) -> str | None:
    """Why the result under ``key`` gets no MTEB file, or None when it maps to one."""
    name, _ = task_of(key)
    task = MTEB_TASKS.get(name)
    if task is None:
        return NOT_IN_MTEB.get(name, f"no MTEB task is known for {name!r} (known: {', '.join(sorted(MTEB_TASKS))})")
    if entry.get("split") != task.split:
        return f"MTEB scores {task.name} on split {task.split!r}; this result is on {entry.get('split')!r}"
    if entry.get("main_score") is None:
        return f"the score is undefined (null): {entry.get('warning', 'see results.json')}"
    if task.kind == "retrieval" and not task.ignore_identical_ids and entry.get("ignored_identical_ids"):
        return (f"llmcse dropped {entry['ignored_identical_ids']} retrieved document(s) whose id equals the query id; "
                f"MTEB keeps them for {task.name}, so the numbers differ")
    return None


def _timestamp(iso_date: str | None) -> float | None:
    if not iso_date:
        return None
    try:
        return dt.datetime.fromisoformat(iso_date).timestamp()
    except ValueError:
        return None


def task_result(key: str, entry: dict, results: dict, source: Path) -> dict:
    """One MTEB task file (``mteb.TaskResult`` as its ``to_disk`` writes it) for one llmcse result."""
    task = MTEB_TASKS[task_of(key)[0]]
    scores = {m: round(entry[m] / 100, 6) for m in METRICS[task.kind] if entry.get(m) is not None}
    scores["main_score"] = round(entry["main_score"] / 100, 6)
    scores.update(hf_subset="default", languages=list(LANGUAGES), mteb_version=MTEB_FORMAT_VERSION)
    versions = results.get("versions") or {}
    provenance = {
        "note": "scores computed by llmcse eval, not by mteb" + (f"; {task.note}" if task.note else ""),
        "source": str(source),
        "task": key,
        "split": entry["split"],
        "model": results["model"],
        "pooling": results.get("pooling"),
        "config_hash": results.get("config_hash"),
        "device": results.get("device"),
        "dtype": results.get("dtype"),
        "llmcse_version": versions.get("llmcse"),
    }
    return {
        "dataset_revision": task.revision,
        "task_name": task.name,
        "mteb_version": MTEB_FORMAT_VERSION,
        "scores": {task.split: [scores]},
        "evaluation_time": entry.get("evaluation_time"),
        "kg_co2_emissions": None,
        "date": _timestamp(results.get("date")),
        "evaluation_phases": None,
        "llmcse": provenance,
    }


def model_meta(name: str, revision: str, results: dict) -> dict:
    """``model_meta.json``: every field of mteb's ``ModelMeta.to_dict()``, unknown ones null."""
    lexical = str(results["model"]).lower() == "bm25"
    hub = not name.startswith("local/")
    return {
        "loader_kwargs": {}, "name": name, "revision": revision, "release_date": None, "languages": None,
        "n_parameters": None, "n_active_parameters_override": None, "n_embedding_parameters": None,
        "memory_usage_mb": None, "max_tokens": None, "embed_dim": None, "license": None, "open_weights": None,
        "public_training_code": None, "public_training_data": None,
        "framework": [] if lexical else ["Sentence Transformers", "PyTorch"],
        "reference": f"https://huggingface.co/{name}" if hub else None,
        "similarity_fn_name": None if lexical else "cosine",  # llmcse scores every dense model by cosine
        "use_instructions": None, "training_datasets": None, "adapted_from": None, "superseded_by": None,
        "modalities": ["text"], "model_type": ["sparse"] if lexical else ["dense"], "citation": None,
        "contacts": None, "experiment_kwargs": None, "output_dtypes": None, "extra_requirements_groups": None,
        "loader": None, "is_cross_encoder": False,
    }


# ----------------------------------------------------------------------------- writing


def _is_llmcse_export(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "llmcse" in data


def _refuse_foreign_files(model_dir: Path, task_files: list[Path], meta: dict) -> None:
    """Never replace a file llmcse did not write (e.g. from a real mteb run in the same cache)."""
    for path in task_files:
        if path.exists() and not _is_llmcse_export(path):
            raise LlmcseError(f"{path} exists and was not written by llmcse (an mteb run?); it is left alone: "
                              "choose another output folder or --revision")
    meta_path = model_dir / "model_meta.json"
    if not meta_path.exists():
        return
    try:
        same = json.loads(meta_path.read_text(encoding="utf-8")) == meta
    except (OSError, ValueError):
        same = False
    others = [p for p in model_dir.glob("*.json") if p.name != "model_meta.json"]
    if not same and (not others or not all(_is_llmcse_export(p) for p in others)):
        raise LlmcseError(f"{meta_path} exists, differs from llmcse's and sits beside results llmcse did not "
                          "write; it is left alone: choose another output folder or --revision")


def export_mteb(results: str | Path | dict, out_dir: str | Path, *, model_name: str | None = None,
                revision: str | None = None, source: str | Path | None = None) -> MtebExport:
    """Write MTEB result files for every task of an llmcse results file that MTEB also has.

    Args:
        results: A ``results.json`` path, the folder holding it, or the results dict itself.
        out_dir: An MTEB results cache folder; files go to ``out_dir/results/<model>/<revision>/``.
        model_name: MTEB model name (``org/name``); default: see ``default_model_name``.
        revision: Model revision folder; default MTEB's ``no_revision_available``.
        source: Where a results dict came from (recorded in each file); ignored for a path.

    Returns:
        The files written and, for every other result, why it was skipped.

    Raises:
        LlmcseError: Bad input (missing/invalid results file, a model name without "/", a revision
            with a path separator) or an existing file llmcse did not write in the way.
    """
    if isinstance(results, dict):
        source_path = Path(source) if source else Path("results.json")
    else:
        results, source_path = load_results(results)
    name = model_name or default_model_name(results)
    if "/" not in name or name.startswith("/") or name.endswith("/"):
        raise LlmcseError(f"MTEB model name {name!r} must look like 'organization/model_name'")
    revision = revision or NO_REVISION
    if not revision.strip() or any(c in revision for c in "/\\") or revision in (".", ".."):
        raise LlmcseError(f"revision {revision!r} must be a plain folder name (no '/', not '.' or '..')")
    out_dir = Path(out_dir).expanduser()
    model_dir = out_dir / "results" / model_name_as_path(name) / revision
    export = MtebExport(model_dir, name, revision)

    planned: dict[Path, dict] = {}
    for key, entry in results["tasks"].items():
        reason = skip_reason(key, entry) if isinstance(entry, dict) else "not a task result"
        if reason is None:
            payload = task_result(key, entry, results, source_path)
            target = model_dir / f"{payload['task_name']}.json"
            if target in planned:
                reason = f"{planned[target]['llmcse']['task']} already maps to {payload['task_name']}"
            else:
                planned[target] = payload
        if reason is not None:
            export.skipped[key] = reason
            logger.debug("mteb export: %s skipped: %s", key, reason)
    if not planned:
        logger.warning("no result in %s maps to an MTEB task; nothing written", source_path)
        return export
    meta = model_meta(name, revision, results)
    for config_key in ("expansions", "multirep"):
        if (results.get("config") or {}).get(config_key):
            logger.warning("retrieval was scored with --%s: the MTEB files describe that system, not the bare model",
                           config_key)
    _refuse_foreign_files(model_dir, list(planned), meta)
    try:
        for target, payload in planned.items():
            atomic_write_json(target, payload)
            export.written.append(target)
        atomic_write_json(model_dir / "model_meta.json", meta)
    except OSError as e:
        raise LlmcseError(f"cannot write MTEB results under {model_dir}: {e}") from None
    return export


def summary(export: MtebExport, out_dir: str | Path) -> str:
    """Lines for the CLI: what was written, what was skipped and why, how to load it."""
    lines = [f"MTEB results ({export.model_name}, revision {export.revision}): {export.model_dir}"]
    lines += [f"  {p.name}" for p in export.written]
    lines += [f"  skipped {key}: {reason}" for key, reason in export.skipped.items()]
    if export.written:
        lines.append(f"  load with: mteb.ResultCache({str(out_dir)!r}).load_results()")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- llmcse eval --format mteb

FORMATS = ("llmcse", "mteb")


def check_format(fmt: str, output_dir: str | Path | None) -> None:
    """``eval --format``: refused before anything is evaluated when it cannot be honoured."""
    if fmt not in FORMATS:
        raise LlmcseError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "mteb" and not output_dir:
        raise LlmcseError("--format mteb writes MTEB files beside results.json: give --output-dir")


def export_eval_runs(output_dir: str | Path, runs: list[dict]) -> list[MtebExport]:
    """After ``llmcse eval --format mteb``: each results.json the run wrote (one per pooling, in
    ``OUTPUT_DIR/<pooling>/`` when there are several) gets its MTEB files in ``<that folder>/mteb``."""
    output_dir = Path(output_dir)
    folders = [output_dir / str(r["pooling"]) for r in runs] if len(runs) > 1 else [output_dir]
    exports = []
    for folder in folders:
        export = export_mteb(folder / "results.json", folder / "mteb")
        logger.info("%s", summary(export, folder / "mteb"))
        exports.append(export)
    return exports
