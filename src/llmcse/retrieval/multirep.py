"""Multi-representation retrieval: a document is several vectors, scored by the best of them.

arXiv 2409.16497 (Table 5) reports that indexing each *sentence* of a document beats one vector
per document on every data set it tries. Here a document's units are chosen by a spec:

* ``sent``: its sentences (a regex splitter; pieces under ``min_words`` words are merged into a
  neighbour, so "e.g." or "Fig. 2." do not become units), each prefixed with the title;
* ``pass``: its sentences packed into passages of up to ``passage_words`` words;
* ``doc``: the whole document as one more unit (what plain retrieval embeds);
* ``queries``: each of its synthetic queries (``llmcse expand``) as its own unit, embedded as a
  query (as ``ExpandedDenseSearcher`` embeds them), instead of being averaged into one vector.

Aggregate, documented: ``score(q, d) = (1 - mix) * max_u cos(q, u) + mix * cos(q, e(d))``, the
max over the document's units (MaxP), optionally mixed with the whole-document cosine (``mix``:
``"sent+queries:0.3"``). ``mix = 0`` is the plain max.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

import numpy as np

from llmcse.data.records import Doc, Query
from llmcse.errors import LlmcseError

logger = logging.getLogger(__name__)

UNITS = ("sent", "pass", "doc", "queries")
# a sentence ends at . ! or ? (maybe closed by a quote or bracket), then space, then something that
# can start a sentence; splitting on every ". " would cut "et al. 2019" and "vs. placebo" apart
_BOUNDARY = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
# a piece ending in one of these did not end a sentence ("Smith et al. 2019", "(Fig. 2)", "Dr. Lee")
ABBREVIATIONS = frozenset("al. fig. figs. e.g. i.e. vs. cf. etc. approx. ca. no. nos. dr. mr. mrs. ms. prof. st. "
                          "eq. ref. refs. vol. p. pp. ed. eds. jan. feb. mar. apr. jun. jul. aug. sep. sept. oct. "
                          "nov. dec.".split())


def split_sentences(text: str, min_words: int = 6) -> list[str]:
    """Sentences of ``text``; a piece of fewer than ``min_words`` words joins the next one (the last
    joins the one before), so abbreviations and headings do not become units of their own."""
    pieces: list[str] = []
    for piece in (p.strip() for p in _BOUNDARY.split(text.strip())):
        if not piece:
            continue
        if pieces and pieces[-1].split()[-1].lower().lstrip("([") in ABBREVIATIONS:
            pieces[-1] = f"{pieces[-1]} {piece}"
        else:
            pieces.append(piece)
    merged: list[str] = []
    carry = ""
    for piece in pieces:
        piece = f"{carry} {piece}".strip() if carry else piece
        if len(piece.split()) < min_words:
            carry = piece
            continue
        merged.append(piece)
        carry = ""
    if carry:
        if merged:
            merged[-1] = f"{merged[-1]} {carry}"
        else:
            merged.append(carry)
    return merged


def pack_passages(sentences: list[str], passage_words: int = 64) -> list[str]:
    """Consecutive sentences packed into passages of at most ``passage_words`` words (a longer
    sentence is a passage of its own)."""
    passages: list[str] = []
    current: list[str] = []
    for s in sentences:
        if current and len(" ".join(current + [s]).split()) > passage_words:
            passages.append(" ".join(current))
            current = []
        current.append(s)
    if current:
        passages.append(" ".join(current))
    return passages


@dataclass(frozen=True)
class MultiRepSpec:
    units: tuple[str, ...] = ("sent",)
    mix: float = 0.0  # weight of the whole-document cosine in the score

    @classmethod
    def parse(cls, text: str) -> MultiRepSpec:
        """``"sent"``, ``"sent+doc"``, ``"sent+queries"``, ``"pass+doc+queries:0.3"`` (``:mix``)."""
        body, _, mix_text = text.strip().partition(":")
        units = tuple(u.strip() for u in body.split("+") if u.strip())
        bad = [u for u in units if u not in UNITS]
        if not units or bad:
            raise LlmcseError(f"multi-representation {text!r}: units joined by '+' from {', '.join(UNITS)} "
                              "(e.g. sent+doc+queries), optionally ':mix' (e.g. sent:0.3)")
        try:
            mix = float(mix_text) if mix_text else 0.0
        except ValueError:
            raise LlmcseError(f"multi-representation {text!r}: the mix after ':' must be a number in [0, 1]") from None
        if not 0.0 <= mix <= 1.0:
            raise LlmcseError(f"multi-representation {text!r}: the mix after ':' must be in [0, 1]")
        if "sent" in units and "pass" in units:
            raise LlmcseError(f"multi-representation {text!r}: choose sent or pass, not both")
        return cls(units, mix)

    @property
    def uses_expansions(self) -> bool:
        return "queries" in self.units

    def label(self) -> str:
        return "+".join(self.units) + (f":{self.mix:g}" if self.mix else "")


def document_units(doc: Doc, spec: MultiRepSpec, *, min_words: int = 6, passage_words: int = 64) -> list[str]:
    """The texts embedded as documents for one document (synthetic queries are added apart)."""
    texts: list[str] = []
    if "sent" in spec.units or "pass" in spec.units:
        sentences = split_sentences(doc.text, min_words)
        if "pass" in spec.units:
            sentences = pack_passages(sentences, passage_words)
        texts += [f"{doc.title} {s}".strip() if doc.title else s for s in sentences]
    if "doc" in spec.units or not texts:  # a document with no text still has its title / itself
        texts.append(doc.default_text())
    return list(dict.fromkeys(texts))


class MultiRepSearcher:
    """Search where each document is the max over its units' cosines (see the module docstring).

    Args:
        encoder: A ``CachedEncoder`` (unit-length embeddings: dot product = cosine).
        spec: Units and mix (``MultiRepSpec`` or its text).
        expansions: doc id -> {"queries": [...]} for the ``queries`` unit.
        query_chunk: Queries scored per matmul; memory is query_chunk x n_units scores.
    """

    def __init__(self, encoder, spec: MultiRepSpec | str, expansions: dict[str, dict] | None = None, *,
                 min_words: int = 6, passage_words: int = 64, query_chunk: int = 256):
        self.encoder = encoder
        self.spec = MultiRepSpec.parse(spec) if isinstance(spec, str) else spec
        if self.spec.uses_expansions and expansions is None:
            raise LlmcseError(f"multi-representation {self.spec.label()} has synthetic queries as units: give expansions")
        self.expansions = expansions or {}
        self.min_words, self.passage_words, self.query_chunk = min_words, passage_words, query_chunk
        self.last_units: int | None = None  # units indexed by the latest search (for reports)

    def unit_vectors(self, corpus: dict[str, Doc], doc_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(n_units, dim) unit vectors and (n_units,) the index of each unit's document."""
        doc_texts, doc_owner, query_texts, query_owner = [], [], [], []
        for i, d in enumerate(doc_ids):
            units = document_units(corpus[d], self.spec, min_words=self.min_words, passage_words=self.passage_words)
            doc_texts += units
            doc_owner += [i] * len(units)
            if self.spec.uses_expansions:
                queries = list(dict.fromkeys(self.expansions.get(d, {}).get("queries", [])))
                query_texts += queries
                query_owner += [i] * len(queries)
        vectors = [self.encoder.encode(doc_texts, prompt_name="document")]
        if query_texts:  # synthetic queries are queries: embed them as the model embeds queries
            vectors.append(self.encoder.encode(query_texts, prompt_name="query"))
        return np.concatenate(vectors), np.array(doc_owner + query_owner, dtype=np.int64)

    def search(self, corpus: dict[str, Doc], queries: dict[str, Query], top_k: int = 100) -> dict[str, dict[str, float]]:
        """Same contract as ``DenseSearcher.search``: query id -> {doc id: score}, best ``top_k``."""
        import torch

        from llmcse.retrieval.dense import _stable_order

        doc_ids, query_ids = list(corpus), list(queries)
        if not doc_ids or not query_ids:
            return {q: {} for q in query_ids}
        started = time.perf_counter()
        units, owner = self.unit_vectors(corpus, doc_ids)  # (n_units, dim), (n_units,)
        query_emb = self.encoder.encode([queries[q].text for q in query_ids], prompt_name="query")  # (n_q, dim)
        whole = self.encoder.encode([corpus[d].default_text() for d in doc_ids], prompt_name="document") \
            if self.spec.mix else None  # (n_docs, dim)
        self.last_units = len(units)
        k = min(top_k, len(doc_ids))
        owner_t = torch.from_numpy(owner)
        units_t = torch.from_numpy(np.ascontiguousarray(units, dtype=np.float32))
        run: dict[str, dict[str, float]] = {}
        with torch.inference_mode():
            for start in range(0, len(query_ids), self.query_chunk):
                q = torch.from_numpy(np.ascontiguousarray(query_emb[start:start + self.query_chunk], dtype=np.float32))
                per_unit = q @ units_t.T  # (chunk, n_units)
                best = torch.full((len(q), len(doc_ids)), float("-inf"))  # (chunk, n_docs)
                best.scatter_reduce_(1, owner_t.expand(len(q), -1), per_unit, reduce="amax")
                if whole is not None:
                    best = (1 - self.spec.mix) * best + self.spec.mix * (q @ torch.from_numpy(
                        np.ascontiguousarray(whole, dtype=np.float32)).T)
                scores, indices = torch.topk(best, k, dim=1)  # (chunk, k)
                scores, indices = _stable_order(scores.numpy(), indices.numpy())  # ties by document order, as dense
                for qid, row_s, row_i in zip(query_ids[start:start + self.query_chunk], scores.tolist(), indices.tolist()):
                    run[qid] = {doc_ids[i]: float(s) for s, i in zip(row_s, row_i)}
        logger.info("multi-representation %s: %d units for %d documents (%.1f per document), %.1f s",
                    self.spec.label(), len(units), len(doc_ids), len(units) / len(doc_ids), time.perf_counter() - started)
        return run
