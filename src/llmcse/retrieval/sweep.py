"""Expansion settings compared on one BEIR task, weights chosen without the reported queries.

The task's judged queries are split once, by a hash of their ids, into a *tune* part and a
*report* part. Every setting (plain retriever; each expansion file under each weighting) is
scored on both parts; the best expansion setting on the tune part is the one we recommend,
and the report part's numbers are the honest ones (no choice was made on them). Scores on all
queries are kept too, for comparison with published full-split figures.

Document vectors of every setting come from one ``CachedEncoder``: each document, query and
keyword text is embedded once, whatever the number of weightings.
"""

from __future__ import annotations

import hashlib
import logging

from llmcse.data.records import Doc, Query

logger = logging.getLogger(__name__)


def held_out_split(query_ids: list[str], tune_fraction: float = 0.5, salt: str = "llmcse") -> tuple[set[str], set[str]]:
    """(tune, report) query ids: a stable hash split, the same on every machine and run."""
    def bucket(qid: str) -> float:
        return int(hashlib.md5(f"{salt}:{qid}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    tune = {q for q in query_ids if bucket(q) < tune_fraction}
    return tune, set(query_ids) - tune


def _score(qrels: dict, run: dict, ids: set[str]) -> dict[str, float]:
    from llmcse.eval.retrieval import retrieval_metrics

    return retrieval_metrics({q: qrels[q] for q in ids}, {q: run.get(q, {}) for q in ids})


def sweep(encoder, corpus: dict[str, Doc], queries: dict[str, Query], qrels: dict, expansion_sets: dict[str, dict],
          weightings: list[str], *, tune_fraction: float = 0.5, top_k: int = 100, references: dict | None = None) -> dict:
    """Score plain and expanded retrieval on the tune / report / all query sets.

    Args:
        encoder: A ``CachedEncoder`` (texts embedded once across settings).
        expansion_sets: name -> expansions (``load_expansions``), e.g. raw and round-trip filtered.
        weightings: ``"w_doc,w_q,w_k"`` or ``"mean"`` strings, each tried with each expansion set.
        references: name -> other searchers (e.g. BM25) scored on the same parts, never chosen.

    Returns:
        ``settings``: one row per setting with ``tune``/``report``/``all`` metrics and, except for
        plain, ``report_vs_plain`` (paired per-query nDCG@10 comparison on the report queries);
        ``chosen``: the expansion setting with the best tune nDCG@10; query counts per part.
    """
    from llmcse.eval.retrieval import discard_identical_ids, paired_comparison, per_query_ndcg_at_10, truncate_run
    from llmcse.retrieval.dense import DenseSearcher
    from llmcse.retrieval.expansion import ExpandedDenseSearcher, ExpansionWeights

    from llmcse.errors import LlmcseError

    judged = [q for q in qrels if q in queries]
    tune, report = held_out_split(judged, tune_fraction)
    if not tune or not report:
        raise LlmcseError(f"{len(judged)} judged queries split into {len(tune)} to tune and {len(report)} to report on: "
                          "too few to hold any out (change --tune-fraction or use a larger query set)")
    searchers = {**(references or {}), "plain": DenseSearcher(encoder)}
    for name, expansions in expansion_sets.items():
        for text in weightings:
            weights = ExpansionWeights.parse(text)
            searchers[f"{name} {weights.label()}"] = ExpandedDenseSearcher(encoder, expansions, weights)
    rows, report_ndcg = [], {}
    report_qrels = {q: qrels[q] for q in report}
    for label, searcher in searchers.items():
        run, _ = discard_identical_ids(searcher.search(corpus, {q: queries[q] for q in judged}, top_k=top_k + 1))
        run = truncate_run(run, top_k)
        row = {"setting": label, **{part: _score(qrels, run, ids) for part, ids in
                                    (("tune", tune), ("report", report), ("all", set(judged)))}}
        report_ndcg[label] = per_query_ndcg_at_10(report_qrels, run)
        rows.append(row)
        logger.info("%s: nDCG@10 tune %.2f, report %.2f", label, row["tune"]["ndcg_at_10"], row["report"]["ndcg_at_10"])
    for row in rows:  # is a difference on the report queries more than query sampling noise?
        if row["setting"] != "plain":
            row["report_vs_plain"] = paired_comparison(report_ndcg["plain"], report_ndcg[row["setting"]])
    expanded = [r for r in rows if r["setting"] != "plain" and r["setting"] not in (references or {})]
    chosen = max(expanded, key=lambda r: r["tune"]["ndcg_at_10"])["setting"] if expanded else None
    return {"settings": rows, "chosen": chosen, "queries": {"tune": len(tune), "report": len(report), "all": len(judged)},
            "tune_fraction": tune_fraction, "references": sorted(references or {})}


def paired_cell(comparison: dict | None) -> str:
    """'[-0.4, +1.2], p 0.31, 120 / 98' for a table cell; '-' for the plain row itself."""
    if not comparison:
        return "-"
    low, high = comparison["ci95"]
    return f"[{low:+.2f}, {high:+.2f}], p {comparison['p_value']:.2g}, {comparison['better']} / {comparison['worse']}"


def sweep_table(result: dict) -> str:
    """Markdown: every setting's nDCG@10 on the three query sets; the tune-chosen one marked."""
    q = result["queries"]
    lines = [f"| setting | nDCG@10 tune ({q['tune']} q) | nDCG@10 report ({q['report']} q) | nDCG@10 all ({q['all']} q) "
             "| Recall@100 report | report vs plain: 95% CI, p, better / worse |", "|---|---|---|---|---|---|"]
    plain = next(r for r in result["settings"] if r["setting"] == "plain")
    for r in result["settings"]:
        mark = " **(chosen on tune)**" if r["setting"] == result["chosen"] else ""
        if r["setting"] in result.get("references", []):
            mark = " (reference)"
        delta = r["report"]["ndcg_at_10"] - plain["report"]["ndcg_at_10"]
        lines.append(f"| {r['setting']}{mark} | {r['tune']['ndcg_at_10']:.2f} | {r['report']['ndcg_at_10']:.2f}"
                     f"{'' if r is plain else f' ({delta:+.2f})'} | {r['all']['ndcg_at_10']:.2f} | "
                     f"{r['report']['recall_at_100']:.2f} | {paired_cell(r.get('report_vs_plain'))} |")
    return "\n".join(lines) + "\n"


def run_sweep(model: str, task: str, expansion_files: dict[str, str], weightings: list[str], output_dir, *,
              data_dir: str | None = None, split: str = "test", tune_fraction: float = 0.5, device: str | None = None,
              dtype: str | None = None, batch_size: int = 64, bm25: bool = False) -> dict:
    """``sweep`` on a BEIR task from the data dir; writes sweep.json and sweep.md to ``output_dir``.
    ``bm25``: add BM25 (bm25s, the baselines' settings) as a reference row on the same query parts."""
    from pathlib import Path

    from llmcse.data.loaders import load_beir
    from llmcse.data.paths import resolve_data_dir
    from llmcse.data.tasks import TaskCatalog
    from llmcse.embed.encode import CachedEncoder
    from llmcse.embed.models import load_embedder
    from llmcse.retrieval.expansion import load_expansions
    from llmcse.utils.io import atomic_write_json, atomic_write_text, file_md5

    spec = TaskCatalog(resolve_data_dir(data_dir)).get(task)
    if spec.kind != "retrieval":
        from llmcse.errors import LlmcseError

        raise LlmcseError(f"task {task!r} is {spec.kind}, not a BEIR retrieval task")
    data = load_beir(spec.root, split)
    encoder = CachedEncoder(load_embedder(model, device=device, dtype=dtype), batch_size=batch_size)
    sets = {name: load_expansions(path) for name, path in expansion_files.items()}
    references = {}
    if bm25:
        from llmcse.retrieval.bm25 import BM25Searcher

        references["bm25"] = BM25Searcher()
    result = sweep(encoder, data.corpus, data.queries, data.qrels, sets, weightings, tune_fraction=tune_fraction,
                   references=references)
    result.update(model=model, task=task, split=split, dtype=dtype or "float32",
                  expansions={name: {"path": str(p), "md5": file_md5(p)} for name, p in expansion_files.items()})
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep.json", result)
    header = (f"{model} on {task} ({split}), nDCG@10 x100. Queries split by a hash of their id: weights chosen on "
              f"the tune part, the report part never used for a choice.\n\n")
    atomic_write_text(out / "sweep.md", header + sweep_table(result))
    return result
