"""Append-only JSONL that survives ``kill -9``: each batch is written, flushed and fsynced;
a torn last line (the process died mid-write) is cut off when the file is reopened."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from llmcse.errors import DataFormatError

logger = logging.getLogger(__name__)


def repair_torn_tail(path: Path) -> int:
    """Truncate an unfinished last line. Returns the number of bytes removed."""
    if not path.is_file():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        # Scan back to the last newline; everything after it is a torn write.
        pos, chunk = size, 1 << 16
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            block = f.read(pos - start)
            nl = block.rfind(b"\n")
            if nl != -1:
                keep = start + nl + 1
                break
            pos = start
        else:
            keep = 0
        f.truncate(keep)
    logger.warning("%s: removed %d bytes of an unfinished last line (interrupted run)", path, size - keep)
    return size - keep


def read_jsonl(path: Path) -> list[dict]:
    records = []
    if not path.is_file():
        return records
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataFormatError(path, line_no, f"invalid JSON ({e.msg}); was this file edited by hand?") from None
    return records


class AppendOnlyJsonl:
    """Open (repairing a torn tail), read what is there, append durable batches."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_torn_tail(self.path)

    def read(self) -> list[dict]:
        return read_jsonl(self.path)

    def append(self, records: Iterable[dict]) -> int:
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if not lines:
            return 0
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
        return lines.count("\n")
