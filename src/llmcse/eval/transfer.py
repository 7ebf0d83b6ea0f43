"""SentEval transfer tasks: logistic regression on frozen sentence embeddings.

This follows SentEval's scikit-learn path (Conneau & Kiela, 2018, "SentEval: An
Evaluation Toolkit for Universal Sentence Representations", LREC):

* **Features.** The unit-normalised sentence embedding ``u``. For sentence-pair tasks
  (MRPC) SentEval's features ``[|u - v|, u * v]``.
* **Classifier.** ``LogisticRegression(C=c, max_iter=1000, random_state=seed)`` with C
  from SentEval's grid 2^-2 .. 2^3.
* **Protocols.** The test data never takes part in choosing C:

  - ``all`` only (MR, CR, SUBJ, MPQA): stratified 10-fold cross-validation, shuffled with
    ``seed``. In each outer fold C is chosen by an inner stratified k-fold CV on the
    outer training part, the model is refit on that part and scored on the held-out
    fold. The reported accuracy is the mean of the fold accuracies, as in SentEval's
    ``InnerKFoldClassifier``.
  - ``train`` + ``dev`` + ``test`` (SST2): C is chosen on ``dev``; the model is refit on
    ``train`` only (not train + dev) and scored on ``test`` (SentEval's
    ``SplitClassifier``).
  - ``train`` + ``test`` (TREC, MRPC): C is chosen by inner k-fold CV on ``train``, then
    the model is refit on ``train`` and scored on ``test`` (SentEval's
    ``KFoldClassifier``). MRPC also reports F1 of the paraphrase class ``"1"``.

  Ties in validation accuracy go to the smallest C (strongest regularisation), like
  SentEval's ``argmax`` over an ascending grid.

**Speed.** The nested CV of a 10k-sentence task means 10 x (5 x 6 + 1) = 310 fits of a
384-d probe. Measured for MR (10,662 rows, 384-d, all-MiniLM-L6-v2) on a shared, busy
2-core machine: 14-21 CPU-seconds, 8-29 s wall with 2 processes depending on the other
load; all seven tasks' probes took about 50 s. What keeps it there:

* features stay float32 (the encoder's dtype; scikit-learn's L-BFGS keeps it): about a
  third cheaper than float64, with the same chosen C in the MR folds compared;
* one BLAS thread per process (see ``single_threaded_blas``) and independent folds in
  parallel processes (``N_JOBS``: up to 2, or ``$LLMCSE_TRANSFER_JOBS``); tasks under
  ``PARALLEL_MIN_ROWS`` rows run in-process, where worker start-up would dominate;
* 5 inner folds instead of SentEval's 10 (``inner_folds``), halving the selection cost.
  Little rides on the exact choice: on MR, neighbouring grid values score within a few
  tenths of a point of each other on the held-out fold.

**Progress.** On big models a task's probe takes long (wide features), so each task shows a bar
("mr probe") that ticks per outer fold (cross-validated tasks), or per C tried / inner fold and
then the final fit (train/test tasks). It follows the encoder's ``show_progress_bar``
(``llmcse.utils.progress.progress_enabled``). The bars only observe: the folds, fits and numbers
are the same with or without them.

Warm-starting along the C grid (the ``LogisticRegressionCV`` path trick) was tried and
dropped: with float32 features it saved almost no CPU, and because L-BFGS stops at
``tol`` rather than at the exact optimum, it changed which C won in some folds. Every
fit here starts from scratch, as in SentEval.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from llmcse.data.loaders import load_labeled_sentences
from llmcse.data.records import LabeledPair, LabeledSentence
from llmcse.data.tasks import TaskSpec
from llmcse.embed.encode import CachedEncoder
from llmcse.errors import UnknownNameError
from llmcse.utils.progress import progress_enabled

logger = logging.getLogger(__name__)

C_GRID = (0.25, 0.5, 1, 2, 4, 8)  # SentEval: [2**t for t in range(-2, 4)]
MAX_ITER = 1000
PAIR_POSITIVE_LABEL = "1"  # MRPC: paraphrase
N_JOBS = int(os.environ.get("LLMCSE_TRANSFER_JOBS", "0")) or min(2, os.cpu_count() or 1)
PARALLEL_MIN_ROWS = 2000  # below this, process start-up costs more than the fits


# ----------------------------------------------------------------------------- features


def pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """SentEval's MRPC features ``[|u - v|, u * v]``: (n, dim) x 2 -> (n, 2 * dim)."""
    return np.c_[np.abs(u - v), u * v]


