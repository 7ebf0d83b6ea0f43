"""STS: Spearman correlation (x100) between cosine similarity and gold scores.

For STS12-16 this is SentEval's "all" setting (all subsets of a year concatenated), which
SimCSE and most papers report. Per-subset scores are kept too.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy.stats import ConstantInputWarning, pearsonr, spearmanr

from llmcse.data.loaders import load_sts
from llmcse.data.records import STSPair
from llmcse.data.tasks import TaskSpec
from llmcse.embed.encode import CachedEncoder
from llmcse.errors import DataFormatError

logger = logging.getLogger(__name__)


def cosine_scores(encoder: CachedEncoder, pairs: list[STSPair]) -> np.ndarray:
    """Cosine similarity of each pair: (n_pairs,)."""
    emb1 = encoder.encode([p.sentence1 for p in pairs])  # (n, dim), unit rows
    emb2 = encoder.encode([p.sentence2 for p in pairs])  # (n, dim)
    return np.einsum("nd,nd->n", emb1, emb2)


def correlation_metrics(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """mteb's metric names, x100. NaN when a side is constant (the correlation is undefined;
    ``evaluate_sts`` says why, and results.json stores null)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)  # reported once, with the reason, by the caller
        return {
            "cosine_spearman": 100 * float(spearmanr(predicted, gold).statistic),
            "cosine_pearson": 100 * float(pearsonr(predicted, gold).statistic),
        }


def undefined_correlation_reason(predicted: np.ndarray, gold: np.ndarray) -> str | None:
    """Why the correlation is undefined (a constant side), or None."""
    if np.all(gold == gold[0]):
        return f"all {len(gold)} gold scores are equal ({gold[0]:g})"
    if np.allclose(predicted, predicted[0], rtol=0, atol=1e-12):
        return "the model gives every pair the same similarity"
    return None


def evaluate_sts(encoder: CachedEncoder, spec: TaskSpec, split: str) -> dict:
    """Score one STS task split. ``main_score`` is the Spearman correlation x100."""
    path = spec.file_for(split)
    pairs = load_sts(path)
    if len(pairs) < 2:
        raise DataFormatError(path, None, f"{len(pairs)} pair: a correlation needs at least 2")
    predicted = cosine_scores(encoder, pairs)
    gold = np.array([p.score for p in pairs])
    result = {"main_score": None, **correlation_metrics(predicted, gold), "num_pairs": len(pairs)}
    result["main_score"] = result["cosine_spearman"]
    if why := undefined_correlation_reason(predicted, gold):
        result["warning"] = f"{why} in {path}: Spearman is undefined; the score is null"
        logger.warning("%s: %s", spec.name, result["warning"])
    subsets = sorted({p.subset for p in pairs})
    if len(subsets) > 1:
        per_subset = {}
        for subset in subsets:
            idx = np.array([i for i, p in enumerate(pairs) if p.subset == subset])
            if len(idx) > 2:
                per_subset[subset] = correlation_metrics(predicted[idx], gold[idx])["cosine_spearman"]
        result["subsets_cosine_spearman"] = per_subset
        result["subsets_mean_cosine_spearman"] = float(np.mean(list(per_subset.values())))
    return result
