"""Losses usable in the stock ``SentenceTransformerTrainer``: ``forward`` embeds the columns,
``compute_loss_from_embeddings`` holds the math (tests and wrappers call it directly)."""

from llmcse.train.losses.hierarchical_triplet import HierarchicalTripletLoss
from llmcse.train.losses.info_nce import InfoNCELoss, ReferenceEmbeddings

__all__ = ["HierarchicalTripletLoss", "InfoNCELoss", "ReferenceEmbeddings"]
