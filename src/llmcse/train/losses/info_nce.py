"""InfoNCE with in-batch and hard negatives, and MultiCSR's false-negative masking."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)


def masked_info_nce(
    anchors: Tensor,
    candidates: Tensor,
    temperature: float,
    false_negative_mask: Tensor | None = None,
    positive_offset: int = 0,
) -> tuple[Tensor, int]:
    """InfoNCE where anchor i's positive is candidate ``positive_offset + i``; masked candidates
    leave the denominator.

    Args:
        anchors: (B, D) anchor embeddings.
        candidates: (C, D): on one process the B positives first (row i belongs to anchor i), then
            any hard negatives; gathered over processes, every process's block in rank order.
        temperature: Softmax temperature (scale = 1 / temperature; 0.05 <-> 20).
        false_negative_mask: (B, C) bool, True where a candidate is a false negative to drop.
            A row's own positive is never masked, whatever the mask says.
        positive_offset: Where this process's positives start among the candidates.

    Returns:
        (mean cross-entropy loss, number of logits masked)
    """
    logits = F.normalize(anchors, dim=-1) @ F.normalize(candidates, dim=-1).T / temperature  # (B, C)
    batch = anchors.size(0)
    rows = torch.arange(batch, device=anchors.device)  # (B,)
    labels = rows + positive_offset  # (B,)
    n_masked = 0
    if false_negative_mask is not None:
        mask = false_negative_mask.clone()
        mask[rows, labels] = False  # never the row's own positive
        n_masked = int(mask.sum())
        logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, labels), n_masked


def gather_candidates(candidates: Tensor) -> tuple[Tensor, int]:
    """Every process's candidates, concatenated in rank order, with gradients flowing back to each
    process's own rows; and where this process's block starts. Identity on one process.

    With data-parallel training (torchrun / accelerate) each anchor then sees the candidates of the
    whole global batch as negatives: per-device batch x processes, what the log line reports.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return candidates, 0
    from torch.distributed.nn.functional import all_gather

    blocks = all_gather(candidates.contiguous())  # world_size x (C, D), differentiable
    return torch.cat(blocks), dist.get_rank() * candidates.size(0)


def false_negative_mask(ref_anchors: Tensor, ref_candidates: Tensor, threshold: float) -> Tensor:
    """(B, C) True where a candidate's cosine to the anchor under the reference model exceeds ``threshold``."""
    with torch.no_grad():
        sims = F.normalize(ref_anchors, dim=-1) @ F.normalize(ref_candidates, dim=-1).T  # (B, C)
    return sims > threshold


class ReferenceEmbeddings:
    """A frozen model's embeddings of every training text, computed once before training.

    Masking then costs a table lookup per row instead of a second forward pass per step, and the
    frozen model can be freed before training: no second copy of the weights in (GPU) memory.
    Rows are found by their token ids (what the loss receives), so the table must be built with
    the training model's tokenizer and max_seq_length.

    Args:
        model: The training model (its tokenizer defines the keys).
        reference_model: The frozen model whose embeddings are stored (often a copy of ``model``
            before training).
        texts: Every text the training data holds.
    """

    def __init__(self, model, reference_model, texts: list[str], batch_size: int = 128):
        unique = list(dict.fromkeys(texts))
        self.index: dict[tuple[int, ...], int] = {}
        for start in range(0, len(unique), batch_size):
            features = model.tokenize(unique[start:start + batch_size])
            for j, (ids, mask) in enumerate(zip(features["input_ids"], features["attention_mask"])):
                self.index.setdefault(self._key(ids, mask), start + j)
        with torch.no_grad():
            self.table = torch.as_tensor(reference_model.encode(unique, batch_size=batch_size, convert_to_numpy=True,
                                                                normalize_embeddings=True))  # (n_texts, D)

    @staticmethod
    def _key(ids: Tensor, mask: Tensor) -> tuple[int, ...]:
        return tuple(ids[mask.bool()].tolist())

    def lookup(self, features: dict) -> Tensor:
        """(B, D) stored embeddings for one column's tokenized batch."""
        keys = [self._key(ids, mask) for ids, mask in zip(features["input_ids"], features["attention_mask"])]
        missing = [k for k in keys if k not in self.index]
        if missing:
            raise KeyError(f"{len(missing)} texts of this batch are not in the reference table (built from other data?)")
        return self.table[[self.index[k] for k in keys]].to(features["input_ids"].device)


