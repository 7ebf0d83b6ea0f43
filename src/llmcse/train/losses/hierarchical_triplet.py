"""NGCSE's Hierarchical Triplet loss on (anchor, positive, intermediate, negative), added to InfoNCE."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from llmcse.train.losses.info_nce import InfoNCELoss


def hierarchical_triplet(anchor: Tensor, positive: Tensor, intermediate: Tensor, negative: Tensor,
                         margin_pos_mid: float, margin_mid_neg: float) -> Tensor:
    """1/2 [relu(s(a,mid) - s(a,pos) + m1) + relu(s(a,neg) - s(a,mid) + m2)], mean over the batch.

    s is cosine similarity; all inputs (B, D). Orders pos > mid > neg with margins m1, m2.
    """
    s_pos = F.cosine_similarity(anchor, positive, dim=-1)  # (B,)
    s_mid = F.cosine_similarity(anchor, intermediate, dim=-1)  # (B,)
    s_neg = F.cosine_similarity(anchor, negative, dim=-1)  # (B,)
    return 0.5 * (F.relu(s_mid - s_pos + margin_pos_mid) + F.relu(s_neg - s_mid + margin_mid_neg)).mean()


class HierarchicalTripletLoss(nn.Module):
    """InfoNCE (anchor vs positive, with the negative as a hard negative) + beta x Hierarchical Triplet.

    Args:
        model: The SentenceTransformer being trained.
        margin_pos_mid: m1, required gap s(a,pos) - s(a,mid) (NGCSE default 5e-3).
        margin_mid_neg: m2, required gap s(a,mid) - s(a,neg) (NGCSE default 5e-2).
        beta: Weight of the triplet term (default 1).
        temperature, false_negative_threshold, reference_model: as in ``InfoNCELoss``.

    Inputs:
        | columns | labels |
        |---|---|
        | (anchor, positive, intermediate, negative) | none |
    """

    def __init__(self, model, margin_pos_mid: float = 5e-3, margin_mid_neg: float = 5e-2, beta: float = 1.0,
                 temperature: float = 0.05, false_negative_threshold: float | None = None, reference_model=None):
        super().__init__()
        if margin_pos_mid < 0 or margin_mid_neg < 0:
            raise ValueError(f"margins must be >= 0, got {margin_pos_mid}, {margin_mid_neg}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.model = model
        self.margin_pos_mid, self.margin_mid_neg, self.beta = margin_pos_mid, margin_mid_neg, beta
        self.info_nce = InfoNCELoss(model, temperature, false_negative_threshold, reference_model)

    def forward(self, sentence_features, labels: Tensor | None = None) -> Tensor:
        embeddings, reference = self.info_nce.embed(sentence_features)
        return self.compute_loss_from_embeddings(embeddings, labels, reference)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None,
                                     reference: list[Tensor] | None = None) -> Tensor:
        if len(embeddings) != 4:
            raise ValueError(f"expected (anchor, positive, intermediate, negative) columns, got {len(embeddings)}")
        anchor, positive, intermediate, negative = embeddings
        # InfoNCE on (anchor, positive, negative); the intermediate only enters the ordering term.
        ref = None if reference is None else [reference[0], reference[1], reference[3]]
        contrastive = self.info_nce.compute_loss_from_embeddings([anchor, positive, negative], labels, ref)
        ordering = hierarchical_triplet(anchor, positive, intermediate, negative, self.margin_pos_mid, self.margin_mid_neg)
        return contrastive + self.beta * ordering

    def get_config_dict(self) -> dict[str, Any]:
        return {"margin_pos_mid": self.margin_pos_mid, "margin_mid_neg": self.margin_mid_neg, "beta": self.beta,
                **self.info_nce.get_config_dict()}

    @property
    def citation(self) -> str:
        # TODO(issue 5): full BibTeX of the NGCSE paper (AAAI 2024); only what is certain is given here.
        return """@misc{ngcse2024,
  note={NGCSE (AAAI 2024): LLM-generated NLI and 3-level STS data, Hierarchical Triplet loss,
        Relative Fitting Difficulty}
}"""
