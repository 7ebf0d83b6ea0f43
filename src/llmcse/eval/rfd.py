"""Relative Fitting Difficulty (RFD, NGCSE): how hard a training set's similarity pattern is to
fit, measured against the evaluation data's.

For a model state and a data set, two geometry numbers (Wang & Isola 2020, see geometry.py):
alignment of its positive pairs and uniformity of its sentences. For the training data the
pairs are (seed, positive); for data without a written positive (unsup-SimCSE sentences) the
positive is the same sentence under a second dropout mask, as that is what the model fits. For
the evaluation data they are STS-B dev pairs with score >= 4 and the STS-B dev sentences.

    RFD_alignment  = mean over checkpoints of (alignment_train  - alignment_eval)
    RFD_uniformity = mean over checkpoints of (uniformity_train - uniformity_eval)

A positive RFD_alignment means the training positives stay farther apart than the eval
positives: a harder-to-fit pattern. ``rank_datasets`` is the "before training" mode: one fixed
model, one point per data set, ranked by RFD_alignment.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np

from llmcse.data.loaders import load_sts
from llmcse.errors import LlmcseError
from llmcse.eval.geometry import POSITIVE_MIN_SCORE, alignment, uniformity

logger = logging.getLogger(__name__)


def training_pairs(path: str | Path, max_pairs: int, seed: int = 0) -> tuple[list[tuple[str, str]], bool]:
    """(anchor, positive) pairs from a training file, sampled to ``max_pairs``; and whether the
    positive is the anchor itself (unlabeled sentences: the second view comes from dropout)."""
    from llmcse.train.data import read_rows

    path = Path(path)
    if path.suffix == ".txt":
        rows, same = read_rows(path, "unlabeled"), True
    elif path.suffix == ".tsv":
        rows, same = read_rows(path, "triplets"), False
    else:
        rows, same = read_rows(path, "triplets"), False  # seed/positive of nli or sts3 records
    pairs = [(r[0], r[1]) for r in rows]
    if len(pairs) > max_pairs:
        pairs = random.Random(seed).sample(pairs, max_pairs)
    return pairs, same


def eval_pairs(stsb_dev: Path, max_sentences: int | None = None, seed: int = 0) -> tuple[list[tuple[str, str]], list[str]]:
    """Eval positives (all pairs scored >= 4) and the sentences for uniformity, sampled to
    ``max_sentences`` (seeded) when encoding all of them costs too much (LLM embedders on CPU)."""
    pairs = load_sts(stsb_dev)
    positives = [(p.sentence1, p.sentence2) for p in pairs if p.score >= POSITIVE_MIN_SCORE]
    sentences = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))
    if max_sentences is not None and len(sentences) > max_sentences:
        sentences = random.Random(seed).sample(sentences, max_sentences)
    return positives, sentences


def encode(model, texts: list[str], dropout: bool = False, batch_size: int = 64) -> np.ndarray:
    """Unit-normalised embeddings (n, dim); with ``dropout`` the model runs in train mode, as in
    unsup-SimCSE, so encoding the same text twice gives two different views."""
    import torch

    if not dropout:
        return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    model.train()
    chunks = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            prepare = getattr(model, "preprocess", None) or model.tokenize  # ST >= 6 renamed tokenize
            features = prepare(texts[start:start + batch_size])
            features = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in features.items()}
            emb = model(features)["sentence_embedding"]  # (batch, dim)
            chunks.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
    model.eval()
    return np.concatenate(chunks)


def geometry_point(model, pairs: list[tuple[str, str]], sentences: list[str], same: bool = False) -> dict:
    left = encode(model, [a for a, _ in pairs])
    right = encode(model, [b for _, b in pairs], dropout=same)
    return {"alignment": alignment(left, right), "uniformity": uniformity(encode(model, sentences))}


def _sentences_of(pairs: list[tuple[str, str]], limit: int) -> list[str]:
    return list(dict.fromkeys(s for pair in pairs for s in pair))[:limit]


def checkpoints(model_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) for every complete checkpoint of a training run, in step order: they are kept
    beside the model in ``<run>.checkpoints/`` (``<run>/checkpoints/`` for runs trained before)."""
    from llmcse.train.folders import rfd_checkpoints

    found, folder = rfd_checkpoints(model_dir)
    if not found:
        raise LlmcseError(f"no checkpoints in {folder}; train with --set keep_checkpoints=0 to keep every "
                          "checkpoint for RFD")
    return found


