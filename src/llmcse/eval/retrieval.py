"""BEIR retrieval evaluation: nDCG@10 (headline), Recall@100, MAP@10 and MRR@10, x100.

Follows BEIR (Thakur et al., 2021, "BEIR: A Heterogeneous Benchmark for Zero-shot
Evaluation of Information Retrieval Models", NeurIPS Datasets and Benchmarks) and MTEB:

* metrics from pytrec_eval (``ndcg_cut.10``, ``recall.100``, ``map_cut.10``); it ranks
  equal scores by doc id (descending), as trec_eval does, and so does our MRR@10;
* MRR@10 as BEIR computes it: reciprocal rank of the first document with relevance > 0
  within the top 10, 0 if there is none;
* ``ignore_identical_ids``: a retrieved document whose id equals the query id is dropped
  before scoring (ArguAna's queries are themselves corpus documents). We retrieve
  ``top_k + 1`` so that each query still has ``top_k`` results afterwards.

One deliberate difference: BEIR averages over the queries pytrec_eval returns, which
silently leaves out a query with no results at all; we average over every judged query
and count such a query as 0 (``num_queries_without_results`` says how many there were).
"""

from __future__ import annotations

import logging
import math

import pytrec_eval

from llmcse.data.loaders import load_beir
from llmcse.data.tasks import TaskSpec

logger = logging.getLogger(__name__)

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

# pytrec_eval measure -> (key in its output, mteb name)
PYTREC_MEASURES = {
    "ndcg_cut.10": ("ndcg_cut_10", "ndcg_at_10"),
    "recall.100": ("recall_100", "recall_at_100"),
    "map_cut.10": ("map_cut_10", "map_at_10"),
}


def ranked(doc_scores: dict[str, float]) -> list[tuple[str, float]]:
    """(doc id, score) best first, equal scores by doc id descending (trec_eval's order)."""
    return sorted(doc_scores.items(), key=lambda item: (item[1], item[0]), reverse=True)


def discard_identical_ids(run: Run) -> tuple[Run, int]:
    """Drop each retrieved document whose id equals its query's id.

    Returns:
        (the run without those documents, how many were dropped)
    """
    dropped = sum(1 for query_id, doc_scores in run.items() if query_id in doc_scores)
    cleaned = {
        query_id: {doc_id: s for doc_id, s in doc_scores.items() if doc_id != query_id}
        for query_id, doc_scores in run.items()
    }
    return cleaned, dropped


def truncate_run(run: Run, top_k: int) -> Run:
    """Keep the ``top_k`` best documents per query (ties ordered as trec_eval orders them)."""
    return {query_id: dict(ranked(doc_scores)[:top_k]) for query_id, doc_scores in run.items()}


def mrr_at_k(qrels: Qrels, run: Run, k: int = 10) -> dict[str, float]:
    """Per-query reciprocal rank of the first relevant (relevance > 0) document in the top ``k``.

    Returns:
        query id -> reciprocal rank in [0, 1], for every query in ``qrels``.
    """
    per_query = {}
    for query_id, judged in qrels.items():
        relevant = {doc_id for doc_id, rel in judged.items() if rel > 0}
        per_query[query_id] = 0.0
        for rank, (doc_id, _) in enumerate(ranked(run.get(query_id, {}))[:k], start=1):
            if doc_id in relevant:
                per_query[query_id] = 1.0 / rank
                break
    return per_query


def _pytrec_per_query(qrels: Qrels, run: Run) -> dict[str, dict[str, float]]:
    """query id -> {pytrec measure key: value}, for the judged queries that have results."""
    run = {query_id: {doc_id: float(s) for doc_id, s in docs.items()} for query_id, docs in run.items() if query_id in qrels}
    return pytrec_eval.RelevanceEvaluator(qrels, set(PYTREC_MEASURES)).evaluate(run)


def per_query_ndcg_at_10(qrels: Qrels, run: Run) -> dict[str, float]:
    """nDCG@10 x100 of every judged query (0 for a query without results), for paired comparisons."""
    if not qrels:
        raise ValueError("no judged queries to evaluate")
    per_query = _pytrec_per_query(qrels, run)
    return {query_id: 100 * per_query.get(query_id, {}).get("ndcg_cut_10", 0.0) for query_id in qrels}


