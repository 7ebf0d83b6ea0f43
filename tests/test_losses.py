"""Losses: hand-computed values on fixed tensors, equivalence with sentence-transformers, gradients."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from llmcse.train.losses import HierarchicalTripletLoss, InfoNCELoss
from llmcse.train.losses.hierarchical_triplet import hierarchical_triplet
from llmcse.train.losses.info_nce import false_negative_mask, masked_info_nce


def unit(*rows):
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_info_nce_matches_a_hand_computed_two_row_case():
    anchors = unit([1.0, 0.0], [0.0, 1.0])
    candidates = unit([1.0, 0.0], [1.0, 1.0])  # cos: row0 -> [1, .7071], row1 -> [0, .7071]
    t = 0.5
    row0 = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(0.70710678 / t)))
    row1 = -math.log(math.exp(0.70710678 / t) / (math.exp(0 / t) + math.exp(0.70710678 / t)))
    loss, masked = masked_info_nce(anchors, candidates, t)
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-5)
    assert masked == 0


def test_masking_removes_false_negatives_but_never_the_own_positive():
    anchors = unit([1.0, 0.0], [0.9, 0.1])
    candidates = unit([1.0, 0.05], [0.9, 0.12])  # both near-duplicates of each other
    mask = false_negative_mask(anchors, candidates, threshold=0.95)
    assert mask.all()  # every pair is above 0.95 ...
    loss, masked = masked_info_nce(anchors, candidates, 0.05, mask)
    assert masked == 2  # ... but only the two off-diagonal logits are masked
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # alone in its denominator, the positive wins outright


def test_masking_with_a_negative_positive_score_still_keeps_the_positive():
    anchors = unit([1.0, 0.0])
    candidates = unit([-1.0, 0.1], [1.0, 0.0])  # own positive has cosine < 0; a duplicate of the anchor is a negative
    mask = false_negative_mask(anchors, candidates, threshold=0.95)
    loss, masked = masked_info_nce(anchors, candidates, 0.05, mask)
    assert masked == 1 and torch.isfinite(loss) and loss.item() == pytest.approx(0.0, abs=1e-6)


def test_info_nce_without_masking_equals_sentence_transformers_mnrl():
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    torch.manual_seed(0)
    emb = [torch.randn(8, 16) for _ in range(3)]  # anchor, positive, hard negative
    ours = InfoNCELoss(model=None, temperature=0.05).compute_loss_from_embeddings(emb)
    theirs = MultipleNegativesRankingLoss(model=None, scale=20.0).compute_loss_from_embeddings(emb, None)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_hierarchical_triplet_matches_hand_computed_margins():
    a = unit([1.0, 0.0])
    pos, mid, neg = unit([0.8, 0.6]), unit([0.9, 0.4359]), unit([0.0, 1.0])  # s = .8, .9, 0
    # relu(.9 - .8 + .005) = .105 ; relu(0 - .9 + .05) = 0  -> 0.5 * .105
    assert hierarchical_triplet(a, pos, mid, neg, 5e-3, 5e-2).item() == pytest.approx(0.0525, abs=1e-4)
    # well ordered with room: zero
    assert hierarchical_triplet(a, unit([1.0, 0.0]), unit([0.5, 0.866]), unit([-1.0, 0.0]), 5e-3, 5e-2).item() == 0.0


def test_one_level_hierarchical_triplet_is_a_plain_triplet():
    torch.manual_seed(1)
    a, p, n = (torch.randn(4, 8) for _ in range(3))
    cos = torch.nn.functional.cosine_similarity
    plain = torch.relu(cos(a, n) - cos(a, p) + 0.05).mean()
    # intermediate == positive and m1 = 0: only the (mid, neg) term is left, at half weight
    assert (2 * hierarchical_triplet(a, p, p, n, 0.0, 0.05)).item() == pytest.approx(plain.item(), rel=1e-6)


def test_losses_validate_their_options():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        InfoNCELoss(None, temperature=0)
    with pytest.raises(ValueError, match="cosine in"):
        InfoNCELoss(None, false_negative_threshold=2.0)
    with pytest.raises(ValueError, match="margins must be >= 0"):
        HierarchicalTripletLoss(None, margin_pos_mid=-1)
    assert InfoNCELoss(None, temperature=0.05).scale == pytest.approx(20.0)


def test_gradients_reach_the_model_and_masks_are_counted(minilm):
    model = copy.deepcopy(minilm)
    model.train()
    loss_fn = HierarchicalTripletLoss(model, false_negative_threshold=0.95)
    columns = [["A man plays guitar.", "A cat sleeps."], ["A man is playing a guitar.", "The cat is asleep."],
               ["Someone makes music.", "An animal rests."], ["A man plays piano.", "A dog runs."]]
    features = [model.tokenize(col) for col in columns]
    loss = loss_fn(features, None)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert torch.isfinite(loss) and grads and any(g.abs().sum() > 0 for g in grads)
    assert loss_fn.info_nce.logits_total == 2 * 4  # 2 anchors x (2 positives + 2 hard negatives)


def test_a_frozen_reference_model_masks_near_duplicate_in_batch_negatives(minilm):
    model, reference = copy.deepcopy(minilm), copy.deepcopy(minilm)
    loss_fn = InfoNCELoss(model, false_negative_threshold=0.9, reference_model=reference)
    anchors = ["A man is playing a guitar.", "A man plays the guitar."]  # each is the other's false negative
    positives = ["A man is playing guitar.", "Someone plays a guitar."]
    loss = loss_fn([model.tokenize(anchors), model.tokenize(positives)], None)
    assert torch.isfinite(loss) and loss_fn.masked_total >= 1
    assert not any(p.requires_grad for p in reference.parameters())


def test_precomputed_reference_table_masks_exactly_like_the_frozen_model(minilm):
    from llmcse.train.losses import ReferenceEmbeddings

    anchors = ["A man is playing a guitar.", "A man plays the guitar.", "The stock market fell sharply."]
    positives = ["A man is playing guitar.", "Someone plays a guitar.", "Shares dropped a lot."]
    model, frozen = copy.deepcopy(minilm), copy.deepcopy(minilm)
    table = ReferenceEmbeddings(model, frozen, anchors + positives)
    assert table.table.shape == (6, 384)
    by_model = InfoNCELoss(model, false_negative_threshold=0.9, reference_model=frozen)
    by_table = InfoNCELoss(model, false_negative_threshold=0.9, reference_model=table)
    features = [model.tokenize(anchors), model.tokenize(positives)]
    emb_m, ref_m = by_model.embed(features)
    _, ref_t = by_table.embed(features)
    for a, b in zip(ref_m, ref_t):  # the table holds normalised vectors; the frozen model's are raw
        assert torch.allclose(torch.nn.functional.normalize(a, dim=-1), b, atol=1e-5)
    loss_m = by_model.compute_loss_from_embeddings(emb_m, None, ref_m)
    loss_t = by_table.compute_loss_from_embeddings(emb_m, None, ref_t)
    assert by_model.masked_total == by_table.masked_total >= 1 and torch.allclose(loss_m, loss_t)
    with pytest.raises(KeyError, match="not in the reference table"):
        table.lookup(model.tokenize(["A sentence the table never saw."]))
