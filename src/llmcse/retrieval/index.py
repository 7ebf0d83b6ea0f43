"""A dense index on disk: ``llmcse index`` builds it, ``llmcse search`` queries it.

Folder layout (plain files, readable without llmcse):
    vectors.npy   (n_docs, dim) float32 unit vectors, row i = docs.jsonl line i
    docs.jsonl    {"_id", "title"} per row
    index.json    model (spec, local path, fingerprint), expansion weights, corpus md5, counts
    manifest.json, shards/NNNNN.npy   the per-shard work (see llmcse.utils.shards)
    provenance.jsonl   with --executor ray: which node and process embedded each shard, in how long
The corpus is embedded in shards of ``shard_size`` documents, so memory stays flat on big corpora,
several processes can share the work (Ray actors: ``--executor ray``; or ``--shard K/N`` processes
started by hand), and a killed run continues from its finished shards.

The three index files belong together, so they are never rewritten in place: a build writes
them into a sibling folder ``.<name>.llmcse-new-<host>-<pid>`` and swaps that folder in (the old
one is renamed aside first, then deleted). A killed build leaves either the old index or the
new one at ``out``, never a mix; if it died between the two renames there is no index at ``out``
(``search`` refuses and says so) and the next ``llmcse index`` puts the old one back first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from pathlib import Path

import numpy as np

from llmcse.errors import DataFormatError, LlmcseError, MissingDataError
from llmcse.utils.io import atomic_save_npy, atomic_write_json, atomic_write_text, file_md5

logger = logging.getLogger(__name__)

FORMAT = "llmcse-index"
INDEX_FILES = ("vectors.npy", "docs.jsonl", "index.json")  # replaced together, by the folder swap
WORK_ENTRIES = ("manifest.json", "shards", "logs")  # the resumable work; carried over to the new folder
NEW, OLD = "llmcse-new", "llmcse-old"  # sibling folders of a swap in progress


def build_index(model_name: str, corpus_path: str | Path, out: str | Path, *, expansions: str | None = None,
                weights: str = "1,1,1", shard_size: int = 10_000, device: str | None = None, batch_size: int = 64,
                shard: tuple[int, int] | None = None, executor: str | None = None, ray_address: str | None = None,
                actors: int | None = None) -> dict:
    """Embed the corpus shard by shard into ``out/shards/``, then assemble the index and swap it in.

    ``shard=(K, N)``: this process is worker K of N and embeds only shards with index % N == K
    (workers on other processes, GPUs or machines sharing ``out`` take the rest); a worker never
    assembles (several may finish at once): a run without ``shard`` does. A rerun skips finished shards.
    ``executor="ray"``: the pending shards are embedded by ``actors`` Ray actors (``ray_address``:
    see ``llmcse.utils.executor.run_shards``; ``out`` must be on storage every node sees); who
    embedded each shard is appended to ``out/provenance.jsonl``. ``None`` (all three): the current
    ``llmcse.utils.executor.using(...)`` scope's settings, else this process.

    Raises:
        LlmcseError: ``out`` exists and is not an llmcse index folder (nothing is written then).
    """
    from llmcse.data.loaders import load_beir_corpus
    from llmcse.utils.executor import resolve
    from llmcse.utils.shards import pending, prepare_manifest

    executor, ray_address, actors = resolve(executor, ray_address, actors)
    if executor != "local" and shard is not None:
        raise LlmcseError("--shard K/N is for processes started by hand; with --executor ray, Ray shares out the shards")
    out = Path(out)
    recover_interrupted_swap(out)
    check_index_folder(out)
    corpus = load_beir_corpus(corpus_path)
    doc_ids = list(corpus)
    model = model_identity(model_name)
    out.mkdir(parents=True, exist_ok=True)
    # The model fingerprint is part of the shards' identity: a model retrained in place must not
    # have its new vectors mixed with shards embedded by the old weights.
    identity = {"kind": FORMAT, "model": model_name, "model_fingerprint": model["fingerprint"],
                "corpus_md5": file_md5(corpus_path), "expansions": expansions,
                "expansions_md5": file_md5(expansions) if expansions else None, "weights": weights}
    manifest = prepare_manifest(out, identity, len(doc_ids), shard_size, ".npy")
    todo = pending(out, manifest, shard)
    if todo:
        _embed_shards(model_name, corpus, doc_ids, out, todo, expansions, weights, device, batch_size,
                      executor=executor, ray_address=ray_address, actors=actors)
    left = pending(out, manifest, None)
    if left or shard is not None:
        logger.info("%d of %d shards done; %d left", len(manifest["shards"]) - len(left), len(manifest["shards"]), len(left))
        return {"model": model_name, "documents": len(doc_ids), "complete": False,
                "shards_done": len(manifest["shards"]) - len(left), "shards": len(manifest["shards"])}
    meta = {"format": FORMAT, "model": model_name, "model_path": model["path"], "model_fingerprint": model["fingerprint"],
            "corpus": str(corpus_path), "corpus_md5": identity["corpus_md5"], "documents": len(doc_ids),
            "expansions": expansions, "weights": _weights_label(weights) if expansions else None,
            "shards": len(manifest["shards"]), "complete": True}
    return _assemble(out, manifest, corpus, doc_ids, meta)


def _weights_label(weights: str) -> str:
    from llmcse.retrieval.expansion import ExpansionWeights

    return ExpansionWeights.parse(weights).label()


def _embed_shards(model_name, corpus, doc_ids, out: Path, todo: list[dict], expansions, weights, device, batch_size,
                  executor: str = "local", ray_address: str | None = None, actors: int = 1) -> None:
    """Embed the ``todo`` shards here or on Ray; each task carries its documents and their expansions."""
    import functools

    from llmcse.data.loaders import load_expansions
    from llmcse.utils.executor import run_shards
    from llmcse.utils.shards import PROVENANCE

    synthetic = load_expansions(expansions) if expansions else {}
    tasks = []
    for s in todo:
        ids = doc_ids[s["start"]:s["end"]]
        tasks.append({"index": s["index"], "path": str((out / s["file"]).resolve()), "doc_ids": ids,
                      "docs": {d: corpus[d] for d in ids}, "expansions": {d: synthetic[d] for d in ids if d in synthetic}})
    factory = functools.partial(IndexShardWorker, model_name, weights, device=device, batch_size=batch_size)
    run_shards(factory, tasks, executor=executor, ray_address=ray_address, actors=actors,
               uses_gpu=device in (None, "cuda"), provenance_file=out / PROVENANCE if executor == "ray" else None,
               desc="index shards")


class IndexShardWorker:
    """Embeds one shard of documents per call into its ``.npy`` file; the model loads once, at construction
    (once per Ray actor)."""

    def __init__(self, model_name: str, weights: str, device: str | None = None, batch_size: int = 64):
        from llmcse.embed.encode import CachedEncoder
        from llmcse.embed.models import load_embedder
        from llmcse.retrieval.expansion import ExpansionWeights

        self.encoder = CachedEncoder(load_embedder(model_name, device=device), batch_size=batch_size,
                                     show_progress_bar=False)  # the shard bar counts the progress
        self.weights = ExpansionWeights.parse(weights)

    def __call__(self, task: dict) -> dict:
        from llmcse.retrieval.expansion import ExpandedDenseSearcher
        from llmcse.utils.executor import require_shared_folder

        path = Path(task["path"])
        if path.exists():  # a shard Ray ran again after its node died, though its file was written
            return {"documents": 0}
        require_shared_folder(path.parent)
        searcher = ExpandedDenseSearcher(self.encoder, task["expansions"], self.weights)
        vectors = searcher.document_vectors(task["docs"], task["doc_ids"]).astype(np.float32)  # (docs, dim)
        self.encoder.clear()  # the cache would otherwise grow with the corpus
        atomic_save_npy(path, vectors)  # a shard file is complete or absent
        return {"documents": len(task["doc_ids"])}


def _assemble(out: Path, manifest: dict, corpus, doc_ids, meta: dict) -> dict:
    """Write the three index files into a fresh sibling folder, then swap it in for ``out``."""
    parts = []
    for s in manifest["shards"]:
        part = _load_npy(out / s["file"], hint="delete it and rerun llmcse index to embed that shard again")
        if part.ndim != 2 or part.shape[0] != s["end"] - s["start"]:
            raise DataFormatError(out / s["file"], None, f"holds {part.shape} vectors, expected {s['end'] - s['start']} "
                                  "rows; delete it and rerun llmcse index to embed that shard again")
        parts.append(part)
    vectors = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)  # (n_docs, dim)
    meta = {**meta, "dim": int(vectors.shape[1]) if vectors.size else 0}
    new = _sibling(out, NEW)
    new.mkdir()
    try:
        atomic_save_npy(new / "vectors.npy", vectors)
        atomic_write_text(new / "docs.jsonl", "".join(json.dumps({"_id": d, "title": corpus[d].title or corpus[d].text[:80]},
                                                                 ensure_ascii=False) + "\n" for d in doc_ids))
        atomic_write_json(new / "index.json", meta)  # last: a folder with index.json holds all three
        _swap_in(new, out)
    except BaseException:
        recover_interrupted_swap(out, own=True)  # what a later run would do after a kill, done now
        raise
    return meta


# --- the folder swap --------------------------------------------------------------------------

def _rename(src: Path, dst: Path) -> None:
    """One step of the swap (a separate function so tests can stop a build between two steps)."""
    src.rename(dst)


def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _sibling(out: Path, kind: str, owner: str | None = None) -> Path:
    return out.parent / f".{out.name}.{kind}-{owner or _owner()}"


def _swap_in(new: Path, out: Path) -> None:
    """``new`` (index files only) becomes ``out``; the work and any other files move over from the old folder."""
    old = _sibling(out, OLD)
    if out.exists():
        _rename(out, old)  # from here until the next rename there is no index at ``out``: search refuses
    _rename(new, out)
    _fsync_dir(out.parent)
    if old.exists():
        _retire_old(old, out)


def _retire_old(old: Path, out: Path) -> None:
    """Move everything but the old index files from ``old`` into ``out``; delete the old index files."""
    for entry in sorted(old.iterdir()):
        if _is_index_file(entry.name):
            entry.unlink()
        elif not (out / entry.name).exists():
            _rename(entry, out / entry.name)
    try:
        old.rmdir()
    except OSError:
        logger.warning("%s: left in place, it still holds %s", old, sorted(p.name for p in old.iterdir()))


def _discard_new(new: Path) -> None:
    """Delete an unfinished new folder: only the index files (and their temporary files) llmcse writes."""
    for entry in new.iterdir():
        if _is_index_file(entry.name):
            entry.unlink()
    try:
        new.rmdir()
    except OSError:
        logger.warning("%s: left in place, it holds files llmcse did not write: %s", new, sorted(p.name for p in new.iterdir()))


def _is_index_file(name: str) -> bool:
    """An index file or the temporary file of its atomic write (``.vectors.npy.XXXX.tmp``)."""
    return name in INDEX_FILES or any(name.startswith(f".{f}.") and name.endswith(".tmp") for f in INDEX_FILES)


def _fsync_dir(folder: Path) -> None:
    """Make the renames durable (a power cut must not undo the swap's order)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _leftovers(out: Path, kind: str) -> list[tuple[Path, str]]:
    """(folder, owner) of swap folders next to ``out``."""
    prefix = f".{out.name}.{kind}-"
    if not out.parent.is_dir():
        return []
    return [(p, p.name[len(prefix):]) for p in sorted(out.parent.iterdir()) if p.is_dir() and p.name.startswith(prefix)]


def _owner_is_gone(owner: str) -> bool:
    """True when ``owner`` (host-pid) is a process of this host that no longer runs."""
    host, _, pid = owner.rpartition("-")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's build (a shared folder): not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def recover_interrupted_swap(out: str | Path, own: bool = False) -> None:
    """Finish or undo a swap that a killed build left behind (``own``: this process's, after an exception).

    Killed between the two renames: ``out`` is missing and its old folder is put back. Killed after
    them: the old folder's work and files are moved over to the new index. An unfinished new folder
    is deleted (its shards are safe in ``out``, so the rerun assembles again).
    """
    out = Path(out)
    for kind in (OLD, NEW):
        for folder, owner in _leftovers(out, kind):
            # At start-up a folder named after this very process is a dead one's (its pid was reused).
            if not (owner == _owner() if own else owner == _owner() or _owner_is_gone(owner)):
                if not own:
                    logger.warning("%s: an index build in another process (%s) may still be running; left alone", folder, owner)
                continue
            if kind == OLD and not out.exists():
                logger.warning("%s: an index build was interrupted mid-swap; putting the previous index back", out)
                _rename(folder, out)
            elif kind == OLD and (out / "index.json").is_file():  # the new index made it in
                _retire_old(folder, out)
            elif kind == OLD:
                logger.warning("%s: left in place: %s is not the index that replaced it", folder, out)
            else:
                _discard_new(folder)


def check_index_folder(out: str | Path) -> None:
    """Refuse to build into an existing folder llmcse did not make: the swap replaces the folder."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise LlmcseError(f"--out {out}: exists and is not a folder")
    names = {p.name for p in out.iterdir()}
    if not names or names <= {"logs"} or _made_by_llmcse(out):  # logs/: what the old --workers processes wrote first
        return
    raise LlmcseError(f"--out {out}: the folder exists, is not empty and is not an llmcse index "
                      f"(no index.json or manifest.json from llmcse index; it holds {sorted(names)[:5]}); "
                      "choose a new or empty folder")


def _made_by_llmcse(folder: Path) -> bool:
    meta = _read_json_dict(folder / "index.json")
    if meta is not None and (meta.get("format") == FORMAT or {"model", "documents", "complete"} <= set(meta)):
        return True  # older indexes have no "format" key
    manifest = _read_json_dict(folder / "manifest.json")
    identity = manifest.get("identity") if manifest else None
    return isinstance(identity, dict) and (identity.get("kind") == FORMAT or {"corpus_md5", "weights"} <= set(identity))


def _read_json_dict(path: Path) -> dict | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


# --- model identity ---------------------------------------------------------------------------

SMALL_FILE = 4 << 20  # hashed whole; larger files (weights) by size plus their first and last MiB


def model_identity(spec: str) -> dict:
    """``{"spec", "path", "fingerprint"}``: the local files ``spec`` resolves to and a hash of them.

    Bundled names resolve to their package's copy, hub ids to the local Hugging Face cache; the
    fingerprint is None when there are no local files to hash (a hub id not downloaded yet).
    The hash reads config and tokenizer files whole and weight files by size, first and last MiB:
    cheap on multi-GB models, and a retrained model changes them (header and first tensors).
    """
    path = _local_model_path(spec.removeprefix("prompteol:"))
    return {"spec": spec, "path": str(path) if path else None, "fingerprint": _fingerprint(path) if path else None}


def _local_model_path(spec: str) -> Path | None:
    from llmcse.utils.modelspec import BUNDLED_MODELS

    if Path(spec).exists():
        return Path(spec).resolve()
    if spec.lower() in BUNDLED_MODELS:
        found = BUNDLED_MODELS[spec.lower()][0]()
        return found.resolve() if found else None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec, local_files_only=True))
    except Exception:  # not a hub id, or not in the cache: nothing local to fingerprint
        return None


def _fingerprint(path: Path) -> str:
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not _skipped(p.relative_to(path)))
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(path) if f != path else f.name}\0".encode())
        h.update(_file_digest(f).encode())
    return h.hexdigest()[:16]


def _skipped(rel: Path) -> bool:
    """Files that do not shape a vector: hidden ones, docs, training checkpoints beside the model."""
    return any(part.startswith(".") or part.startswith("checkpoint-") for part in rel.parts) or rel.suffix == ".md"


def _file_digest(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.md5(str(size).encode())
    with open(path, "rb") as f:
        if size <= SMALL_FILE:
            h.update(f.read())
        else:
            h.update(f.read(1 << 20))
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()


# --- search -----------------------------------------------------------------------------------

def search_index(index_dir: str | Path, queries: list[str], k: int = 10, device: str | None = None) -> list[list[dict]]:
    """Top ``k`` hits per query: ``{"rank", "_id", "title", "score"}``.

    Raises:
        LlmcseError: Not an index, a damaged or incomplete one (the file is named), a model
            that changed since the index was built, or ``k`` < 1.
    """
    from llmcse.embed.encode import CachedEncoder
    from llmcse.embed.models import load_embedder
    from llmcse.retrieval.dense import exact_top_k

    if k < 1:
        raise LlmcseError(f"-k must be >= 1, got {k}")
    index_dir = Path(index_dir)
    meta = load_index_meta(index_dir)
    _check_model(index_dir, meta)
    vectors = _load_npy(index_dir / "vectors.npy", hint="rebuild the index with llmcse index")
    if vectors.shape != (meta["documents"], meta["dim"]):
        raise DataFormatError(index_dir / "vectors.npy", None, f"holds {vectors.shape} vectors but index.json says "
                              f"({meta['documents']}, {meta['dim']}); rebuild the index with llmcse index")
    docs = _load_docs(index_dir / "docs.jsonl", meta["documents"])
    if not docs:
        return [[] for _ in queries]
    model = load_embedder(meta["model"], device=device)
    _check_dimension(index_dir, meta, vectors, model.get_embedding_dimension())  # before encoding anything
    query_emb = CachedEncoder(model).encode(queries, prompt_name="query")  # (n_queries, dim)
    _check_dimension(index_dir, meta, vectors, query_emb.shape[1])
    scores, indices = exact_top_k(query_emb.astype(np.float32), vectors, k)
    return [[{"rank": r + 1, "_id": docs[i]["_id"], "title": docs[i].get("title", ""), "score": round(float(s), 4)}
             for r, (s, i) in enumerate(zip(row_s, row_i))] for row_s, row_i in zip(scores.tolist(), indices.tolist())]


def load_index_meta(index_dir: Path) -> dict:
    """``index.json``, checked: a complete index with the keys search needs."""
    path = index_dir / "index.json"
    if not path.is_file():
        interrupted = _leftovers(index_dir, OLD)
        if interrupted and not index_dir.exists():
            raise LlmcseError(f"{index_dir}: no index here: a build was interrupted while swapping it in "
                              f"(the previous index is in {interrupted[0][0]}); rerun llmcse index to restore or finish it")
        raise LlmcseError(f"{index_dir} is not an llmcse index (no index.json); build one with llmcse index")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise DataFormatError(path, None, f"not UTF-8 text ({e.reason}); rebuild the index with llmcse index") from None
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, f"invalid JSON: {e.msg} at column {e.colno}; "
                              "rebuild the index with llmcse index") from None
    need = {"model": str, "documents": int, "dim": int}
    bad = [key for key, kind in need.items() if not isinstance(meta, dict) or not isinstance(meta.get(key), kind)
           or isinstance(meta.get(key), bool)]
    if bad:
        raise DataFormatError(path, None, f"missing or invalid {', '.join(bad)}; rebuild the index with llmcse index")
    if meta.get("complete") is not True:
        raise LlmcseError(f"{path}: the index is not complete; rerun llmcse index")
    return meta


def _check_model(index_dir: Path, meta: dict) -> None:
    """Refuse a model whose files changed since the index was built (its queries would not match)."""
    if not meta.get("model_fingerprint"):
        return  # an index from before fingerprints, or a model with no local files at build time
    now = model_identity(meta["model"])
    if now["fingerprint"] != meta["model_fingerprint"]:
        where = f"now {now['path']}" if now["path"] else "not found locally"
        raise LlmcseError(f"{index_dir}: built with model {meta['model']} ({meta.get('model_path')}, fingerprint "
                          f"{meta['model_fingerprint']}), but that model changed ({where}, fingerprint {now['fingerprint']}); "
                          "rebuild the index with llmcse index")


def _check_dimension(index_dir: Path, meta: dict, vectors: np.ndarray, model_dim: int | None) -> None:
    if model_dim is not None and model_dim != vectors.shape[1]:
        raise LlmcseError(f"{index_dir}: the index holds {vectors.shape[1]}-dim vectors but {meta['model']} gives "
                          f"{model_dim}-dim ones; rebuild the index with this model")


def _load_npy(path: Path, hint: str) -> np.ndarray:
    if not path.is_file():
        raise MissingDataError(f"{path}: file not found; {hint}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataFormatError(path, None, f"unreadable .npy (truncated or damaged?): {e}; {hint}") from None


def _load_docs(path: Path, n_docs: int) -> list[dict]:
    from llmcse.data.readers import iter_jsonl

    docs = []
    for line_no, obj in iter_jsonl(path):
        if not isinstance(obj.get("_id"), str):
            raise DataFormatError(path, line_no, "no string '_id'; rebuild the index with llmcse index")
        docs.append(obj)
    if len(docs) != n_docs:
        raise DataFormatError(path, None, f"{len(docs)} rows, but the index holds {n_docs} vectors; "
                              "rebuild the index with llmcse index")
    return docs