def paired_comparison(baseline: dict[str, float], system: dict[str, float], *, seed: int = 0,
                      n_resamples: int = 10_000) -> dict:
    """``system`` vs ``baseline`` on the same queries (per-query scores, e.g. nDCG@10 x100).

    Returns the mean difference, a 95% bootstrap confidence interval of it (queries resampled),
    the two-sided paired t-test p-value (the test IR papers use for per-query metric differences,
    Smucker et al., CIKM 2007) and how many queries got better / worse / stayed equal.
    """
    import numpy as np
    from scipy import stats

    queries = sorted(baseline)
    if set(system) != set(queries) or len(queries) < 2:
        raise ValueError("paired comparison needs the same >= 2 queries on both sides")
    diff = np.array([system[q] - baseline[q] for q in queries])  # (n_queries,)
    if np.allclose(diff, diff[0]):  # no spread: the test and the interval are degenerate
        ci, p_value = (float(diff[0]), float(diff[0])), (1.0 if diff[0] == 0 else 0.0)
    else:
        boot = stats.bootstrap((diff,), np.mean, n_resamples=n_resamples, confidence_level=0.95,
                               rng=np.random.default_rng(seed))
        ci = (float(boot.confidence_interval.low), float(boot.confidence_interval.high))
        p_value = float(stats.ttest_rel([system[q] for q in queries], [baseline[q] for q in queries]).pvalue)
    return {"queries": len(queries), "mean_delta": float(diff.mean()), "ci95": [round(ci[0], 4), round(ci[1], 4)],
            "p_value": p_value, "better": int((diff > 1e-9).sum()), "worse": int((diff < -1e-9).sum()),
            "equal": int((abs(diff) <= 1e-9).sum())}


def retrieval_metrics(qrels: Qrels, run: Run) -> dict[str, float]:
    """nDCG@10, Recall@100, MAP@10 and MRR@10 averaged over every query in ``qrels``, x100.

    A judged query missing from ``run`` (or with no results) scores 0 on every metric.
    """
    if not qrels:
        raise ValueError("no judged queries to evaluate")
    per_query = _pytrec_per_query(qrels, run)
    metrics = {}
    for pytrec_key, name in PYTREC_MEASURES.values():
        total = math.fsum(per_query.get(query_id, {}).get(pytrec_key, 0.0) for query_id in qrels)
        metrics[name] = 100 * total / len(qrels)
    metrics["mrr_at_10"] = 100 * math.fsum(mrr_at_k(qrels, run, 10).values()) / len(qrels)
    return metrics


def evaluate_retrieval(searcher, spec: TaskSpec, split: str, *, top_k: int = 100, ignore_identical_ids: bool = True) -> dict:
    """Score one BEIR task split with a searcher (``DenseSearcher``, ``BM25Searcher``, ...).

    Args:
        searcher: Has ``search(corpus, queries, top_k) -> {query_id: {doc_id: score}}``.
        spec: A retrieval task (its ``root`` is the BEIR folder).
        split: Which ``qrels/<split>.tsv`` to score.
        top_k: Results kept per query (Recall@100 needs at least 100).
        ignore_identical_ids: Drop retrieved documents whose id equals the query id.

    Returns:
        ``main_score`` (= ``ndcg_at_10``), ``ndcg_at_10``, ``recall_at_100``, ``map_at_10``,
        ``mrr_at_10`` (all x100), ``num_queries``, ``num_docs``, ``ignored_identical_ids``,
        ``num_queries_without_results`` and the loader's notes (e.g. ``qrels_unknown_doc``).
    """
    spec.file_for(split)  # a clear error for an unknown split
    data = load_beir(spec.root, split)
    run = searcher.search(data.corpus, data.queries, top_k=top_k + 1 if ignore_identical_ids else top_k)
    dropped = 0
    if ignore_identical_ids:
        run, dropped = discard_identical_ids(run)
        logger.info("%s: dropped %d retrieved document(s) whose id equals the query id", data.name, dropped)
    run = truncate_run(run, top_k)
    without_results = sum(1 for query_id in data.qrels if not run.get(query_id))
    if without_results:
        logger.warning("%s: %d judged queries got no results; they score 0", data.name, without_results)
    metrics = retrieval_metrics(data.qrels, run)
    result = {
        "main_score": metrics["ndcg_at_10"],
        **metrics,
        "num_queries": len(data.qrels),
        "num_docs": len(data.corpus),
        "ignored_identical_ids": dropped,
        "num_queries_without_results": without_results,
        **data.notes,
    }
    if warning := unreachable_qrels_warning(data):
        result["warning"] = warning
        logger.warning("%s: %s", data.name, warning)
    return result


def unreachable_qrels_warning(data) -> str | None:
    """A warning when no judged query has a relevant document in the corpus: every metric is 0 by
    construction, which says nothing about the model (corpus and qrels do not belong together).
    A few such qrels are normal in BEIR and stay an INFO line of the loader."""
    reachable = sum(1 for judged in data.qrels.values()
                    if any(rel > 0 and doc_id in data.corpus for doc_id, rel in judged.items()))
    if data.qrels and not reachable:
        return (f"none of the {len(data.qrels)} judged queries has a relevant document in corpus.jsonl "
                f"({data.notes.get('qrels_unknown_doc', 0)} qrels point to missing documents): the score is 0 "
                "by construction; check that corpus.jsonl and the qrels belong together")
    return None
