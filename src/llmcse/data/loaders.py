"""Loaders for the benchmark formats: STS TSV, BEIR folders, transfer TSV, NLI triplets, plain text,
and the synthetic query / keyword expansions ``llmcse expand`` writes.

Every loader either returns typed records or raises ``DataFormatError`` naming file and line.
Irregularities that the field's convention keeps (BEIR qrels pointing to missing documents)
are counted in ``BeirDataset.notes`` and logged instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

from llmcse.data.readers import (
    iter_jsonl,
    iter_text_lines,
    iter_tsv,
    parse_float,
    parse_int,
    read_tsv_header,
    require_text,
)
from llmcse.data.records import BeirDataset, Doc, LabeledPair, LabeledSentence, Query, STSPair, Triplet
from llmcse.errors import DataFormatError, MissingDataError

logger = logging.getLogger(__name__)


def load_sts(path: str | Path) -> list[STSPair]:
    """Read an STS file with header ``sentence1 sentence2 score [subset]``."""
    path = Path(path)
    pairs = []
    for line_no, row in iter_tsv(path, ["sentence1", "sentence2", "score"]):
        pairs.append(
            STSPair(
                sentence1=require_text(path, line_no, "sentence1", row["sentence1"]),
                sentence2=require_text(path, line_no, "sentence2", row["sentence2"]),
                score=parse_float(path, line_no, "score", row["score"]),
                subset=row.get("subset", ""),
            )
        )
    if not pairs:
        raise DataFormatError(path, None, "no data rows")
    return pairs


def load_triplets(path: str | Path) -> list[Triplet]:
    """Read NLI triplets with header ``sent0 sent1 hard_neg`` (SimCSE's layout)."""
    path = Path(path)
    return [
        Triplet(
            require_text(path, n, "sent0", row["sent0"]),
            require_text(path, n, "sent1", row["sent1"]),
            require_text(path, n, "hard_neg", row["hard_neg"]),
        )
        for n, row in iter_tsv(path, ["sent0", "sent1", "hard_neg"])
    ]


def load_sentences(path: str | Path) -> list[str]:
    """Read unlabeled sentences, one per line (blank lines skipped)."""
    return [text for _, text in iter_text_lines(path)]


def load_labeled_sentences(path: str | Path) -> list[LabeledSentence] | list[LabeledPair]:
    """Read a transfer-task TSV: ``sentence label`` or ``sentence1 sentence2 label``."""
    path = Path(path)
    if "sentence1" in read_tsv_header(path):
        return [
            LabeledPair(
                require_text(path, n, "sentence1", row["sentence1"]),
                require_text(path, n, "sentence2", row["sentence2"]),
                require_text(path, n, "label", row["label"]),
            )
            for n, row in iter_tsv(path, ["sentence1", "sentence2", "label"])
        ]
    return [
        LabeledSentence(require_text(path, n, "sentence", row["sentence"]), require_text(path, n, "label", row["label"]))
        for n, row in iter_tsv(path, ["sentence", "label"])
    ]


def _load_id_text_jsonl(path: Path, kind: str) -> list[tuple[int, dict]]:
    """Read a BEIR JSONL file and check ids: present, strings, unique."""
    rows, first_seen = [], {}
    for line_no, obj in iter_jsonl(path):
        if "_id" not in obj:
            raise DataFormatError(path, line_no, f"{kind} has no '_id' field")
        doc_id = str(obj["_id"])
        if doc_id in first_seen:
            raise DataFormatError(path, line_no, f"duplicate {kind} id {doc_id!r} (first seen on line {first_seen[doc_id]})")
        first_seen[doc_id] = line_no
        if not isinstance(obj.get("text", ""), str) or not isinstance(obj.get("title", ""), str):
            raise DataFormatError(path, line_no, f"{kind} {doc_id!r}: 'text' and 'title' must be strings")
        rows.append((line_no, obj))
    return rows


def load_beir_corpus(path: str | Path) -> dict[str, Doc]:
    """Read ``corpus.jsonl``; empty documents are kept (they just rank low) and counted."""
    path = Path(path)
    corpus = {}
    for _, obj in _load_id_text_jsonl(path, "document"):
        doc_id = str(obj["_id"])
        corpus[doc_id] = Doc(doc_id, obj.get("text", "") or "", obj.get("title", "") or "")
    empty = sum(1 for d in corpus.values() if not d.default_text().strip())
    if empty:
        logger.warning("%s: %d document(s) have no title and no text", path, empty)
    return corpus


def load_beir_queries(path: str | Path) -> dict[str, Query]:
    path = Path(path)
    queries = {}
    for line_no, obj in _load_id_text_jsonl(path, "query"):
        query_id = str(obj["_id"])
        queries[query_id] = Query(query_id, require_text(path, line_no, "query text", obj.get("text", "")))
    return queries


def load_beir_qrels(
    path: str | Path, queries: dict[str, Query], corpus: dict[str, Doc]
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Read ``qrels/<split>.tsv`` (``query-id corpus-id score``).

    A qrel for an unknown query is an error (the files do not belong together). A qrel for
    a document missing from the corpus is kept, as BEIR does (the query cannot reach a
    perfect score), and counted.

    Returns:
        (qrels as {query_id: {doc_id: relevance}}, counts of kept irregularities)
    """
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    unknown_docs = 0
    for line_no, row in iter_tsv(path, ["query-id", "corpus-id", "score"]):
        query_id, doc_id = row["query-id"].strip(), row["corpus-id"].strip()
        relevance = parse_int(path, line_no, "score", row["score"])
        if query_id not in queries:
            raise DataFormatError(path, line_no, f"qrel points to unknown query id {query_id!r} (not in queries.jsonl)")
        if doc_id not in corpus:
            unknown_docs += 1
        qrels.setdefault(query_id, {})[doc_id] = relevance
    notes = {"qrels_unknown_doc": unknown_docs} if unknown_docs else {}
    if unknown_docs:
        logger.info("%s: %d qrel(s) point to documents missing from the corpus; kept, as BEIR does", path, unknown_docs)
    return qrels, notes


def load_beir(folder: str | Path, split: str = "test") -> BeirDataset:
    """Load a BEIR folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

    Only queries that have judgements in the split are kept (BEIR's loader does the same).
    """
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for needed in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_path):
        if not needed.is_file():
            raise MissingDataError(f"{needed}: file not found (a BEIR folder needs corpus.jsonl, queries.jsonl, qrels/{split}.tsv)")
    corpus = load_beir_corpus(folder / "corpus.jsonl")
    queries = load_beir_queries(folder / "queries.jsonl")
    qrels, notes = load_beir_qrels(qrels_path, queries, corpus)
    queries = {qid: q for qid, q in queries.items() if qid in qrels}
    return BeirDataset(name=folder.name, corpus=corpus, queries=queries, qrels=qrels, split=split, notes=notes)


def load_expansions(path: str | Path) -> dict[str, dict]:
    """An ``llmcse expand`` (or ``filter-expansions``) file: doc id -> {"queries": [...], "keywords": [...]}.

    A malformed line names file and line.
    """
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"expansions file not found: {path}")
    found: dict[str, dict] = {}
    for line_no, record in iter_jsonl(path):
        doc_id = record.get("_id")
        if not isinstance(doc_id, str) or not doc_id:
            raise DataFormatError(path, line_no, "expansion record lacks a string '_id'")
        for key in ("queries", "keywords"):
            value = record.get(key, [])
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise DataFormatError(path, line_no, f"{key!r} must be a list of strings")
        found[doc_id] = {"queries": record.get("queries", []), "keywords": record.get("keywords", [])}
    return found
