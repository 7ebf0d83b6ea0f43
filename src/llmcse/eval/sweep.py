"""Expansion settings compared on one BEIR task, weights chosen without the reported queries.

The task's judged queries are split once, by a hash of their ids, into a *tune* part and a
*report* part. Every setting (plain retriever; BM25 when asked; each expansion file under each
weighting; multi-representation indexes) is scored on both parts. The setting with the best tune
nDCG@10 is chosen among *all* of them, plain and BM25 included (an honest chooser may well decide
not to expand; ties go to plain, then BM25), and the report part's numbers are the honest ones (no
choice was made on them), each with a paired bootstrap CI and t-test against plain. Scores on all
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
          weightings: list[str], *, tune_fraction: float = 0.5, top_k: int = 100, references: dict | None = None,
          multirep: list[str] | None = None) -> dict:
    """Score plain and expanded retrieval on the tune / report / all query sets.

    Args:
        encoder: A ``CachedEncoder`` (texts embedded once across settings).
        expansion_sets: name -> expansions (``load_expansions``), e.g. raw and round-trip filtered.
        weightings: ``"w_doc,w_q,w_k"`` or ``"mean"`` strings, each tried with each expansion set.
        references: name -> other searchers (e.g. BM25) scored on the same parts; candidates like the rest.
        multirep: ``MultiRepSpec`` texts (``sent``, ``sent+doc``, ``sent+queries:0.3`` ...): one row
            each (``multirep sent``), or, for specs with synthetic queries, one per expansion set
            (``filtered multirep sent+queries``).

    Returns:
        ``settings``: one row per setting with ``tune``/``report``/``all`` metrics and, except for
        plain, ``report_vs_plain`` (paired per-query nDCG@10 comparison on the report queries);
        ``chosen``: the setting with the best tune nDCG@10 among all rows, plain and references
        included; ``chosen_report``: its report nDCG@10, plain's, and the paired comparison;
        ``best_expanded``: the best expansion / multi-representation row on tune; query counts per part.
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
    # candidate order = tie-break order: the simplest setting wins a tie
    searchers = {"plain": DenseSearcher(encoder), **(references or {})}
    for name, expansions in expansion_sets.items():
        for text in weightings:
            weights = ExpansionWeights.parse(text)
            searchers[f"{name} {weights.label()}"] = ExpandedDenseSearcher(encoder, expansions, weights)
    searchers.update(multirep_searchers(encoder, multirep or [], expansion_sets))
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
    chosen = max(rows, key=lambda r: r["tune"]["ndcg_at_10"])  # max keeps the first of equals: plain
    expanded = [r for r in rows if r["setting"] != "plain" and r["setting"] not in (references or {})]
    best_expanded = max(expanded, key=lambda r: r["tune"]["ndcg_at_10"])["setting"] if expanded else None
    plain_report = next(r for r in rows if r["setting"] == "plain")["report"]["ndcg_at_10"]
    return {"settings": rows, "chosen": chosen["setting"], "best_expanded": best_expanded,
            "chosen_report": {"setting": chosen["setting"], "ndcg_at_10": chosen["report"]["ndcg_at_10"],
                              "plain_ndcg_at_10": plain_report, "vs_plain": chosen.get("report_vs_plain")},
            "queries": {"tune": len(tune), "report": len(report), "all": len(judged)},
            "tune_fraction": tune_fraction, "references": sorted(references or {}),
            # per-query report nDCG@10 of every row: any two rows compare afterwards (round 1 vs round 0)
            "report_per_query": {label: {q: round(v, 4) for q, v in sorted(scores.items())}
                                 for label, scores in report_ndcg.items()}}


def multirep_searchers(encoder, specs: list[str], expansion_sets: dict[str, dict]) -> dict:
    """label -> ``MultiRepSearcher``: a spec without synthetic queries once, one with them per expansion set."""
    from llmcse.retrieval.multirep import MultiRepSearcher, MultiRepSpec

    searchers = {}
    for text in specs:
        spec = MultiRepSpec.parse(text)
        if not spec.uses_expansions:
            searchers[f"multirep {spec.label()}"] = MultiRepSearcher(encoder, spec)
            continue
        if not expansion_sets:
            from llmcse.errors import LlmcseError

            raise LlmcseError(f"--multirep {text}: synthetic queries as units need --expansions")
        for name, expansions in expansion_sets.items():
            searchers[f"{name} multirep {spec.label()}"] = MultiRepSearcher(encoder, spec, expansions)
    return searchers


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
        mark = " (reference)" if r["setting"] in result.get("references", []) else ""
        if r["setting"] == result["chosen"]:
            mark = " **(chosen on tune)**"
        delta = r["report"]["ndcg_at_10"] - plain["report"]["ndcg_at_10"]
        lines.append(f"| {r['setting']}{mark} | {r['tune']['ndcg_at_10']:.2f} | {r['report']['ndcg_at_10']:.2f}"
                     f"{'' if r is plain else f' ({delta:+.2f})'} | {r['all']['ndcg_at_10']:.2f} | "
                     f"{r['report']['recall_at_100']:.2f} | {paired_cell(r.get('report_vs_plain'))} |")
    return "\n".join(lines) + "\n" + chosen_line(result)


def chosen_line(result: dict) -> str:
    """The one number to quote: the tune-chosen setting on the report queries, with its CI against plain."""
    c = result.get("chosen_report")
    if not c:
        return ""
    if c["setting"] == "plain":
        return (f"\nChosen on the tune queries: **plain** (no other setting beat it there); report nDCG@10 "
                f"{c['ndcg_at_10']:.2f}.\n")
    return (f"\nChosen on the tune queries: **{c['setting']}**; on the report queries nDCG@10 {c['ndcg_at_10']:.2f} vs "
            f"plain {c['plain_ndcg_at_10']:.2f} ({c['ndcg_at_10'] - c['plain_ndcg_at_10']:+.2f}; 95% CI, p, better / "
            f"worse: {paired_cell(c['vs_plain'])}).\n")


def run_sweep(model: str, task: str, expansion_files: dict[str, str], weightings: list[str], output_dir, *,
              data_dir: str | None = None, split: str = "test", tune_fraction: float = 0.5, device: str | None = None,
              dtype: str | None = None, batch_size: int = 64, bm25: bool = False, multirep: list[str] | None = None) -> dict:
    """``sweep`` on a BEIR task from the data dir; writes sweep.json and sweep.md to ``output_dir``.
    ``bm25``: add BM25 (bm25s, the baselines' settings) as a row (a candidate) on the same query parts.
    ``multirep``: multi-representation rows (``MultiRepSpec`` texts)."""
    from pathlib import Path

    from llmcse.data.loaders import load_beir, load_expansions
    from llmcse.data.paths import resolve_data_dir
    from llmcse.data.tasks import TaskCatalog
    from llmcse.embed.encode import CachedEncoder
    from llmcse.embed.models import load_embedder
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
                   references=references, multirep=multirep)
    result.update(model=model, task=task, split=split, dtype=dtype or "float32",
                  expansions={name: {"path": str(p), "md5": file_md5(p)} for name, p in expansion_files.items()})
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep.json", result)
    header = (f"{model} on {task} ({split}), nDCG@10 x100. Queries split by a hash of their id: the setting is "
              f"chosen on the tune part among every row (plain and BM25 included), the report part never used for "
              f"a choice.\n\n")
    atomic_write_text(out / "sweep.md", header + sweep_table(result))
    return result
