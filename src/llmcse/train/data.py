"""Training sets with exactly the loss's columns, in the loss's order (sentence-transformers
reads columns by position; a stray id column would silently become an input)."""

from __future__ import annotations

from pathlib import Path

from llmcse.data.loaders import load_sentences, load_triplets
from llmcse.errors import DataFormatError, LlmcseError
from llmcse.utils.jsonl import read_jsonl

# recipe data kind -> columns handed to the loss
COLUMNS = {
    "unlabeled": ["anchor", "positive"],  # the same sentence twice: dropout makes the two views (unsup SimCSE)
    "triplets": ["anchor", "positive", "negative"],
    # not "negative": sentence-transformers warns when a column of that name is not third (it is fourth here)
    "sts3": ["anchor", "positive", "intermediate", "hard_negative"],
}


def read_rows(path: str | Path, kind: str) -> list[tuple[str, ...]]:
    """Rows for ``kind`` from: .txt (sentences), .tsv (sent0/sent1/hard_neg triplets) or
    .jsonl (records from ``llmcse generate``/``filter``: seed, positive, [intermediate,] negative)."""
    path = Path(path)
    if kind not in COLUMNS:
        raise LlmcseError(f"unknown training data kind {kind!r}; one of {', '.join(COLUMNS)}")
    if kind == "unlabeled":
        return [(s, s) for s in load_sentences(path)]
    if path.suffix == ".tsv":
        if kind != "triplets":
            raise LlmcseError(f"{path}: a .tsv holds NLI triplets; recipe needs {kind} records (.jsonl)")
        return [tuple(t) for t in load_triplets(path)]
    fields = ["seed", "positive", "negative"] if kind == "triplets" else ["seed", "positive", "intermediate", "negative"]
    rows = []
    for line_no, record in enumerate(read_jsonl(path), start=1):
        missing = [f for f in fields if not isinstance(record.get(f), str) or not record[f].strip()]
        if missing:
            raise DataFormatError(path, line_no, f"record lacks {missing} needed for {kind} training")
        rows.append(tuple(record[f] for f in fields))
    return rows


def to_dataset(rows: list[tuple[str, ...]], kind: str):
    from datasets import Dataset

    columns = COLUMNS[kind]
    return Dataset.from_dict({c: [r[i] for r in rows] for i, c in enumerate(columns)})
