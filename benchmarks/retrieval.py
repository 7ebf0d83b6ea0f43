"""Retrieval tables (issues #7, #22): ArguAna and NFCorpus with LLM-made synthetic queries and keywords.

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

``--task nfcorpus`` (issue #22): the same on NFCorpus, settings of ``recipes/retrieval-self-instruct.toml``,
expansions in ``runs/retrieval/nfcorpus.*``, results in ``benchmarks/results/retrieval/nfcorpus/``
(table: ``retrieval.md`` there). ``--round1`` adds self-instruct (arXiv 2409.16497): the round-0
generator is LoRA-tuned on its own round-trip-kept queries / keywords (``llmcse self-instruct-pairs``,
``llmcse tune-generator``, settings of that recipe's ``[self_instruct]`` / ``[tune_generator]``), expands
the corpus again (round 1) and is filtered again; the sweep then has both rounds, the recipe's
multi-representation rows, and round 1 vs round 0 on the same report queries (paired CI).
``--encoder-prompteol DIR``: the tuned generator as a PromptEOL embedder (the model that writes also
embeds), swept beside all-MiniLM-L6-v2.

    python benchmarks/retrieval.py --task nfcorpus --round1 --workers 2
    python benchmarks/retrieval.py --task nfcorpus --round1 --encoder-prompteol runs/retrieval/nfcorpus.gen-r1.prompteol
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
SELF_INSTRUCT = REPO / "recipes" / "retrieval-self-instruct.toml"  # round-1 settings, for every task
TASK, TITLE = "arguana", "ArguAna"
DATA_DIR: Path | None = None  # None: the usual data dir; --smoke: a slice of the task under runs/retrieval-smoke-<task>/
SMOKE_DOCS = 300  # --smoke N: the corpus is cut to its first max(N, 300) documents, so filters and sweeps take minutes
TABLE, TABLE_JSON = RESULTS / "retrieval.md", RESULTS / "retrieval.json"
# round 1 (--round1): pairs, the tuned generator, its expansions
PAIRS, GENERATOR = RUNS / "arguana.pairs.jsonl", RUNS / "arguana.gen-r1"
EXPANSIONS_R1, FILTERED_R1 = RUNS / "arguana.exp.r1.jsonl", RUNS / "arguana.exp.r1.rt.jsonl"


def set_task(task: str, smoke: int | None) -> None:
    """Every path of one task; --smoke N puts them all under runs/retrieval-smoke-<task>/."""
    global TASK, TITLE, RUNS, OUT, RESULTS, EXPANSIONS, FILTERED, CHECKED, COMMITTED, RECIPE, TABLE, TABLE_JSON
    global PAIRS, GENERATOR, EXPANSIONS_R1, FILTERED_R1, DATA_DIR
    TASK, TITLE = task, {"arguana": "ArguAna", "nfcorpus": "NFCorpus"}[task]
    if task == "nfcorpus":
        RECIPE, COMMITTED = SELF_INSTRUCT, REPO / "benchmarks" / "data" / "nfcorpus_expansions_smollm2.jsonl.gz"
        OUT = RESULTS / "retrieval" / "nfcorpus"
        TABLE, TABLE_JSON = OUT / "retrieval.md", OUT / "retrieval.json"
    if smoke:  # a quick end-to-end check of this script; nothing committed is touched
        RUNS = RESULTS = REPO / "runs" / f"retrieval-smoke-{task}"
        OUT = RUNS / "results"
        TABLE, TABLE_JSON = RESULTS / "retrieval.md", RESULTS / "retrieval.json"
        DATA_DIR = smoke_data(task, RUNS / "data", max(smoke, SMOKE_DOCS))
    EXPANSIONS, FILTERED, CHECKED = (RUNS / f"{task}.exp.jsonl", RUNS / f"{task}.exp.rt.jsonl",
                                     RUNS / f"{task}.exp.kw.jsonl")
    PAIRS, GENERATOR = RUNS / f"{task}.pairs.jsonl", RUNS / f"{task}.gen-r1"
    EXPANSIONS_R1, FILTERED_R1 = RUNS / f"{task}.exp.r1.jsonl", RUNS / f"{task}.exp.r1.rt.jsonl"

# the issue's rows: which sweep setting each one is
NAMED_ROWS = [("+ synthetic queries", "raw 1,1,0"), ("+ keywords", "raw 1,0,1"), ("+ both", "raw 1,1,1"),
              ("+ keywords, meta phrases dropped", "checked 1,0,1"), ("+ both, meta phrases dropped", "checked 1,1,1"),
              ("+ both, meta phrases dropped, round-trip filtered", "filtered 1,1,1"),
              # round 1 (--round1): the self-instruct tuned generator's expansions
              ("+ synthetic queries, round 1", "raw-r1 1,1,0"), ("+ both, round 1", "raw-r1 1,1,1"),
              ("+ both, round 1, round-trip filtered", "filtered-r1 1,1,1"),
              # multi-representation (the recipe's [sweep] multirep): max over sentence / query vectors
              ("multi-representation: sentences", "multirep sent"),
              ("multi-representation: sentences + filtered queries", "filtered multirep sent+queries"),
              ("multi-representation: sentences + filtered queries, round 1", "filtered-r1 multirep sent+queries")]


def llmcse(*args: str) -> None:
    print("$ llmcse " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "llmcse.cli", "-q", *args], check=True)


def recipe(path: Path | None = None) -> dict:
    return tomllib.loads((path or RECIPE).read_text())


def corpus_path() -> Path:
    from llmcse.data.paths import resolve_data_dir

    return resolve_data_dir(DATA_DIR) / "beir" / recipe()["sweep"]["task"] / "corpus.jsonl"


def smoke_data(task: str, data_dir: Path, n_docs: int) -> Path:
    """A BEIR folder with the task's first ``n_docs`` documents and the test queries judged on them."""
    from llmcse.data.paths import resolve_data_dir

    source, target = resolve_data_dir() / "beir" / task, data_dir / "beir" / task
    if (target / "corpus.jsonl").is_file():
        return data_dir
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    with open(source / "corpus.jsonl", encoding="utf-8") as f:
        docs = [line for line, _ in zip(f, range(n_docs))]
    ids = {json.loads(line)["_id"] for line in docs}
    header, *judgements = (source / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    kept = [line for line in judgements if line.split("\t")[1] in ids]
    queries = {line.split("\t")[0] for line in kept}
    with open(source / "queries.jsonl", encoding="utf-8") as f:
        query_lines = [line for line in f if json.loads(line)["_id"] in queries]
    (target / "queries.jsonl").write_text("".join(query_lines), encoding="utf-8")
    (target / "qrels" / "test.tsv").write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")
    (target / "corpus.jsonl").write_text("".join(docs), encoding="utf-8")  # last: marks the slice complete
    return data_dir


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


def round_trip(source: Path, out: Path) -> None:
    fe = recipe().get("filter_expansions", {})
    llmcse("filter-expansions", "--corpus", str(corpus_path()), "--in", str(source), "--out", str(out),
           "--top-k", str(fe.get("top_k", 20)), *(["--dtype", fe["dtype"]] if "dtype" in fe else []))


def expansion_sets(round1: bool) -> list[str]:
    sets = [f"raw={EXPANSIONS}"]
    if TASK == "arguana":  # the committed expansions predate expand's keyword check: applied afterwards
        sets.append(f"checked={CHECKED}")
    sets.append(f"filtered={FILTERED}")
    if round1:
        sets += [f"raw-r1={EXPANSIONS_R1}", f"filtered-r1={FILTERED_R1}"]
    return sets


def sweep_args(model: str, round1: bool, references: bool = True) -> list[str]:
    """sweep-expansions arguments: the recipe's weights and dtype; BM25 and multirep rows as references."""
    sw = recipe()["sweep"]
    multirep = sw.get("multirep", []) if references else []
    return ["--task", sw["task"], "--model", model, *(["--bm25"] if references else []),
            *[a for s in expansion_sets(round1) for a in ("--expansions", s)],
            *(["--dtype", sw["dtype"]] if "dtype" in sw else []),
            *[a for w in sw["weights"] for a in ("--weights", w)], *[a for m in multirep for a in ("--multirep", m)],
            *(["--data-dir", str(DATA_DIR)] if DATA_DIR else [])]


def filter_and_sweep(round1: bool = False, workers: int = 1, smoke: int | None = None,
                     tune_max_steps: int | None = None) -> None:
    sw = recipe()["sweep"]
    round_trip(EXPANSIONS, FILTERED)
    shutil.copy(FILTERED.with_name(FILTERED.stem + ".report.json"), OUT / "filter.report.json")
    if TASK == "arguana":
        llmcse("filter-expansions", "--corpus", str(corpus_path()), "--in", str(EXPANSIONS), "--out", str(CHECKED),
               "--top-k", "0")
    if round1:  # round 1 learns from what round 0 kept
        self_instruct(workers, smoke, smoke=bool(smoke), max_steps=tune_max_steps)
    llmcse("sweep-expansions", *sweep_args(sw.get("model", "all-MiniLM-L6-v2"), round1), "--output-dir", str(OUT / "sweep"))


def self_instruct(workers: int, n: int | None = None, smoke: bool = False, max_steps: int | None = None) -> None:
    """Round 1: training pairs from round 0's kept texts -> tune the generator -> expand again -> filter.
    Every step resumes: tune-generator from its checkpoints, expand from its output."""
    si, tg = recipe(SELF_INSTRUCT).get("self_instruct", {}), dict(recipe(SELF_INSTRUCT).get("tune_generator", {}))
    if (GENERATOR / "tune_generator.json").is_file() and not smoke:
        # tuned elsewhere (benchmarks/gpu_batch.sh, rebuilt with benchmarks/lowrank.py): its report names the
        # pairs it learned from; rebuilding them here from today's round-0 filter would not match it
        print(f"# {GENERATOR} is tuned (tune_generator.json): pairs and tuning skipped", flush=True)
        return _expand_round1(si, workers, n)
    llmcse("self-instruct-pairs", "--corpus", str(corpus_path()), "--expansions", str(EXPANSIONS), "--kept", str(FILTERED),
           "--out", str(PAIRS), *[f"--no-{key}" for key in ("queries", "keywords", "demos") if si.get(key) is False])
    if max_steps:  # ~70 s a step of 8 pairs on one CPU thread: a full NFCorpus epoch (~1,600 steps) is ~30 h
        tg.update(max_steps=max_steps)
    if smoke:  # two steps show the chain works; the real run trains the recipe's epochs
        tg.update(max_steps=2, logging_steps=1)
    base = tg.pop("base", None) or _generator_model(recipe()["expand"].get("llm", "hf:SmolLM2-135M-Instruct"))
    llmcse("tune-generator", "--data", str(PAIRS), "--out", str(GENERATOR), "--base", base,
           *[a for key, value in tg.items() for a in (f"--{key.replace('_', '-')}", str(value))])
    _expand_round1(si, workers, n)


def _expand_round1(si: dict, workers: int, n: int | None) -> None:
    """Round 1: expand with the tuned generator, filter; copy its reports next to the table."""
    settings = {**recipe()["expand"], **({"prompts": si["prompts"]} if si.get("prompts") else {})}
    settings.pop("llm", None)
    llmcse("expand", "--corpus", str(corpus_path()), "--out", str(EXPANSIONS_R1), "--llm", f"hf:{GENERATOR}",
           "--workers", str(workers), *(["--n", str(n)] if n else []),
           *[a for key, value in settings.items() for a in (f"--{key.replace('_', '-')}", str(value))])
    round_trip(EXPANSIONS_R1, FILTERED_R1)
    OUT.mkdir(parents=True, exist_ok=True)
    for source, name in ((EXPANSIONS_R1.with_name(EXPANSIONS_R1.stem + ".summary.json"), "expansions.r1.summary.json"),
                         (EXPANSIONS_R1.with_name(EXPANSIONS_R1.name + ".runs.jsonl"), "expansions.r1.runs.jsonl"),
                         (FILTERED_R1.with_name(FILTERED_R1.stem + ".report.json"), "filter.r1.report.json"),
                         (PAIRS.with_name(PAIRS.stem + ".report.json"), "pairs.report.json"),
                         (GENERATOR / "tune_generator.json", "tune_generator.json")):
        shutil.copy(source, OUT / name)


def _generator_model(llm: str) -> str:
    if not llm.startswith("hf:"):
        raise SystemExit(f"[expand] llm = {llm!r}: round 1 tunes a local hf: model; set [tune_generator] base")
    return llm[3:]


def prompteol_sweep(folder: Path, round1: bool) -> None:
    """The tuned generator (or the base, without --round1) as a PromptEOL embedder, swept like all-MiniLM-L6-v2
    (no BM25 / multirep rows: those are in the main sweep)."""
    if not (folder / "modules.json").is_file():
        base = str(GENERATOR) if round1 else _generator_model(recipe()["expand"].get("llm", "hf:SmolLM2-135M-Instruct"))
        llmcse("prompteol", "--base", base, "--out", str(folder))
    llmcse("sweep-expansions", *sweep_args(str(folder), round1, references=False), "--output-dir",
           str(OUT / "sweep-prompteol"))


def keyword_check_lines(kw: dict | None) -> list[str]:
    if not kw:
        return []
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(kw["rejected_by_reason"].items(), key=lambda t: -t[1])) or "none"
    where = "`checked` rows, and before the round trip in `filtered` rows" if TASK == "arguana" \
        else "before the round trip in `filtered` rows; expand applies it while generating too"
    return [f"Keyword check (`filter-expansions`; {where}): kept "
            f"{kw['kept']:,} of {kw['keywords']:,} keywords, rejected {reasons}; "
            f"{kw['documents_left_without_keywords']:,} documents lost all their keywords.", ""]


