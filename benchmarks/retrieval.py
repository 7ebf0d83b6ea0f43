"""Retrieval table (issue #7): ArguAna with LLM-made synthetic queries and keywords per document.

BM25 and all-MiniLM-L6-v2 plain vs the same retriever with every document indexed as a weighted
average of its own embedding and those of its synthetic queries / keywords (arXiv 2409.16497),
raw and after round-trip filtering. The settings are those of ``recipes/retrieval-expansion.toml``
(read from it, so ``llmcse run recipes/retrieval-expansion.toml`` computes the same thing); the
test queries are split once by id hash, weights chosen on the tune half, reported on the other.

Every step is a plain ``llmcse`` command; expansions in ``runs/retrieval/`` (git-ignored; the
finished file is committed gzipped under benchmarks/data/), results in
``benchmarks/results/retrieval/`` (committed). Expansion is resumable: rerun to continue.

    python benchmarks/retrieval.py --workers 2     # expand (hours on CPU), filter, sweep, table
    python benchmarks/retrieval.py --table         # rebuild the table from committed results
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
OUT = RESULTS / "retrieval"
RUNS = REPO / "runs" / "retrieval"
EXPANSIONS = RUNS / "arguana.exp.jsonl"
FILTERED = RUNS / "arguana.exp.rt.jsonl"
CHECKED = RUNS / "arguana.exp.kw.jsonl"  # keyword check only (meta phrases dropped), no round trip
COMMITTED = REPO / "benchmarks" / "data" / "arguana_expansions_smollm2.jsonl.gz"
RECIPE = REPO / "recipes" / "retrieval-expansion.toml"

# the rows: which sweep setting each one is
NAMED_ROWS = [("+ synthetic queries", "raw 1,1,0"), ("+ keywords", "raw 1,0,1"), ("+ both", "raw 1,1,1"),
              ("+ keywords, meta phrases dropped", "checked 1,0,1"), ("+ both, meta phrases dropped", "checked 1,1,1"),
              ("+ both, meta phrases dropped, round-trip filtered", "filtered 1,1,1")]


def llmcse(*args: str) -> None:
    print("$ llmcse " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "llmcse.cli", "-q", *args], check=True)


def recipe() -> dict:
    return tomllib.loads(RECIPE.read_text())


def corpus_path() -> Path:
    from llmcse.data.paths import resolve_data_dir

    return resolve_data_dir() / "beir" / recipe()["sweep"]["task"] / "corpus.jsonl"


def expand(workers: int, n: int | None = None) -> None:
    if not EXPANSIONS.is_file() and COMMITTED.is_file() and n is None:  # a finished run is committed: reuse it
        EXPANSIONS.parent.mkdir(parents=True, exist_ok=True)
        EXPANSIONS.write_bytes(gzip.decompress(COMMITTED.read_bytes()))
    settings = recipe()["expand"]
    llmcse("expand", "--corpus", str(corpus_path()), "--out", str(EXPANSIONS), "--workers", str(workers),
           *(["--n", str(n)] if n else []), *[a for key, value in settings.items() for a in (f"--{key.replace('_', '-')}", str(value))])
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXPANSIONS.with_name(EXPANSIONS.stem + ".summary.json"), OUT / "expansions.summary.json")
    shutil.copy(EXPANSIONS.with_name(EXPANSIONS.name + ".runs.jsonl"), OUT / "expansions.runs.jsonl")
    if not COMMITTED.is_file() and n is None:
        COMMITTED.write_bytes(gzip.compress(EXPANSIONS.read_bytes(), mtime=0))


def filter_and_sweep() -> None:
    fe, sw = recipe().get("filter_expansions", {}), recipe()["sweep"]
    llmcse("filter-expansions", "--corpus", str(corpus_path()), "--in", str(EXPANSIONS), "--out", str(FILTERED),
           "--top-k", str(fe.get("top_k", 20)), *(["--dtype", fe["dtype"]] if "dtype" in fe else []))
    shutil.copy(FILTERED.with_name(FILTERED.stem + ".report.json"), OUT / "filter.report.json")
    # the committed expansions predate expand's keyword check: the same check, applied afterwards
    llmcse("filter-expansions", "--corpus", str(corpus_path()), "--in", str(EXPANSIONS), "--out", str(CHECKED), "--top-k", "0")
    llmcse("sweep-expansions", "--task", sw["task"], "--model", sw.get("model", "all-MiniLM-L6-v2"), "--bm25",
           "--expansions", f"raw={EXPANSIONS}", "--expansions", f"checked={CHECKED}", "--expansions", f"filtered={FILTERED}",
           *(["--dtype", sw["dtype"]] if "dtype" in sw else []),
           *[a for w in sw["weights"] for a in ("--weights", w)], "--output-dir", str(OUT / "sweep"))


def keyword_check_lines(kw: dict | None) -> list[str]:
    if not kw:
        return []
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(kw["rejected_by_reason"].items(), key=lambda t: -t[1]))
    return [f"Keyword check (`filter-expansions`; `checked` rows, and before the round trip in `filtered` rows): kept "
            f"{kw['kept']:,} of {kw['keywords']:,} keywords, rejected {reasons}; "
            f"{kw['documents_left_without_keywords']:,} documents lost all their keywords.", ""]


def build_table() -> None:
    from llmcse.retrieval.sweep import paired_cell

    sweep = json.loads((OUT / "sweep" / "sweep.json").read_text())
    rows = {r["setting"]: r for r in sweep["settings"]}
    plain = rows["plain"]
    q = sweep["queries"]

    def line(label: str, r: dict) -> str:
        d = r["report"]["ndcg_at_10"] - plain["report"]["ndcg_at_10"]
        delta = "" if r is plain else f" ({d:+.2f})"
        return (f"| {label} | {r['tune']['ndcg_at_10']:.2f} | **{r['report']['ndcg_at_10']:.2f}**{delta} | "
                f"{paired_cell(r.get('report_vs_plain'))} | {r['all']['ndcg_at_10']:.2f} | {r['report']['recall_at_100']:.2f} |")

    lines = ["# Document expansion with synthetic queries and keywords (issue #7)", "",
             f"ArguAna test ({q['all']} judged queries), nDCG@10 x100, retriever {sweep['model']} ({sweep.get('dtype', 'float32')}). The queries are split "
             f"once by a hash of their id: {q['tune']} to choose settings on (tune), {q['report']} never used for a "
             "choice (report). The report column is the honest one; all = both halves, for comparison with published "
             "full-split numbers. Expansions: SmolLM2-135M-Instruct (bundled), settings of "
             "`recipes/retrieval-expansion.toml`. Weights `w_doc,w_q,w_k`: document vector = normalize(w_doc e(doc) "
             "+ w_q mean e(queries) + w_k mean e(keywords)); `mean` = plain mean of all texts.", "",
             "The 95% CI (bootstrap over report queries), the paired t-test p and the counts of report queries that got "
             "better / worse are for the per-query nDCG@10 difference with plain: a difference whose CI spans 0 is within "
             "query-sampling noise.", "",
             "| setting | tune | report (vs plain) | report vs plain: 95% CI, p, better / worse | all | Recall@100 report |",
             "|---|---|---|---|---|---|"]
    if "bm25" in rows:
        lines.append(line("BM25 (bm25s)", rows["bm25"]))
    lines.append(line(f"{sweep['model']} plain", plain))
    checked_first = "keyword_check" in json.loads((OUT / "filter.report.json").read_text())  # runs before the check: no
    for label, setting in NAMED_ROWS:
        if not checked_first:
            label = label.replace(" meta phrases dropped,", "")
        if setting in rows:
            lines.append(line(f"{label} (`{setting}`)", rows[setting]))
    chosen = sweep["chosen"]
    lines.append(line(f"chosen on tune: `{chosen}`", rows[chosen]))
    lines += ["", "## Every setting of the sweep", "", (OUT / "sweep" / "sweep.md").read_text().split("\n\n", 1)[1].strip(), ""]
    summary = json.loads((OUT / "expansions.summary.json").read_text())
    report = json.loads((OUT / "filter.report.json").read_text())
    cost = summary["cost"]
    lines += ["## The expansions", "",
              f"{summary['documents']:,} documents; {summary['with_all_queries']:,} with all "
              f"{summary['config']['queries']} queries, {summary['without_queries']} with none; mean "
              f"{summary['mean_queries']} queries and {summary['mean_keywords']} keywords per document; "
              f"{summary['truncated_documents']:,} documents cut to {summary['config']['max_doc_tokens']} tokens. "
              "Rejected by reason: " + ", ".join(f"{k} {v:,}" for k, v in
                                                sorted(summary["rejections_by_reason"].items(), key=lambda t: -t[1])) + ".",
              "", *keyword_check_lines(report.get("keyword_check")),
              f"Round-trip filter ({report.get('model', 'base retriever')}, top {report.get('top_k')}): kept "
              f"{report['kept']:,} of {report['queries']:,} queries ({report['kept_fraction']}); "
              f"{report['documents_left_without_queries']:,} documents lost all their queries.", "",
              "## Cost", "",
              f"{cost['documents']:,} documents in {cost['process_seconds']:,.0f} process-seconds over {cost['runs']} "
              f"run(s) ({', '.join(map(str, cost['threads_per_process']))} thread(s) per process, this repo's CPU "
              f"machine): **{cost['docs_per_process_s']} documents/s and {cost['completion_tokens_per_process_s']} "
              f"generated tokens/s per process** ({cost['completion_tokens_per_doc']} generated tokens per document; "
              f"{cost['prefill_tokens_per_process_s']} prompt tokens/s prefilled). Every run: "
              "`expansions.runs.jsonl`.", ""]
    notes = RESULTS / "retrieval_notes.md"
    if notes.is_file():
        lines += [notes.read_text().strip(), ""]
    lines += ["## Commands", "", "```bash", "python benchmarks/retrieval.py --workers 2", "```",
              "The script prints each `llmcse expand / filter-expansions / sweep-expansions` command it runs."]
    (RESULTS / "retrieval.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "retrieval.json").write_text(json.dumps({"sweep": sweep, "expansions": {k: v for k, v in summary.items()
                                                                                      if k != "this_run"},
                                                        "filter": report}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="expansion processes (one thread each on CPU)")
    parser.add_argument("--expand-only", action="store_true", help="stop after expanding (resumable)")
    parser.add_argument("--table", action="store_true", help="only rebuild the table")
    parser.add_argument("--smoke", type=int, metavar="N", help="first N documents only, everything under runs/retrieval-smoke/")
    args = parser.parse_args()
    if args.smoke:  # a quick end-to-end check of this script; nothing committed is touched
        global RUNS, OUT, EXPANSIONS, FILTERED, CHECKED, RESULTS
        RUNS = RESULTS = REPO / "runs" / "retrieval-smoke"
        OUT, EXPANSIONS, FILTERED = RUNS / "results", RUNS / "arguana.exp.jsonl", RUNS / "arguana.exp.rt.jsonl"
        CHECKED = RUNS / "arguana.exp.kw.jsonl"
    if not args.table:
        expand(args.workers, args.smoke)
        if args.expand_only:
            return
        filter_and_sweep()
    build_table()
    print((RESULTS / "retrieval.md").read_text())


if __name__ == "__main__":
    main()
