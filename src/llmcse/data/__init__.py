"""Typed records, file loaders and the benchmark task registry."""

from llmcse.data.paths import resolve_data_dir
from llmcse.data.records import (
    BeirDataset,
    Doc,
    LabeledPair,
    LabeledSentence,
    Qrel,
    Query,
    STSPair,
    Triplet,
)

__all__ = [
    "BeirDataset",
    "Doc",
    "LabeledPair",
    "LabeledSentence",
    "Qrel",
    "Query",
    "STSPair",
    "Triplet",
    "resolve_data_dir",
]
