"""Alignment and uniformity of an embedding space (Wang & Isola, 2020).

alignment  = E_(x,y)~pos  ||f(x) - f(y)||^2        (lower: positives closer)
uniformity = log E_(x,y)~data  exp(-t ||f(x) - f(y)||^2), t = 2   (lower: more uniform)

with unit-normalised f. As in SimCSE, positives are STS-B dev pairs scored >= 4 and the
data distribution is the set of STS-B dev sentences.
"""

from __future__ import annotations

import numpy as np

from llmcse.data.loaders import load_sts
from llmcse.data.tasks import TaskSpec
from llmcse.embed.encode import CachedEncoder

POSITIVE_MIN_SCORE = 4.0


def alignment(x: np.ndarray, y: np.ndarray, alpha: float = 2.0) -> float:
    """Mean ||x_i - y_i||^alpha over paired rows of x, y: (n, dim) each."""
    return float(np.mean(np.linalg.norm(x - y, axis=1) ** alpha))


def uniformity(x: np.ndarray, t: float = 2.0) -> float:
    """log of the mean Gaussian potential over all distinct pairs of rows of x: (n, dim)."""
    sq_norms = np.sum(x * x, axis=1)  # (n,)
    sq_dist = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2 * x @ x.T, 0.0)  # (n, n)
    upper = np.triu_indices(len(x), k=1)
    values = -t * sq_dist[upper].astype(np.float64)  # (n*(n-1)/2,)
    # log-mean-exp, stably
    peak = values.max()
    return float(peak + np.log(np.mean(np.exp(values - peak))))


def evaluate_geometry(encoder: CachedEncoder, spec: TaskSpec, split: str) -> dict:
    pairs = load_sts(spec.file_for(split))
    positives = [p for p in pairs if p.score >= POSITIVE_MIN_SCORE]
    sentences = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))
    align = alignment(encoder.encode([p.sentence1 for p in positives]), encoder.encode([p.sentence2 for p in positives]))
    uniform = uniformity(encoder.encode(sentences))
    return {
        "main_score": align,
        "alignment": align,
        "uniformity": uniform,
        "num_positive_pairs": len(positives),
        "num_sentences": len(sentences),
    }