class InfoNCELoss(nn.Module):
    """SimCSE-style InfoNCE: each anchor against its positive, every other positive in the batch
    and every hard negative; optionally with MultiCSR's batch-level false-negative masking.

    Args:
        model: The SentenceTransformer being trained.
        temperature: Softmax temperature (default 0.05; sentence-transformers' ``scale`` = 1/temperature = 20).
        false_negative_threshold: If set, an in-batch negative whose cosine to the anchor under the
            reference embeddings is above it is masked out of the denominator (MultiCSR: 0.95 default there).
        reference_model: Frozen model giving those reference embeddings, or a ``ReferenceEmbeddings``
            table precomputed once (cheaper: no forward pass per step, no weights in memory). None
            with a threshold means the training model's own embeddings, detached.

    Inputs:
        | columns | labels |
        |---|---|
        | (anchor, positive) | none |
        | (anchor, positive, negative_1, ..., negative_n) | none |

    Relations: with no masking this equals sentence-transformers' ``MultipleNegativesRankingLoss``
    (cosine, scale = 1/temperature); tested.
    """

    def __init__(self, model, temperature: float = 0.05, false_negative_threshold: float | None = None,
                 reference_model=None):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if false_negative_threshold is not None and not -1 <= false_negative_threshold <= 1:
            raise ValueError(f"false_negative_threshold is a cosine in [-1, 1], got {false_negative_threshold}")
        if reference_model is not None and false_negative_threshold is None:
            logger.warning("reference_model given without false_negative_threshold: it will not be used")
        self.model = model
        self.temperature = temperature
        self.false_negative_threshold = false_negative_threshold
        self.reference_model = reference_model
        if reference_model is not None and not isinstance(reference_model, ReferenceEmbeddings):
            reference_model.requires_grad_(False)
            reference_model.eval()
        self.masked_total = 0  # logits masked since creation (reported by training)
        self.logits_total = 0

    def embed(self, sentence_features) -> tuple[list[Tensor], list[Tensor] | None]:
        """Embeddings of every column, and the frozen reference model's when masking uses one."""
        from sentence_transformers.base.losses.merged_forward import embed_columns

        embeddings = embed_columns(self.model, sentence_features)
        reference = None
        if self.false_negative_threshold is not None and isinstance(self.reference_model, ReferenceEmbeddings):
            reference = [self.reference_model.lookup(f) for f in sentence_features]
        elif self.false_negative_threshold is not None and self.reference_model is not None:
            with torch.no_grad():
                reference = embed_columns(self.reference_model, sentence_features)
        return embeddings, reference

    def forward(self, sentence_features, labels: Tensor | None = None) -> Tensor:
        embeddings, reference = self.embed(sentence_features)
        return self.compute_loss_from_embeddings(embeddings, labels, reference)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None,
                                     reference: list[Tensor] | None = None) -> Tensor:
        if len(embeddings) < 2:
            raise ValueError(f"InfoNCE needs (anchor, positive[, negatives...]) columns, got {len(embeddings)}")
        anchors, candidates = embeddings[0], torch.cat(embeddings[1:])  # (B, D), (C, D)
        candidates, offset = gather_candidates(candidates)  # (C x processes, D) under data parallelism
        mask = None
        if self.false_negative_threshold is not None:
            ref = reference if reference is not None else [e.detach() for e in embeddings]
            ref_candidates, _ = gather_candidates(torch.cat(ref[1:]).detach())
            mask = false_negative_mask(ref[0], ref_candidates, self.false_negative_threshold)  # (B, C x processes)
        loss, n_masked = masked_info_nce(anchors, candidates, self.temperature, mask, positive_offset=offset)
        self.masked_total += n_masked
        self.logits_total += anchors.size(0) * candidates.size(0)
        return loss

    @property
    def scale(self) -> float:
        return 1.0 / self.temperature

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "false_negative_threshold": self.false_negative_threshold,
                "reference_model": None if self.reference_model is None else
                "precomputed table" if isinstance(self.reference_model, ReferenceEmbeddings) else "frozen copy"}

    @property
    def citation(self) -> str:
        return """@inproceedings{gao2021simcse,
  title={SimCSE: Simple Contrastive Learning of Sentence Embeddings},
  author={Gao, Tianyu and Yao, Xingcheng and Chen, Danqi},
  booktitle={EMNLP}, year={2021}
}
@inproceedings{wang2024multicsr,
  title={Large Language Models can Contrastively Refine their Generation for Better Sentence Representation Learning},
  author={Wang, Huiming and Li, Zhaodonghui and Cheng, Liying and Soh, De Wen and Bing, Lidong},
  booktitle={NAACL}, year={2024}
}"""
