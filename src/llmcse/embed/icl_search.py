"""``llmcse icl-search``: pick the in-context demo for PromptEOL on an STS dev split, as the paper did.

Each candidate (sentence, word) becomes the single demo in front of the template; the candidate
whose embeddings give the highest Spearman on the dev pairs wins (no demo at all is the
baseline row). Candidates: the shipped ``DEMOS`` or a file (.tsv ``sentence<TAB>word`` or .jsonl
``{"sentence", "word"}``), which may itself be LLM-made. Selection never looks at a test split.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from llmcse.embed.prompteol import DEMOS, Demo, build_prompteol_model
from llmcse.errors import DataFormatError, LlmcseError

logger = logging.getLogger(__name__)


def load_candidates(path: str | Path | None) -> list[Demo]:
    if path is None:
        return list(DEMOS)
    path = Path(path)
    if not path.exists():
        raise LlmcseError(f"candidates file not found: {path}")
    demos = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                row = json.loads(line)
                demos.append(Demo(str(row["sentence"]), str(row["word"])))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataFormatError(path, line_no, 'expected {"sentence": ..., "word": ...}') from None
        else:
            parts = line.split("\t")
            if len(parts) != 2 or not all(p.strip() for p in parts):
                raise DataFormatError(path, line_no, "expected 'sentence<TAB>word'")
            demos.append(Demo(parts[0].strip(), parts[1].strip()))
    if not demos:
        raise LlmcseError(f"{path}: no candidates")
    return demos


def sts_spearman(model, pairs) -> float:
    """Spearman x100 of cosine similarity vs gold on (sentence1, sentence2, score) pairs."""
    left = model.encode([p.sentence1 for p in pairs], normalize_embeddings=True, convert_to_numpy=True)
    right = model.encode([p.sentence2 for p in pairs], normalize_embeddings=True, convert_to_numpy=True)
    return float(100 * spearmanr(np.sum(left * right, axis=1), [p.score for p in pairs])[0])


def icl_search(base: str, pairs, candidates: list[Demo], *, template: str = "prompteol", dtype: str | None = None,
               max_seq_length: int | None = None, device: str | None = "cpu") -> list[dict]:
    """One row per setting (no demo first, then each candidate), best Spearman first."""
    rows = []
    settings = [None, *candidates]
    for demo in settings:
        model = build_prompteol_model(base, template, icl=0 if demo is None else 1, demos=None if demo is None else [demo],
                                      dtype=dtype, max_seq_length=max_seq_length, device=device)
        score = sts_spearman(model, pairs)
        rows.append({"demo": None if demo is None else list(demo), "spearman": round(score, 2)})
        logger.info("demo %s: Spearman %.2f", demo, score)
        del model
    return sorted(rows, key=lambda r: -r["spearman"])


def sample_pairs(pairs, max_pairs: int | None, seed: int = 0):
    if max_pairs and len(pairs) > max_pairs:
        return random.Random(seed).sample(pairs, max_pairs)
    return pairs
