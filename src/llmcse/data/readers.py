"""Line readers that turn every malformed line into a ``DataFormatError`` naming file and line.

The shared data's TSV files are unquoted (fields never hold tabs or newlines but do hold
``"``), so we split on tabs ourselves; ``csv``'s default quoting would corrupt rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmcse.errors import DataFormatError, MissingDataError


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text without newline), decoding each line strictly."""
    if not path.is_file():
        raise MissingDataError(f"{path}: file not found")
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataFormatError(
                    path, line_no, f"invalid UTF-8 at byte {e.start} of the line ({raw[e.start:e.start + 4]!r})"
                ) from None
            if line_no == 1 and text.startswith("\ufeff"):
                text = text[1:]  # a BOM is harmless; tolerate it
            yield line_no, text.rstrip("\r\n")


def read_tsv_header(path: str | Path) -> list[str]:
    """The column names of a headed TSV file (first line; BOM tolerated), without reading the rest."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: file not found")
    with open(path, "rb") as f:
        return f.readline().decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n").split("\t")


def iter_tsv(path: str | Path, required: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Read a headed, unquoted TSV file.

    Args:
        path: The file.
        required: Column names that must be in the header.

    Yields:
        (line number, {column: value}) for each non-blank data row.

    Raises:
        DataFormatError: Missing column, wrong number of fields, bad UTF-8.
    """
    path = Path(path)
    lines = _decoded_lines(path)
    try:
        _, header_line = next(lines)
    except StopIteration:
        raise DataFormatError(path, 1, f"empty file; expected a header with columns {required}") from None
    header = header_line.split("\t")
    missing = [c for c in required if c not in header]
    if missing:
        raise DataFormatError(path, 1, f"missing column(s) {missing} in header {header}; expected {required}")
    for line_no, line in lines:
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataFormatError(
                path, line_no, f"expected {len(header)} tab-separated fields ({', '.join(header)}), found {len(fields)}"
            )
        yield line_no, dict(zip(header, fields))


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Read a JSONL file: one JSON object per line; blank lines are skipped."""
    path = Path(path)
    for line_no, line in _decoded_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, line_no, f"invalid JSON: {e.msg} at column {e.colno}") from None
        if not isinstance(obj, dict):
            raise DataFormatError(path, line_no, f"expected a JSON object, found {type(obj).__name__}")
        yield line_no, obj


def iter_text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Read a plain text file: one item per line, outer whitespace stripped, blank lines skipped."""
    for line_no, line in _decoded_lines(Path(path)):
        text = line.strip()
        if text:
            yield line_no, text


def require_text(path: Path, line_no: int, column: str, value: str) -> str:
    """Strip a text field; an empty one is an error (it would embed to noise)."""
    text = value.strip()
    if not text:
        raise DataFormatError(path, line_no, f"empty {column}")
    return text


def parse_float(path: Path, line_no: int, column: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise DataFormatError(path, line_no, f"{column} {value!r} is not a number") from None
    if not math.isfinite(number):  # float() also reads "nan", "inf", "-Infinity"
        raise DataFormatError(path, line_no, f"{column} {value.strip()!r} is not a finite number")
    return number


def parse_int(path: Path, line_no: int, column: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataFormatError(path, line_no, f"{column} {value!r} is not an integer") from None
