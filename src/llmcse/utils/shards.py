"""Fixed shards of a work list, so separate processes (Ray actors, or ``--shard K/N`` processes on
machines sharing a folder) can each take some, a killed one loses at most its current shard, and a
rerun does only what is missing. Where each shard runs is ``llmcse.utils.executor``'s business.

A shard is done when its output file exists: outputs are written to a temporary name and
renamed, so a file is either complete or absent. (LLM stages append to their shard file chunk by
chunk instead, so a killed worker keeps its finished chunks; their shard is done when the file
holds all its items.) ``manifest.json`` records what the shards are
for (model, input md5, settings); a rerun with other settings starts the shards afresh instead
of mixing old and new vectors.
"""

from __future__ import annotations

import logging
from pathlib import Path

from llmcse.errors import LlmcseError
from llmcse.utils.io import atomic_write_json

logger = logging.getLogger(__name__)

PROVENANCE = "provenance.jsonl"  # beside manifest.json: one row per finished shard (node, host, pid, seconds)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> (K, N): this process is worker K of N (0-based)."""
    if text is None:
        return None
    k, slash, n = text.partition("/")
    try:
        worker, workers = int(k), int(n)
    except ValueError:
        worker, workers = -1, 0
    if not slash or workers < 1 or not 0 <= worker < workers:
        raise LlmcseError(f"--shard {text!r}: expected K/N with 0 <= K < N, e.g. 0/4")
    return worker, workers


def shard_ranges(n_items: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, end) of every shard, in order."""
    if shard_size < 1:
        raise LlmcseError(f"shard size must be >= 1, got {shard_size}")
    return [(start, min(start + shard_size, n_items)) for start in range(0, n_items, shard_size)]


def auto_shard_size(n_items: int, unit: int = 1, max_units: int = 16, target_shards: int = 64) -> int:
    """A shard size for ``n_items``: whole ``unit``s (a stage's chunk, so chunk boundaries and seeds are
    those of a single-process run), about ``target_shards`` shards (work for every actor, small losses on
    a crash), at most ``max_units`` units each. It depends on the input only, never on the number of
    actors, so a rerun with more actors keeps the finished shards."""
    units = -(-max(n_items, 1) // unit)  # ceil
    return unit * min(max_units, max(1, -(-units // target_shards)))


def prepare_manifest(folder: Path, identity: dict, n_items: int, shard_size: int, suffix: str) -> dict:
    """Write (or check) ``folder/manifest.json``; drop shard files made for another identity."""
    import json

    shard_dir = folder / "shards"
    shards = [{"index": i, "start": s, "end": e, "file": f"shards/{i:05d}{suffix}"}
              for i, (s, e) in enumerate(shard_ranges(n_items, shard_size))]
    manifest = {"identity": identity, "items": n_items, "shard_size": shard_size, "shards": shards}
    path = folder / "manifest.json"
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if {k: old.get(k) for k in ("identity", "items", "shard_size")} == {k: manifest[k] for k in ("identity", "items", "shard_size")}:
            return old
        stale = list(shard_dir.glob(f"*{suffix}")) if shard_dir.is_dir() else []
        logger.info("%s: settings or input changed; discarding %d shard(s) made for the old ones", folder, len(stale))
        for file in stale:
            file.unlink()
        (folder / PROVENANCE).unlink(missing_ok=True)  # who made the discarded shards
    shard_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, manifest)
    return manifest


def pending(folder: Path, manifest: dict, shard: tuple[int, int] | None) -> list[dict]:
    """Shards without an output file, limited to worker K's share (index % N == K) when given."""
    return [s for s in manifest["shards"] if not (folder / s["file"]).exists()
            and (shard is None or s["index"] % shard[1] == shard[0])]