def build_table() -> None:
    from llmcse.eval.sweep import paired_cell

    sweep = json.loads((OUT / "sweep" / "sweep.json").read_text())
    rows = {r["setting"]: r for r in sweep["settings"]}
    plain = rows["plain"]
    q = sweep["queries"]

    def line(label: str, r: dict) -> str:
        d = r["report"]["ndcg_at_10"] - plain["report"]["ndcg_at_10"]
        delta = "" if r is plain else f" ({d:+.2f})"
        return (f"| {label} | {r['tune']['ndcg_at_10']:.2f} | **{r['report']['ndcg_at_10']:.2f}**{delta} | "
                f"{paired_cell(r.get('report_vs_plain'))} | {r['all']['ndcg_at_10']:.2f} | {r['report']['recall_at_100']:.2f} |")

    issue = "issue #7" if TASK == "arguana" else "issue #22"
    lines = [f"# Document expansion with synthetic queries and keywords ({issue})", "",
             f"{TITLE} test ({q['all']} judged queries), nDCG@10 x100, retriever {sweep['model']} ({sweep.get('dtype', 'float32')}). The queries are split "
             f"once by a hash of their id: {q['tune']} to choose settings on (tune), {q['report']} never used for a "
             "choice (report). The report column is the honest one; all = both halves, for comparison with published "
             "full-split numbers. Expansions: SmolLM2-135M-Instruct (bundled), settings of "
             f"`{RECIPE.relative_to(REPO)}`. Weights `w_doc,w_q,w_k`: document vector = normalize(w_doc e(doc) "
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
    lines += rounds_lines(sweep) + prompteol_lines()
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
              f"run(s) ({', '.join(map(str, cost['threads_per_process']))} thread(s) per process, {where(cost)}): **{cost['docs_per_process_s']} documents/s and {cost['completion_tokens_per_process_s']} "
              f"generated tokens/s per process** ({cost['completion_tokens_per_doc']} generated tokens per document; "
              f"{cost['prefill_tokens_per_process_s']} prompt tokens/s prefilled). Every run: "
              "`expansions.runs.jsonl`.", ""]
    lines += round1_lines()
    notes = RESULTS / "retrieval_notes.md" if TASK == "arguana" else OUT / "notes.md"
    if notes.is_file():
        lines += [notes.read_text().strip(), ""]
    command = "python benchmarks/retrieval.py --workers 2" if TASK == "arguana" and not (OUT / "tune_generator.json").is_file() \
        else f"python benchmarks/retrieval.py --task {TASK} --round1 --workers 2"
    lines += ["## Commands", "", "```bash", command, "```",
              "The script prints each `llmcse expand / filter-expansions / sweep-expansions` command it runs."]
    TABLE.write_text("\n".join(lines) + "\n")
    extra = {name: json.loads((OUT / f"{name}.json").read_text()) for name in ("tune_generator",)
             if (OUT / f"{name}.json").is_file()}
    for name, file in (("expansions_r1", "expansions.r1.summary.json"), ("filter_r1", "filter.r1.report.json"),
                       ("pairs", "pairs.report.json"), ("rounds", "sweep/rounds.json")):
        if (OUT / file).is_file():
            extra[name] = json.loads((OUT / file).read_text())
    for name in ("sweep-prompteol", "sweep-prompteol-base"):
        if (OUT / name / "sweep.json").is_file():
            extra[name.replace("-", "_")] = json.loads((OUT / name / "sweep.json").read_text())
    TABLE_JSON.write_text(json.dumps({"sweep": sweep, "expansions": {k: v for k, v in summary.items()
                                                                     if k != "this_run"},
                                      "filter": report, **extra}, indent=2) + "\n")


