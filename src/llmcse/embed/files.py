"""Read texts to embed from .txt/.jsonl/.tsv and write embeddings to .npy/.parquet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from llmcse.data.readers import iter_jsonl, iter_text_lines, iter_tsv, read_tsv_header
from llmcse.errors import DataFormatError, LlmcseError

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


OUTPUT_TYPES = (".npy", ".parquet")


def check_output_path(path: str | Path) -> None:
    """Refuse an output ``write_embeddings`` cannot write, before any model is loaded or text encoded.

    Raises:
        LlmcseError: An unsupported extension, a folder at ``path``, or ``.parquet`` without pyarrow.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_TYPES:
        raise LlmcseError(f"{path}: unsupported output type {suffix or '(none)'!r}; use .npy or .parquet")
    if path.is_dir():
        raise LlmcseError(f"{path}: is a folder; --output names the file to write")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise LlmcseError('writing .parquet needs pyarrow: pip install "llmcse[parquet]"') from None


def write_embeddings(path: str | Path, ids: list[str], texts: list[str], embeddings: np.ndarray) -> None:
    """``.npy``: the (n, dim) float32 matrix in input order. ``.parquet``: columns id, text, embedding."""
    path = Path(path)
    check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    tmp = path.with_name(f".{path.name}.tmp")
    if suffix == ".npy":
        with open(tmp, "wb") as f:
            np.save(f, embeddings.astype(np.float32))
    elif suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise LlmcseError('writing .parquet needs pyarrow: pip install "llmcse[parquet]"') from None
        dim = embeddings.shape[1]
        table = pa.table(
            {
                "id": pa.array(ids, pa.string()),
                "text": pa.array(texts, pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embeddings.astype(np.float32).ravel()), dim),
            }
        )
        pq.write_table(table, tmp)
    else:
        raise LlmcseError(f"{path}: unsupported output type {suffix!r}; use .npy or .parquet")
    tmp.replace(path)
