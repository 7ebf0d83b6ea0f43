"""Typed records for every kind of data llmcse reads or writes.

NamedTuples, as in ir_datasets: ids first, then text, then labels. They are cheap,
immutable and unpack like tuples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class STSPair(NamedTuple):
    """A sentence pair with a gold similarity score (STS12-16: 0-5, SICK-R: 1-5)."""

    sentence1: str
    sentence2: str
    score: float
    subset: str = ""


class Doc(NamedTuple):
    """A BEIR corpus document."""

    doc_id: str
    text: str
    title: str = ""

    def default_text(self) -> str:
        """What a retriever reads: title and text, as BEIR/MTEB join them."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


class Query(NamedTuple):
    query_id: str
    text: str


class Qrel(NamedTuple):
    query_id: str
    doc_id: str
    relevance: int


class Triplet(NamedTuple):
    """(anchor, positive, hard negative): SimCSE's NLI columns sent0, sent1, hard_neg."""

    anchor: str
    positive: str
    negative: str


class LabeledSentence(NamedTuple):
    """A transfer-task example: one sentence and its class label."""

    sentence: str
    label: str


class LabeledPair(NamedTuple):
    """A transfer-task example on a sentence pair (MRPC)."""

    sentence1: str
    sentence2: str
    label: str


@dataclass
class BeirDataset:
    """A BEIR retrieval set: documents, queries and one split's relevance judgements.

    ``qrels`` maps query id -> {doc id: relevance}, the shape pytrec_eval wants.
    ``notes`` holds counted irregularities the field's convention keeps (e.g. qrels
    that point to documents missing from the corpus).
    """

    name: str
    corpus: dict[str, Doc]
    queries: dict[str, Query]
    qrels: dict[str, dict[str, int]]
    split: str = "test"
    notes: dict[str, int] = field(default_factory=dict)