def rounds_lines(sweep: dict) -> list[str]:
    """Round 1 vs round 0 on the same report queries (paired CI), when the sweep has both rounds."""
    from llmcse.eval.rounds import compare_rounds, rounds_table

    pairs = {r1: r0 for r1, r0 in (("raw-r1", "raw"), ("filtered-r1", "filtered")) if r1 in sweep.get("expansions", {})}
    comparisons = compare_rounds(sweep, pairs) if pairs else []
    if not comparisons:
        return []
    (OUT / "sweep" / "rounds.json").write_text(json.dumps(comparisons, indent=2) + "\n")
    return ["## Round 1 (self-instruct) vs round 0", "",
            "The same setting with round-0 and round-1 expansions, on the same report queries; the 95% CI, p and "
            "better / worse are for the per-query nDCG@10 difference round 1 - round 0.", "",
            rounds_table(comparisons).strip(), ""]


def prompteol_lines() -> list[str]:
    table, base = OUT / "sweep-prompteol" / "sweep.md", OUT / "sweep-prompteol-base" / "sweep.md"
    if not table.is_file():
        return []
    lines = ["## The generator as the encoder (PromptEOL)", "",
             "The same sweep with the (tuned) generator as a PromptEOL sentence embedder instead of all-MiniLM-L6-v2 "
             "(`llmcse prompteol --base <generator>`): the model that writes the queries also embeds.", "",
             table.read_text().strip(), ""]
    if base.is_file():  # the untuned generator as the encoder, for comparison (benchmarks/gpu_batch.sh makes both)
        lines += ["The base generator (not tuned) as the PromptEOL encoder, same sets:", "", base.read_text().strip(), ""]
    return lines


