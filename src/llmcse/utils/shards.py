"""Fixed shards of a work list, so separate processes (or machines sharing a folder) can each take
some, a killed one loses at most its current shard, and a rerun does only what is missing.

A shard is done when its output file exists: outputs are written to a temporary name and
renamed, so a file is either complete or absent. ``manifest.json`` records what the shards are
for (model, input md5, settings); a rerun with other settings starts the shards afresh instead
of mixing old and new vectors.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from llmcse.errors import LlmcseError
from llmcse.utils.io import atomic_write_json

logger = logging.getLogger(__name__)


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
    shard_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, manifest)
    return manifest


def pending(folder: Path, manifest: dict, shard: tuple[int, int] | None) -> list[dict]:
    """Shards without an output file, limited to worker K's share (index % N == K) when given."""
    return [s for s in manifest["shards"] if not (folder / s["file"]).exists()
            and (shard is None or s["index"] % shard[1] == shard[0])]


def without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` minus ``option VALUE`` / ``option=VALUE`` (a command relaunched per worker)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def spawn_workers(argv: list[str], workers: int, log_dir: Path) -> None:
    """Run ``llmcse <argv> --shard k/N`` for k < N as parallel processes and wait for all.

    Each worker gets an equal share of the CPU threads (one-thread BLAS pools fighting over the
    same cores are slower than one process), and its own GPU when there are enough.
    """
    import torch

    log_dir.mkdir(parents=True, exist_ok=True)
    gpus = torch.cuda.device_count()
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = []
    for k in range(workers):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        if gpus >= workers:
            env["CUDA_VISIBLE_DEVICES"] = str(k)
        log = log_dir / f"worker-{k}-of-{workers}.log"
        cmd = [sys.executable, "-m", "llmcse.cli", *argv, "--shard", f"{k}/{workers}"]
        logger.info("worker %d/%d: %s (log %s)", k, workers, " ".join(cmd[2:]), log)
        with open(log, "w", encoding="utf-8") as f:
            procs.append((k, log, subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)))
    failed = [(k, log) for k, log, p in procs if p.wait() != 0]
    if failed:
        raise LlmcseError("worker(s) failed: " + ", ".join(f"{k} (see {log})" for k, log in failed)
                          + "; finished shards are kept, rerun to continue")
