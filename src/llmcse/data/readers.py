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

from llmcse.errors import DataFormatError, LlmcseError, MissingDataError


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


TSV_TEXT_COLUMNS = ("sentence", "text", "sentence1")


def read_texts(path: str | Path, field: str | None = None) -> tuple[list[str], list[str]]:
    """Read (ids, texts) from a file.

    * ``.txt``: one text per line (blank lines skipped); ids are line numbers.
    * ``.jsonl``: ``field`` (default ``text``; BEIR rows with ``title`` get ``title text``);
      ids from ``_id``/``id`` when present, else line numbers.
    * ``.tsv``: headed, unquoted; column ``field`` (default: sentence, text or sentence1).

    Raises:
        DataFormatError: A row lacks the field, its value is not a string, or its text is empty
            (file and line named).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    ids, texts = [], []
    if suffix == ".txt":
        for line_no, text in iter_text_lines(path):
            ids.append(str(line_no))
            texts.append(text)
    elif suffix == ".jsonl":
        key = field or "text"
        for line_no, obj in iter_jsonl(path):
            if key not in obj:
                raise DataFormatError(path, line_no, f"no field {key!r} (pass --field to choose one of {sorted(obj)})")
            # str() would embed null, 42 or ["x"] as the texts "None", "42", "['x']"
            text = _string_field(path, line_no, key, obj[key]).strip()
            title = obj.get("title") if field is None else None
            if title is not None:
                title = _string_field(path, line_no, "title", title)
            if title:
                text = f"{title} {text}".strip()
            if not text:
                raise DataFormatError(path, line_no, f"empty {key!r}")
            ids.append(str(obj.get("_id", obj.get("id", line_no))))
            texts.append(text)
    elif suffix == ".tsv":
        header = read_tsv_header(path)
        column = field or next((c for c in TSV_TEXT_COLUMNS if c in header), None)
        if column is None:
            raise DataFormatError(path, 1, f"no text column; header {header}; pass --field")
        for line_no, row in iter_tsv(path, [column]):
            text = row[column].strip()
            if not text:
                raise DataFormatError(path, line_no, f"empty {column!r}")
            ids.append(row.get("id", str(line_no)))
            texts.append(text)
    else:
        raise LlmcseError(f"{path}: unsupported input type {suffix!r}; use .txt, .jsonl or .tsv")
    if not texts:
        raise DataFormatError(path, None, "no texts to embed")
    return ids, texts


def _string_field(path: Path, line_no: int, key: str, value) -> str:
    if not isinstance(value, str):
        kinds = {bool: "a JSON boolean", int: "a JSON number", float: "a JSON number", list: "a JSON array",
                 dict: "a JSON object"}
        shown = "null" if value is None else f"{json.dumps(value)[:60]} ({kinds.get(type(value), type(value).__name__)})"
        raise DataFormatError(path, line_no, f"{key!r} is {shown}, expected a string")
    return value