def where(cost: dict) -> str:
    """Which machine the runs were on: a run with more threads than this repo's 2-core CPU was on a GPU machine
    (benchmarks/gpu_batch.sh); mixed runs are only summed here, the notes split them."""
    threads = cost.get("threads_per_process") or [1]
    if max(threads) <= 2:
        return "this repo's CPU machine"
    if min(threads) > 2:
        return "a GPU machine, benchmarks/gpu_batch.sh"
    return "CPU and GPU runs together; per-machine figures in the notes"


def cost_line(label: str, cost: dict) -> str:
    return (f"{label}: {cost['documents']:,} documents in {cost['process_seconds']:,.0f} process-seconds ({where(cost)}), "
            f"{cost['docs_per_process_s']} documents/s and {cost['completion_tokens_per_process_s']} generated tokens/s "
            f"per process ({cost['completion_tokens_per_doc']} generated tokens per document).")


def round1_lines() -> list[str]:
    """Self-instruct: the pairs, the tuning, round 1's expansion, filter and cost."""
    files = {name: OUT / file for name, file in (("pairs", "pairs.report.json"), ("tune", "tune_generator.json"),
                                                 ("summary", "expansions.r1.summary.json"),
                                                 ("filter", "filter.r1.report.json"))}
    if not all(f.is_file() for f in files.values()):
        return []
    pairs, tune, summary, report = (json.loads(files[k].read_text()) for k in ("pairs", "tune", "summary", "filter"))
    return ["## Round 1: self-instruct", "",
            f"Training pairs (`llmcse self-instruct-pairs`, round 0's round-trip-kept texts with the prompts that "
            f"produced them): {pairs['pairs']:,} ({pairs['query_pairs']:,} queries, {pairs['keyword_pairs']:,} keyword "
            f"lists) from {pairs['documents']:,} documents, template {pairs['template']}.", "",
            f"`llmcse tune-generator`: {tune['base']}, LoRA r={tune['config']['lora_r']}, {tune['examples']:,} pairs "
            f"({tune['dropped_too_long']:,} over {tune['config']['max_length']} tokens left out), {tune['steps']:,} steps, "
            f"loss {tune['first_loss']:.3f} -> {tune['final_loss']:.3f}, {tune['seconds_this_run']:,.0f} s in the last run "
            f"({tune['tokens_seen']:,} tokens seen).", "",
            f"Round 1 expansion: {summary['documents']:,} documents; mean {summary['mean_queries']} queries and "
            f"{summary['mean_keywords']} keywords per document, {summary['without_queries']} with none. Round-trip "
            f"filter: kept {report['kept']:,} of {report['queries']:,} queries ({report['kept_fraction']}).", "",
            cost_line("Round 0 cost", json.loads((OUT / "expansions.summary.json").read_text())["cost"]), "",
            cost_line("Round 1 cost", summary["cost"]), ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="expansion processes (one thread each on CPU)")
    parser.add_argument("--expand-only", action="store_true", help="stop after expanding (resumable)")
    parser.add_argument("--table", action="store_true", help="only rebuild the table")
    parser.add_argument("--smoke", type=int, metavar="N",
                        help="first N documents only, everything under runs/retrieval-smoke-<task>/")
    parser.add_argument("--task", choices=["arguana", "nfcorpus"], default="arguana")
    parser.add_argument("--round1", action="store_true",
                        help="self-instruct: tune the generator on round 0's kept texts, expand and filter again (round 1)")
    parser.add_argument("--tune-max-steps", type=int, metavar="N",
                        help="cap tune-generator at N steps of 8 pairs (default: the recipe's one epoch)")
    parser.add_argument("--encoder-prompteol", metavar="DIR", type=Path,
                        help="also sweep with the (tuned) generator as a PromptEOL embedder, saved to / read from DIR")
    args = parser.parse_args()
    set_task(args.task, args.smoke)
    if not args.table:
        expand(args.workers, args.smoke)
        if args.expand_only:
            return
        filter_and_sweep(args.round1, args.workers, args.smoke, args.tune_max_steps)
        if args.encoder_prompteol:
            prompteol_sweep(args.encoder_prompteol, args.round1)
    build_table()
    print(TABLE.read_text())


if __name__ == "__main__":
    main()