def rfd_over_checkpoints(model_dir: str | Path, data: str | Path, stsb_dev: Path, *, max_pairs: int = 1000,
                         seed: int = 0, device: str | None = None, dtype: str | None = None,
                         max_eval_sentences: int | None = None) -> dict:
    """Geometry of train and eval data at every checkpoint of one run, and the run's RFD."""
    from sentence_transformers import SentenceTransformer

    from llmcse.utils.modelspec import auto_device, resolve_dtype

    train, same = training_pairs(data, max_pairs, seed)
    train_sentences = _sentences_of(train, max_pairs)
    ev_pairs, ev_sentences = eval_pairs(stsb_dev, max_eval_sentences, seed)
    model_kwargs = {"dtype": resolve_dtype(dtype, device or auto_device())} if dtype else None
    rows = []
    for step, folder in checkpoints(model_dir):
        model = SentenceTransformer(str(folder), device=device, model_kwargs=model_kwargs)
        rows.append({"step": step, "train": geometry_point(model, train, train_sentences, same),
                     "eval": geometry_point(model, ev_pairs, ev_sentences)})
        logger.info("checkpoint %d: %s", step, rows[-1])
    return {"data": str(data), "model_dir": str(model_dir), "pairs": len(train), "dropout_positives": same,
            "eval_sentences": len(ev_sentences), "dtype": dtype or "float32", **summarize(rows), "checkpoints": rows}


def summarize(rows: list[dict]) -> dict:
    return {key: round(float(np.mean([r["train"][metric] - r["eval"][metric] for r in rows])), 4)
            for key, metric in (("rfd_alignment", "alignment"), ("rfd_uniformity", "uniformity"))}


def rank_datasets(model_name: str, datasets: list[str | Path], stsb_dev: Path, *, max_pairs: int = 1000,
                  seed: int = 0, device: str | None = None) -> dict:
    """Before training: every data set under one fixed model, hardest (largest RFD_alignment) first."""
    from llmcse.embed.models import load_embedder

    model = load_embedder(model_name, device=device)
    ev = geometry_point(model, *eval_pairs(stsb_dev))
    rows = []
    for data in datasets:
        train, same = training_pairs(data, max_pairs, seed)
        point = geometry_point(model, train, _sentences_of(train, max_pairs), same)
        rows.append({"data": str(data), "pairs": len(train), "dropout_positives": same, "train": point,
                     **summarize([{"train": point, "eval": ev}])})
    rows.sort(key=lambda r: -r["rfd_alignment"])
    return {"model": model_name, "eval": ev, "datasets": rows}


def plot(results: list[dict], path: str | Path) -> None:
    """Alignment (x) vs uniformity (y) per checkpoint: train solid, eval dashed, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, result in enumerate(results):
        colour = f"C{i}"
        label = Path(result["data"]).name
        for side, style in (("train", "-"), ("eval", "--")):
            xs = [r[side]["alignment"] for r in result["checkpoints"]]
            ys = [r[side]["uniformity"] for r in result["checkpoints"]]
            ax.plot(xs, ys, style, marker="o", color=colour, label=f"{label} ({side})")
            ax.annotate(str(result["checkpoints"][-1]["step"]), (xs[-1], ys[-1]), fontsize=7)
    ax.set_xlabel("alignment (lower: positives closer)")
    ax.set_ylabel("uniformity (lower: more uniform)")
    ax.set_title("RFD: train vs eval geometry across checkpoints")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
