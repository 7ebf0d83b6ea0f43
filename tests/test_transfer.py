"""SentEval transfer evaluator: protocols, result keys, determinism, test-free model selection."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from llmcse.data.tasks import TaskSpec
from llmcse.errors import UnknownNameError
from llmcse.eval.transfer import (
    C_GRID,
    best_c,
    evaluate_transfer,
    pair_features,
    score_outer_fold,
    select_c_by_cv,
    select_c_on_dev,
    stratified_folds,
)

RESULT_KEYS = {"main_score", "accuracy", "num_examples", "protocol", "c_selected", "split"}

POSITIVE = ["wonderful", "delightful", "brilliant", "excellent", "lovely"]
NEGATIVE = ["terrible", "awful", "dreadful", "horrible", "boring"]
THINGS = ["movie", "film", "story", "performance"]


def sentiment_rows() -> list[tuple[str, str]]:
    """40 short reviews, 20 clearly positive (label 1) and 20 clearly negative (label 0)."""
    rows = []
    for (word, thing) in itertools.product(POSITIVE, THINGS):
        rows.append((f"what a {word} {thing} , i loved it .", "1"))
    for (word, thing) in itertools.product(NEGATIVE, THINGS):
        rows.append((f"what a {word} {thing} , i hated it .", "0"))
    return rows


def write_tsv(path: Path, header: list[str], rows: list[tuple[str, ...]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def transfer_spec(root: Path, name: str, splits: dict[str, list[tuple[str, ...]]], header: list[str]) -> TaskSpec:
    files = {split: write_tsv(root / name / f"{split}.tsv", header, rows) for split, rows in splits.items()}
    return TaskSpec(name, "transfer", files, root / name, "accuracy")


@pytest.fixture()
def cv_spec(tmp_path: Path) -> TaskSpec:
    return transfer_spec(tmp_path, "tiny_mr", {"all": sentiment_rows()}, ["sentence", "label"])


@pytest.fixture()
def split_spec(tmp_path: Path) -> TaskSpec:
    rows = sentiment_rows()
    train, dev, test = rows[0::3], rows[1::3], rows[2::3]  # both classes in each
    return transfer_spec(tmp_path, "tiny_sst", {"train": train, "dev": dev, "test": test}, ["sentence", "label"])


def paraphrase_rows() -> list[tuple[str, str, str]]:
    """Pairs: a sentence and its light rewording (label 1), or two unrelated sentences (0)."""
    facts = [
        ("the cat sat on the mat", "a cat was sitting on the mat"),
        ("stocks fell sharply on monday", "share prices dropped steeply monday"),
        ("the president met the prime minister", "the prime minister held talks with the president"),
        ("heavy rain flooded the city streets", "the streets of the city were flooded by heavy rain"),
        ("the company reported record profits", "record profits were reported by the firm"),
        ("the team won the championship final", "the squad took the title in the final"),
        ("scientists discovered a new planet", "a new planet was found by researchers"),
        ("the museum reopened after renovation", "after being renovated the museum opened again"),
        ("the train was delayed by snow", "snow held up the train"),
        ("the child broke the window", "the window was broken by the kid"),
        ("the bakery sells fresh bread daily", "fresh bread is sold every day at the bakery"),
        ("the senator resigned on friday", "on friday the senator stepped down"),
    ]
    rows = [(a, b, "1") for a, b in facts]
    for i, (a, _) in enumerate(facts):  # pair each sentence with an unrelated one
        rows.append((a, facts[(i + 5) % len(facts)][1], "0"))
    return rows


@pytest.fixture()
def pair_spec(tmp_path: Path) -> TaskSpec:
    rows = paraphrase_rows()
    n = len(rows) // 2
    train = rows[:8] + rows[n : n + 8]
    test = rows[8:n] + rows[n + 8 :]
    return transfer_spec(tmp_path, "tiny_mrpc", {"train": train, "test": test}, ["sentence1", "sentence2", "label"])


def test_cross_validated_task_separates_obvious_sentiment(encoder, cv_spec):
    result = evaluate_transfer(encoder, cv_spec, "all")
    assert RESULT_KEYS <= result.keys()
    assert result["accuracy"] > 90
    assert result["main_score"] == result["accuracy"]
    assert result["num_examples"] == 40
    assert result["protocol"] == "10-fold CV"
    assert result["split"] == "all"
    assert len(result["c_selected"]) == 10 and set(result["c_selected"]) <= set(C_GRID)
    assert "f1" not in result


def test_train_dev_test_task_chooses_c_on_dev_and_scores_test(encoder, split_spec):
    result = evaluate_transfer(encoder, split_spec, "test")
    assert RESULT_KEYS <= result.keys()
    assert result["protocol"] == "train/dev/test"
    assert result["num_examples"] == len(sentiment_rows()[2::3])
    assert isinstance(result["c_selected"], float) and result["c_selected"] in C_GRID
    assert result["accuracy"] > 90


def test_pair_task_uses_pair_features_and_reports_f1(encoder, pair_spec):
    result = evaluate_transfer(encoder, pair_spec, "test", inner_folds=2)
    assert RESULT_KEYS | {"f1"} <= result.keys()
    assert result["protocol"] == "train/test (C by 2-fold CV on train)"
    assert result["num_examples"] == 8
    assert result["accuracy"] >= 75
    assert 0 <= result["f1"] <= 100


def test_max_examples_probes_a_seeded_sample_of_every_split(encoder, cv_spec, split_spec):
    cv = evaluate_transfer(encoder, cv_spec, "all", n_folds=5, inner_folds=3, max_examples=30)
    assert cv["num_examples"] == 30 and cv["subsampled"] == 30
    assert cv == evaluate_transfer(encoder, cv_spec, "all", n_folds=5, inner_folds=3, max_examples=30)  # seeded
    split = evaluate_transfer(encoder, split_spec, "test", max_examples=10)
    assert split["num_examples"] == 10 and split["accuracy"] > 80
    full = evaluate_transfer(encoder, split_spec, "test")
    assert "subsampled" not in full and full["num_examples"] == len(sentiment_rows()[2::3]) == 13


def test_pair_features_are_absolute_difference_then_product():
    u = np.array([[1.0, -2.0]], dtype=np.float32)  # (1, 2)
    v = np.array([[3.0, 1.0]], dtype=np.float32)  # (1, 2)
    np.testing.assert_array_equal(pair_features(u, v), [[2.0, 3.0, 3.0, -2.0]])


def test_same_call_twice_gives_identical_numbers(encoder, cv_spec, split_spec):
    small = {"seed": 7, "n_folds": 5, "inner_folds": 3}
    assert evaluate_transfer(encoder, cv_spec, "all", **small) == evaluate_transfer(encoder, cv_spec, "all", **small)
    assert evaluate_transfer(encoder, split_spec, "test") == evaluate_transfer(encoder, split_spec, "test")


def test_unknown_or_unscorable_split_is_a_helpful_error(encoder, cv_spec, split_spec):
    with pytest.raises(UnknownNameError, match="has no split 'test'.*all"):
        evaluate_transfer(encoder, cv_spec, "test")
    with pytest.raises(UnknownNameError, match="cannot be scored on split 'dev'"):
        evaluate_transfer(encoder, split_spec, "dev")


def noisy_problem(seed: int = 0, n: int = 300, dim: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A linearly separable-ish problem with label noise, so the choice of C matters."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))  # (n, dim)
    w = rng.normal(size=dim)  # (dim,)
    logits = x @ w / 2 + rng.normal(scale=2.0, size=n)  # (n,)
    return x, np.where(logits > 0, "1", "0").astype(object)


def test_c_chosen_in_an_outer_fold_ignores_that_folds_labels():
    x, y = noisy_problem()
    train_idx, test_idx = stratified_folds(y, 5, seed=3)[0]
    rng = np.random.default_rng(1)
    y_scrambled = y.copy()
    y_scrambled[test_idx] = rng.permutation(np.where(y[test_idx] == "1", "0", "1"))  # flip then shuffle
    c, accuracy = score_outer_fold(x, y, train_idx, test_idx, C_GRID, 3, seed=5)
    c_scrambled, accuracy_scrambled = score_outer_fold(x, y_scrambled, train_idx, test_idx, C_GRID, 3, seed=5)
    # Choosing C on the held-out fold itself would pick 0.5 with the true labels and 0.25
    # with the scrambled ones (checked when this test was written), so this can fail.
    assert c == c_scrambled
    assert accuracy != accuracy_scrambled  # the test labels were used, but only for scoring


def test_c_selection_helpers_take_only_training_and_validation_data():
    x, y = noisy_problem()
    assert select_c_by_cv(x[:200], y[:200], c_grid=C_GRID, inner_folds=3, seed=0) in C_GRID
    assert select_c_on_dev(x[:200], y[:200], x[200:250], y[200:250], c_grid=C_GRID, seed=1) in C_GRID


def test_ties_in_validation_accuracy_go_to_the_smallest_c():
    assert best_c(np.array([0.7, 0.9, 0.9, 0.8]), [0.25, 0.5, 1, 2]) == 0.5


def test_train_test_task_picks_the_same_c_when_test_labels_are_flipped(encoder, tmp_path):
    rows = sentiment_rows()
    train, test = rows[0::2], rows[1::2]
    flipped = [(s, "0" if label == "1" else "1") for s, label in test]
    header = ["sentence", "label"]
    honest = evaluate_transfer(encoder, transfer_spec(tmp_path, "a", {"train": train, "test": test}, header), "test")
    liar = evaluate_transfer(encoder, transfer_spec(tmp_path, "b", {"train": train, "test": flipped}, header), "test")
    assert honest["c_selected"] == liar["c_selected"]
    assert honest["accuracy"] == pytest.approx(100 - liar["accuracy"])


@pytest.mark.slow
def test_minilm_scores_a_plausible_accuracy_on_movie_reviews(encoder, shared_data_dir):
    from llmcse.data.tasks import TaskCatalog

    spec = TaskCatalog(shared_data_dir).get("mr")
    start = time.perf_counter()
    result = evaluate_transfer(encoder, spec, "all")
    elapsed = time.perf_counter() - start
    assert result["num_examples"] == 10662
    assert 75.0 <= result["accuracy"] <= 78.5, result  # measured: 76.69 (seed 1111)
    assert elapsed < 900
