"""STS: Spearman correlation (x100) between cosine similarity and gold scores.

For STS12-16 this is SentEval's "all" setting (all subsets of a year concatenated), which
SimCSE and most papers report. Per-subset scores are kept too.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr

from llmcse.data.loaders import load_sts
from llmcse.data.records import STSPair
from llmcse.data.tasks import TaskSpec
from llmcse.embed.encode import CachedEncoder


def cosine_scores(encoder: CachedEncoder, pairs: list[STSPair]) -> np.ndarray:
    """Cosine similarity of each pair: (n_pairs,)."""
    emb1 = encoder.encode([p.sentence1 for p in pairs])  # (n, dim), unit rows
    emb2 = encoder.encode([p.sentence2 for p in pairs])  # (n, dim)
    return np.einsum("nd,nd->n", emb1, emb2)


def correlation_metrics(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """mteb's metric names, x100."""
    return {
        "cosine_spearman": 100 * float(spearmanr(predicted, gold).statistic),
        "cosine_pearson": 100 * float(pearsonr(predicted, gold).statistic),
    }


def evaluate_sts(encoder: CachedEncoder, spec: TaskSpec, split: str) -> dict:
    """Score one STS task split. ``main_score`` is the Spearman correlation x100."""
    pairs = load_sts(spec.file_for(split))
    predicted = cosine_scores(encoder, pairs)
    gold = np.array([p.score for p in pairs])
    result = {"main_score": None, **correlation_metrics(predicted, gold), "num_pairs": len(pairs)}
    result["main_score"] = result["cosine_spearman"]
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
