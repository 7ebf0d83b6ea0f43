"""Baseline table for issue #3: bundled models on sts, transfer, arguana (+ BM25), geometry.

Each row is one ``llmcse eval`` run whose ``results.json`` lands in
``benchmarks/results/baselines/<row>/``; this script only reads those files to build
``benchmarks/results/baselines.md`` and ``baselines.json``. A row whose results.json exists
is not rerun (delete it, or pass --force), so an interrupted run continues.

    python benchmarks/baselines.py            # run missing rows, then write the table
    python benchmarks/baselines.py --table    # only rebuild the table from existing files
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "baselines"

# row name -> llmcse eval arguments
ROWS = {
    "all-MiniLM-L6-v2": ["--model", "all-MiniLM-L6-v2", "--tasks", "sts,transfer,arguana,geometry"],
    # SmolLM2: mean and last-token pooling share one forward pass (results in .../mean and .../last);
    # one run per task group so each lands on its own (transfer and ArguAna take ~40 min each on 2 cores).
    # max-seq-length 256 as all-MiniLM-L6-v2 has, for ArguAna's long documents.
    **{f"SmolLM2-135M-Instruct {group}": ["--model", "SmolLM2-135M-Instruct", "--pooling", "mean,last", "--dtype", "bfloat16",
                                          "--max-seq-length", "256", "--tasks", tasks]
       for group, tasks in (("sts", "sts,geometry"), ("arguana", "arguana"), ("transfer", "transfer"))},
    "BM25 (bm25s)": ["--model", "bm25", "--tasks", "arguana"],
}

# table row -> [(run, sub-folder holding its results.json), ...]; tasks of several runs are merged
SMOL_RUNS = [f"SmolLM2-135M-Instruct {g}" for g in ("sts", "arguana", "transfer")]
TABLE_ROWS = {
    "all-MiniLM-L6-v2": [("all-MiniLM-L6-v2", "")],
    "SmolLM2-135M mean": [(run, "mean") for run in SMOL_RUNS],
    "SmolLM2-135M last-token": [(run, "last") for run in SMOL_RUNS],
    "BM25 (bm25s)": [("BM25 (bm25s)", "")],
}

# Published figures to compare with (see the notes in the table).
PUBLISHED = {
    ("all-MiniLM-L6-v2", "stsb"): ("82.03", "shared/models.md; sentence-transformers' EmbeddingSimilarityEvaluator (test)"),
    ("all-MiniLM-L6-v2", "arguana"): ("50.17", "MTEB results file for this model (0.50167)"),
    ("SmolLM2-135M mean", "stsb"): ("37.25", "shared/models.md (bf16, one run); an independent transformers script here: 37.21"),
    ("SmolLM2-135M last-token", "stsb"): ("31.61", "shared/models.md (bf16, one run); an independent transformers script here: 31.58"),
    ("BM25 (bm25s)", "arguana"): ("41.4 / 31.5", "BEIR paper BM25 (Elasticsearch, multi-field) 41.4 in the final version, 31.5 in v1"),
}

STS_COLUMNS = ["sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sick"]
TRANSFER_COLUMNS = ["mr", "cr", "subj", "mpqa", "sst2", "trec", "mrpc"]


def run_dir(row: str) -> Path:
    return RUNS / re.sub(r"[^A-Za-z0-9._-]+", "_", row).strip("_")


def run_missing(rows: list[str], force: bool) -> None:
    for row in rows:
        out = run_dir(row)
        if any(out.rglob("results.json")) and not force:
            print(f"[skip] {row}: {out / 'results.json'} exists")
            continue
        cmd = [sys.executable, "-m", "llmcse.cli", "-q", "eval", *ROWS[row], "--output-dir", str(out)]
        print(f"[run] {row}: {' '.join(cmd[2:])}", flush=True)
        t0 = time.time()
        subprocess.run(cmd, check=True)
        print(f"[done] {row} in {time.time() - t0:.0f} s", flush=True)


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def build_table() -> dict:
    summary, commands = {}, {}
    for row, parts in TABLE_ROWS.items():
        for run, sub in parts:
            path = run_dir(run) / sub / "results.json"
            if not path.is_file():
                continue
            r = json.loads(path.read_text())
            commands.setdefault(row, []).append("llmcse eval " + " ".join(ROWS[run]))
            if row not in summary:
                summary[row] = r
            else:  # merge another task group of the same model
                merged = summary[row]
                merged["tasks"].update(r["tasks"])
                merged["averages"].update(r["averages"])
                merged["evaluation_time"] += r["evaluation_time"]
    lines = ["# Baselines", "",
             "Bundled models on the standard sets, one `llmcse eval` run per row (command below each table).",
             "STS: Spearman x100 of cosine vs gold (STS12-16 in SentEval's 'all' setting), test splits. ",
             "Transfer: logistic-regression probe accuracy x100 (10-fold CV for MR/CR/SUBJ/MPQA). ",
             "ArguAna: nDCG@10 x100, BEIR convention (retrieved doc with the query's own id discarded).", "",
             "## STS", "", "| model | " + " | ".join(STS_COLUMNS) + " | **avg** |", "|---" * (len(STS_COLUMNS) + 2) + "|"]
    score = lambda r, t: r["tasks"].get(t, {}).get("main_score")  # noqa: E731
    for row, r in summary.items():
        if "sts" in r["averages"]:
            lines.append(f"| {row} | " + " | ".join(fmt(score(r, t)) for t in STS_COLUMNS) + f" | **{fmt(r['averages']['sts'])}** |")
    lines += ["", "## Transfer", "", "| model | " + " | ".join(TRANSFER_COLUMNS) + " | **avg** |",
              "|---" * (len(TRANSFER_COLUMNS) + 2) + "|"]
    for row, r in summary.items():
        if "transfer" in r["averages"]:
            lines.append(f"| {row} | " + " | ".join(fmt(score(r, t)) for t in TRANSFER_COLUMNS)
                         + f" | **{fmt(r['averages']['transfer'])}** |")
    lines += ["", "## Retrieval (ArguAna) and geometry (STS-B dev)", "",
              "| model | nDCG@10 | Recall@100 | MRR@10 | alignment | uniformity |", "|---|---|---|---|---|---|"]
    for row, r in summary.items():
        a, g = r["tasks"].get("arguana", {}), r["tasks"].get("geometry", {})
        lines.append(f"| {row} | {fmt(a.get('ndcg_at_10'))} | {fmt(a.get('recall_at_100'))} | {fmt(a.get('mrr_at_10'))} | "
                     f"{fmt(g.get('alignment'), 3)} | {fmt(g.get('uniformity'), 3)} |")
    lines += ["", "## Published figures", "", "| model | task | ours | published | source |", "|---|---|---|---|---|"]
    for (row, task), (published, source) in PUBLISHED.items():
        if row in summary:
            lines.append(f"| {row} | {task} | {fmt(score(summary[row], task))} | {published} | {source} |")
    lines += ["", "## Runs", "", "| row | command | device, dtype | eval time (s) | versions |", "|---|---|---|---|---|"]
    for row, r in summary.items():
        v = r["versions"]
        lines.append(f"| {row} | {'<br>'.join(f'`{c}`' for c in commands[row])} | {r['device']}, {r['dtype'] or '-'} | "
                     f"{r['evaluation_time']:.0f} | "
                     f"torch {v['torch']}, transformers {v['transformers']}, sentence-transformers {v['sentence-transformers']} |")
    notes = RESULTS / "baselines_notes.md"
    if notes.is_file():
        lines += ["", notes.read_text().strip()]
    (RESULTS / "baselines.md").write_text("\n".join(lines) + "\n")
    compact = {row: {"tasks": {t: v["main_score"] for t, v in r["tasks"].items()}, "averages": r["averages"],
                     "arguana": {k: r["tasks"]["arguana"].get(k) for k in ("ndcg_at_10", "recall_at_100", "mrr_at_10")}
                     if "arguana" in r["tasks"] else None,
                     "commands": commands[row], "device": r["device"], "dtype": r["dtype"],
                     "config_hash": r["config_hash"], "evaluation_time": r["evaluation_time"]}
               for row, r in summary.items()}
    (RESULTS / "baselines.json").write_text(json.dumps(compact, indent=2) + "\n")
    return compact


def update_readme() -> None:
    """The README's results table (and docs/) are rendered from baselines.json by ``llmcse.docs``."""
    from llmcse.docs import write_docs

    write_docs()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="*", default=list(ROWS), help=f"rows to run (default all): {list(ROWS)}")
    parser.add_argument("--force", action="store_true", help="rerun rows that already have results")
    parser.add_argument("--table", action="store_true", help="only rebuild the table")
    args = parser.parse_args()
    if not args.table:
        run_missing(args.rows, args.force)
    build_table()
    update_readme()
    print(f"wrote {RESULTS / 'baselines.md'}, {RESULTS / 'baselines.json'} and the README table")


if __name__ == "__main__":
    main()
