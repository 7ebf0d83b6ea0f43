"""Losses usable in the stock ``SentenceTransformerTrainer``: ``forward`` embeds the columns,
``compute_loss_from_embeddings`` holds the math (tests and wrappers call it directly).

``LOSSES`` names them for recipes and ``train.loss``. A new loss is one file (its class takes
``model`` first, then keyword settings) plus one ``LOSSES.register`` line, here or in the
user's own module; ``build_loss`` (train/run.py) needs no new branch.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmcse.utils.registry import Registry


@dataclass(frozen=True)
class LossEntry:
    """What the trainer needs to know about a loss.

    Attributes:
        target: The class, or ``"module:Class"`` (imported only when a run builds the loss, so that
            checking a config does not load torch).
        kinds: Training data kinds (``train.data.COLUMNS``) whose columns it takes, in that order.
        settings: ``TrainConfig`` fields passed to it as keyword arguments of the same name.
        masking: It takes ``false_negative_threshold`` and ``reference_model`` (MultiCSR's masking
            of in-batch false negatives); a loss without it refuses a threshold instead of ignoring it.
    """

    target: object
    kinds: tuple[str, ...]
    settings: tuple[str, ...] = ()
    masking: bool = False


LOSSES: Registry[LossEntry] = Registry("loss")
LOSSES.register("info_nce", LossEntry("llmcse.train.losses.info_nce:InfoNCELoss", ("unlabeled", "triplets"),
                                      ("temperature",), masking=True))
LOSSES.register("hierarchical_triplet", LossEntry("llmcse.train.losses.hierarchical_triplet:HierarchicalTripletLoss",
                                                  ("sts3",), ("beta", "temperature"), masking=True))

_CLASSES = {"HierarchicalTripletLoss": "llmcse.train.losses.hierarchical_triplet:HierarchicalTripletLoss",
            "InfoNCELoss": "llmcse.train.losses.info_nce:InfoNCELoss",
            "ReferenceEmbeddings": "llmcse.train.losses.info_nce:ReferenceEmbeddings"}


def __getattr__(name: str):
    """``from llmcse.train.losses import InfoNCELoss`` still works, importing torch only then."""
    from llmcse.utils.registry import load_target

    if name in _CLASSES:
        return load_target(_CLASSES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LOSSES", "HierarchicalTripletLoss", "InfoNCELoss", "LossEntry", "ReferenceEmbeddings"]
