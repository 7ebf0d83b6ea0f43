"""A toy loss: logistic triplet ranking, softplus((cos(a, n) - cos(a, p)) / temperature), batch mean.

It records every value it returns, so a test can tell that the trainer's logged losses are its own.
"""

from __future__ import annotations

import torch.nn.functional as F
from sentence_transformers.base.losses.merged_forward import embed_columns
from torch import Tensor, nn

from llmcse.train.losses import LOSSES, LossEntry

VALUES: list[float] = []  # every loss value returned, in order


class ToyLogisticLoss(nn.Module):
    def __init__(self, model, temperature: float):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, sentence_features, labels: Tensor | None = None) -> Tensor:
        anchor, positive, negative = embed_columns(self.model, sentence_features)  # 3 x (B, D)
        gap = F.cosine_similarity(anchor, negative, dim=-1) - F.cosine_similarity(anchor, positive, dim=-1)  # (B,)
        loss = F.softplus(gap / self.temperature).mean()
        VALUES.append(loss.item())
        return loss


LOSSES.register("toy_logistic", LossEntry(ToyLogisticLoss, kinds=("triplets",), settings=("temperature",)))
