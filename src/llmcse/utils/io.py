"""Small file helpers: atomic writes and hashing."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers never see a half-written file."""
    _atomic_write(path, "w", lambda f: f.write(text))


def atomic_save_npy(path: str | Path, array) -> None:
    """``np.save`` with the same guarantee: the file is complete or absent (resumable shards rely on it)."""
    import numpy as np

    _atomic_write(path, "wb", lambda f: np.save(f, array))


def _atomic_write(path: str | Path, mode: str, write) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target (rename is
    atomic on POSIX within one file system)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON: NaN and infinities (which ``json.dumps`` would write as bare
    ``NaN``/``Infinity``, invalid JSON that strict readers reject) become ``null``, with a warning
    naming where they were."""
    clean, where = json_safe(obj)
    if where:
        logger.warning("%s: non-finite value(s) written as null at %s", path, ", ".join(where[:10])
                       + (f" and {len(where) - 10} more" if len(where) > 10 else ""))
    atomic_write_text(path, json.dumps(clean, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def json_safe(obj: Any, _where: str = "") -> tuple[Any, list[str]]:
    """A copy of ``obj`` with every non-finite float (also numpy floats) replaced by None, and the
    dotted paths of the replaced values (``tasks.sts12.main_score``)."""
    if isinstance(obj, float) or type(obj).__name__ in ("float32", "float64", "float16"):
        return (obj, []) if math.isfinite(obj) else (None, [_where or "(top level)"])
    if isinstance(obj, dict):
        out, where = {}, []
        for key, value in obj.items():
            out[key], w = json_safe(value, f"{_where}.{key}" if _where else str(key))
            where += w
        return out, where
    if isinstance(obj, (list, tuple)):
        out, where = [], []
        for i, value in enumerate(obj):
            item, w = json_safe(value, f"{_where}[{i}]")
            out.append(item)
            where += w
        return out, where
    return obj, []


def file_md5(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """MD5 of a file's bytes: the same hash as ``shared/data/MANIFEST.tsv`` uses."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def config_hash(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable config (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]