def embed_rows(
    encoder: CachedEncoder, rows: Sequence[LabeledSentence] | Sequence[LabeledPair]
) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of transfer-task rows.

    Returns:
        (X, y): X is (n, dim) for sentences or (n, 2 * dim) for pairs, float32; y is
        (n,) of str labels.
    """
    if rows and isinstance(rows[0], LabeledPair):
        u = encoder.encode([r.sentence1 for r in rows])  # (n, dim)
        v = encoder.encode([r.sentence2 for r in rows])  # (n, dim)
        features = pair_features(u, v)  # (n, 2 * dim)
    else:
        features = encoder.encode([r.sentence for r in rows])  # (n, dim)
    labels = np.array([r.label for r in rows], dtype=object)  # (n,)
    return features.astype(np.float32, copy=False), labels


# ----------------------------------------------------------------------------- fitting


def single_threaded_blas() -> threadpool_limits:
    """One BLAS thread per process while probing.

    The matrix-vector products of a 384-d probe are too small for threaded BLAS: on a
    busy 2-core machine two BLAS threads made each fit about 3x slower. Parallelism comes
    from running independent folds in separate processes instead (joblib's workers
    already get ``cpu_count // n_jobs`` threads).
    """
    return threadpool_limits(limits=1, user_api="blas")


def make_classifier(c: float, seed: int) -> LogisticRegression:
    """SentEval's scikit-learn probe."""
    return LogisticRegression(C=c, max_iter=MAX_ITER, random_state=seed)


def fit_classifier(x: np.ndarray, y: np.ndarray, c: float, seed: int) -> LogisticRegression:
    """Fit one probe from scratch on x: (n, d), y: (n,)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return make_classifier(c, seed).fit(x, y)


def jobs_for(n_rows: int) -> int:
    """Processes to use for a task of ``n_rows`` training rows."""
    return N_JOBS if n_rows >= PARALLEL_MIN_ROWS else 1


def run_ticking(calls: list, n_jobs: int, progress: tqdm | None = None) -> list:
    """joblib ``delayed`` calls over up to ``n_jobs`` processes, results in call order; ``progress``
    ticks as each result arrives (a bar per result, not per dispatch)."""
    try:
        parallel = Parallel(n_jobs=min(n_jobs, len(calls)), return_as="generator")  # joblib >= 1.3
    except TypeError:  # older joblib: all results at once, the bar jumps at the end
        parallel = Parallel(n_jobs=min(n_jobs, len(calls)))
    results = []
    for result in parallel(calls):
        results.append(result)
        if progress is not None:
            progress.update(1)
    return results


def probe_bar(task: str, total: int, unit: str, show_progress_bar: bool | None) -> tqdm:
    """The bar of one task's probe: ``total`` outer folds, or the steps of a train/test probe."""
    return tqdm(total=total, desc=f"{task} probe", unit=unit, disable=not progress_enabled(show_progress_bar))


def validation_accuracy(
    x_fit: np.ndarray, y_fit: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, c: float, seed: int
) -> float:
    """Accuracy in [0, 1] on (x_val, y_val) of a probe fit on (x_fit, y_fit) with this C."""
    return float(fit_classifier(x_fit, y_fit, c, seed).score(x_val, y_val))


def grid_accuracies(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    c_grid: Sequence[float],
    seed: int,
    n_jobs: int = 1,
    progress: tqdm | None = None,
) -> np.ndarray:
    """Validation accuracy of each C, each fit from scratch.

    Args:
        x_fit, y_fit: Fitting part, (n_fit, d) and (n_fit,).
        x_val, y_val: Validation part, (n_val, d) and (n_val,).
        c_grid: Regularisation values.
        seed: ``random_state`` of the classifier.
        n_jobs: Processes over the C values.
        progress: Ticks once per C value.

    Returns:
        (len(c_grid),) accuracies in [0, 1].
    """
    if n_jobs == 1:
        accuracies = []
        for c in c_grid:
            accuracies.append(validation_accuracy(x_fit, y_fit, x_val, y_val, c, seed))
            if progress is not None:
                progress.update(1)
    else:
        accuracies = run_ticking(
            [delayed(validation_accuracy)(x_fit, y_fit, x_val, y_val, c, seed) for c in c_grid], n_jobs, progress
        )
    return np.array(accuracies)  # (n_c,)


def best_c(mean_accuracies: np.ndarray, c_grid: Sequence[float]) -> float:
    """The C with the highest validation accuracy; ties go to the smallest C."""
    return float(c_grid[int(np.argmax(mean_accuracies))])


def stratified_folds(y: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled stratified (train_idx, test_idx) splits of y: (n,)."""
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def select_c_by_cv(
    x: np.ndarray, y: np.ndarray, *, c_grid: Sequence[float], inner_folds: int, seed: int, n_jobs: int = 1,
    progress: tqdm | None = None,
) -> float:
    """Choose C by stratified k-fold CV on training data only.

    Args:
        x: Training features, (n, d).
        y: Training labels, (n,).
        c_grid: Candidate C values (any order).
        inner_folds: Number of CV folds.
        seed: Shuffling seed and classifier ``random_state``.
        n_jobs: Processes over the folds.
        progress: Ticks once per fold.

    Returns:
        The C with the best mean validation accuracy.
    """
    grid = sorted(c_grid)
    folds = stratified_folds(y, inner_folds, seed)
    per_fold = run_ticking(
        [delayed(grid_accuracies)(x[fit], y[fit], x[val], y[val], grid, seed) for fit, val in folds], n_jobs, progress
    )  # inner_folds x (n_c,)
    return best_c(np.mean(per_fold, axis=0), grid)


def select_c_on_dev(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_dev: np.ndarray,
    y_dev: np.ndarray,
    *,
    c_grid: Sequence[float],
    seed: int,
    n_jobs: int = 1,
    progress: tqdm | None = None,
) -> float:
    """Choose C by accuracy on a dev split (SentEval's ``SplitClassifier``).

    Args:
        x_train, y_train: (n_train, d) and (n_train,).
        x_dev, y_dev: (n_dev, d) and (n_dev,).
        c_grid: Candidate C values (any order).
        seed: Classifier ``random_state``.
        n_jobs: Processes over the C values.
        progress: Ticks once per C value.
    """
    grid = sorted(c_grid)
    return best_c(grid_accuracies(x_train, y_train, x_dev, y_dev, grid, seed, n_jobs=n_jobs, progress=progress), grid)


# ----------------------------------------------------------------------------- protocols


def score_outer_fold(
    x: np.ndarray,
    y: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    c_grid: Sequence[float],
    inner_folds: int,
    seed: int,
) -> tuple[float, float]:
    """One outer CV fold: choose C on the training part, refit, score the held-out part.

    Returns:
        (chosen C, held-out accuracy in [0, 1]).
    """
    x_train, y_train = x[train_idx], y[train_idx]  # (n_train, d), (n_train,)
    c = select_c_by_cv(x_train, y_train, c_grid=c_grid, inner_folds=inner_folds, seed=seed)
    return c, validation_accuracy(x_train, y_train, x[test_idx], y[test_idx], c, seed)


def cross_validate(
    x: np.ndarray, y: np.ndarray, *, n_folds: int, inner_folds: int, c_grid: Sequence[float], seed: int, n_jobs: int = 1,
    progress: tqdm | None = None,
) -> tuple[list[float], list[float]]:
    """Nested stratified CV (SentEval's ``InnerKFoldClassifier``).

    Args:
        x: Features, (n, d).
        y: Labels, (n,).
        progress: Ticks once per outer fold.

    Returns:
        (chosen C per outer fold, held-out accuracy per outer fold in [0, 1]).
    """
    folds = stratified_folds(y, n_folds, seed)
    results = run_ticking(
        [delayed(score_outer_fold)(x, y, train_idx, test_idx, c_grid, inner_folds, seed) for train_idx, test_idx in folds],
        n_jobs, progress,
    )
    return [c for c, _ in results], [a for _, a in results]


def _load(encoder: CachedEncoder, spec: TaskSpec, split: str, max_examples: int | None = None,
          seed: int = 1111) -> tuple[np.ndarray, np.ndarray, bool]:
    """(X, y, is_pair_task) of one split file; ``max_examples`` keeps a seeded random sample
    (a quick, cheaper probe for comparing many models; full splits are the reported protocol)."""
    rows = load_labeled_sentences(spec.file_for(split))
    if max_examples is not None and len(rows) > max_examples:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=max_examples, replace=False))
        rows = [rows[i] for i in keep]
    x, y = embed_rows(encoder, rows)
    return x, y, isinstance(rows[0], LabeledPair)


def _evaluate_cv(
    encoder: CachedEncoder, spec: TaskSpec, split: str, *, seed: int, n_folds: int, inner_folds: int, c_grid,
    max_examples: int | None = None, show_progress_bar: bool | None = None,
) -> dict:
    x, y, _ = _load(encoder, spec, split, max_examples, seed)
    start = time.perf_counter()
    with single_threaded_blas(), probe_bar(spec.name, n_folds, "fold", show_progress_bar) as bar:
        c_per_fold, fold_accuracies = cross_validate(
            x, y, n_folds=n_folds, inner_folds=inner_folds, c_grid=c_grid, seed=seed, n_jobs=jobs_for(len(y)),
            progress=bar,
        )
    accuracy = 100 * float(np.mean(fold_accuracies))
    elapsed = time.perf_counter() - start
    logger.info(
        "%s: %d-fold CV accuracy %.2f, C per fold %s (probe %.1f s)", spec.name, n_folds, accuracy, c_per_fold, elapsed
    )
    return {
        "main_score": accuracy,
        "accuracy": accuracy,
        "num_examples": len(y),
        "protocol": f"{n_folds}-fold CV",
        "c_selected": c_per_fold,
        "split": split,
    }


def _evaluate_train_test(
    encoder: CachedEncoder, spec: TaskSpec, split: str, *, seed: int, inner_folds: int, c_grid,
    max_examples: int | None = None, show_progress_bar: bool | None = None,
) -> dict:
    x_test, y_test, is_pair = _load(encoder, spec, split, max_examples, seed)
    x_train, y_train, _ = _load(encoder, spec, "train", max_examples, seed)
    dev = _load(encoder, spec, "dev", max_examples, seed) if "dev" in spec.files else None
    start = time.perf_counter()
    steps = (len(c_grid) if dev is not None else inner_folds) + 1  # choosing C, then the final fit
    with single_threaded_blas(), probe_bar(spec.name, steps, "step", show_progress_bar) as bar:
        if dev is not None:
            x_dev, y_dev, _ = dev
            c = select_c_on_dev(x_train, y_train, x_dev, y_dev, c_grid=c_grid, seed=seed, n_jobs=jobs_for(len(y_train)),
                                progress=bar)
            protocol = "train/dev/test"
        else:
            c = select_c_by_cv(
                x_train, y_train, c_grid=c_grid, inner_folds=inner_folds, seed=seed, n_jobs=jobs_for(len(y_train)),
                progress=bar,
            )
            protocol = f"train/test (C by {inner_folds}-fold CV on train)"
        predicted = fit_classifier(x_train, y_train, c, seed).predict(x_test)  # (n_test,)
        bar.update(1)
    accuracy = 100 * float(np.mean(predicted == y_test))
    result = {
        "main_score": accuracy,
        "accuracy": accuracy,
        "num_examples": len(y_test),
        "protocol": protocol,
        "c_selected": c,
        "split": split,
    }
    if is_pair:
        result["f1"] = 100 * float(f1_score(y_test, predicted, pos_label=PAIR_POSITIVE_LABEL, average="binary"))
    elapsed = time.perf_counter() - start
    logger.info("%s: %s accuracy %.2f, C %s (probe %.1f s)", spec.name, protocol, accuracy, c, elapsed)
    return result


def evaluate_transfer(
    encoder: CachedEncoder,
    spec: TaskSpec,
    split: str,
    *,
    seed: int = 1111,
    n_folds: int = 10,
    inner_folds: int = 5,
    c_grid: tuple[float, ...] = C_GRID,
    max_examples: int | None = None,
    show_progress_bar: bool | None = None,
) -> dict:
    """Score one SentEval transfer task with a logistic-regression probe.

    Args:
        encoder: Embeds the sentences (unit rows).
        spec: The task; ``spec.files`` has ``all`` (cross-validated) or ``train`` + ``test``
            (+ ``dev``).
        split: ``all`` for cross-validated tasks, ``test`` for the others.
        seed: Fold shuffling and classifier ``random_state``.
        n_folds: Outer CV folds (``all`` tasks).
        inner_folds: Inner CV folds used to choose C (``all`` tasks, and train/test tasks
            without ``dev``).
        c_grid: Candidate inverse regularisation strengths.
        max_examples: Cap every split file at this many rows (seeded sample): a cheaper probe
            for comparing many models, not the SentEval protocol; results say ``subsampled``.
        show_progress_bar: A bar over the probe's folds/fits; None: the encoder's own setting
            (``CachedEncoder.show_progress_bar``), else ``progress_enabled``'s rule.

    Returns:
        ``main_score`` and ``accuracy`` (x100), ``num_examples`` (scored rows),
        ``protocol``, ``c_selected`` (list per fold for CV, else a float), ``split``, and
        for sentence-pair tasks ``f1`` (x100) of the positive class ``"1"``.

    Raises:
        UnknownNameError: The task has no such split, or the split is not a scoring split
            (``all`` or ``test``).
    """
    spec.file_for(split)  # raises UnknownNameError listing the task's splits
    if show_progress_bar is None:
        show_progress_bar = getattr(encoder, "show_progress_bar", None)
    if split == "all":
        result = _evaluate_cv(encoder, spec, split, seed=seed, n_folds=n_folds, inner_folds=inner_folds, c_grid=c_grid,
                              max_examples=max_examples, show_progress_bar=show_progress_bar)
    elif split == "test" and "train" in spec.files:
        result = _evaluate_train_test(encoder, spec, split, seed=seed, inner_folds=inner_folds, c_grid=c_grid,
                                      max_examples=max_examples, show_progress_bar=show_progress_bar)
    else:
        result = None
    if result is not None:
        if max_examples is not None:
            result["subsampled"] = max_examples
        return result
    raise UnknownNameError(
        f"transfer task {spec.name!r} cannot be scored on split {split!r}: a probe is scored on 'all' "
        f"(cross-validation) or on 'test' (trained on 'train'); this task has: {', '.join(sorted(spec.files))}"
    )
