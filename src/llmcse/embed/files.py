"""Write embeddings to .npy/.parquet (the texts to embed are read by ``data.readers.read_texts``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmcse.errors import LlmcseError

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
