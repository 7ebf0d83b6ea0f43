"""What ``--executor ray`` costs on one CPU machine (issue 25): expansion and embedding per document,
single process vs Ray with 1 and 2 actors, in one run on the same inputs.

* expansion: the first ``--expand-docs`` NFCorpus documents, ``llmcse expand`` defaults (SmolLM2-135M-Instruct,
  3 queries + 5 keywords, 256-token documents) except chunks of half the documents, so that two
  shards exist (shard size = chunk size: the chunks, and so the sampled records, are the
  single process's);
* embedding: the first ``--embed-docs`` NFCorpus documents (title + text) with all-MiniLM-L6-v2,
  ``llmcse embed`` defaults (fp32, batch 64), in shards of 256 texts.

Each mode is the library call a command makes (``run_expand`` / ``embed_texts``) into a fresh
output, timed end to end: a Ray job's time includes starting its actors and loading one model per
actor; starting Ray itself (once per process) is timed apart. ``work`` is the sum of the shards'
own seconds (the actors' compute). Every process gets one thread (``OMP_NUM_THREADS=1``), so two
actors use two cores where one process uses one. The load averages before and after each mode are
recorded: a row is comparable with the others only when nothing else ran.

Writes ``benchmarks/results/ray_overhead.json`` and ``ray_overhead.md``; ``--stages`` reruns one
stage and keeps the other's rows from the JSON (each row says when it ran).

    OMP_NUM_THREADS=1 python benchmarks/ray_overhead.py [--expand-docs 24] [--embed-docs 2000] [--stages embed,expand]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
CORPUS = "beir/nfcorpus/corpus.jsonl"
MODES = (("single", "local", 1), ("ray-1", "ray", 1), ("ray-2", "ray", 2))


def timed(fn):
    """(result, seconds, [1-min load average before, after]); sets ``timed.started`` (wall clock, minutes)."""
    load = os.getloadavg()[0]
    timed.started = time.strftime("%Y-%m-%d %H:%M")
    started = time.perf_counter()
    result = fn()
    return result, round(time.perf_counter() - started, 2), [round(load, 2), round(os.getloadavg()[0], 2)]


def work_seconds(provenance: Path) -> float | None:
    from llmcse.utils.executor import read_provenance

    rows = read_provenance(provenance) if provenance.exists() else []
    return round(sum(r["seconds"] for r in rows), 2) if rows else None


def expansion(corpus: Path, n: int, folder: Path) -> list[dict]:
    from llmcse.synth.expand import ExpandConfig, run_expand

    rows, first = [], None
    for name, executor, actors in MODES:
        out = folder / f"expand-{name}.jsonl"
        chunk = max(1, n // 2)
        cfg = ExpandConfig(corpus=str(corpus), out=str(out), n=n, chunk_size=chunk, shard_size=chunk)
        summary, seconds, load = timed(lambda: run_expand(cfg, show_progress_bar=False, executor=executor,
                                                          actors=actors))
        records = [{k: v for k, v in json.loads(line).items() if k != "created"} for line in out.read_text().splitlines()]
        first = first or records
        rows.append({"stage": "expand", "mode": name, "ran": timed.started, "documents": n,
                     "seconds": seconds, "load_avg": load,
                     "ms_per_doc": round(1000 * seconds / n, 1),
                     "work_seconds": work_seconds(out.with_name(out.name + ".shards") / "provenance.jsonl"),
                     "completion_tokens": summary["this_run"]["completion_tokens"],
                     "equal_to_single": records == first})
        print(rows[-1], flush=True)
    return rows


def embedding(corpus: Path, n: int, folder: Path) -> list[dict]:
    import numpy as np

    from llmcse.data.loaders import load_beir_corpus
    from llmcse.embed.sharded import embed_texts

    docs = load_beir_corpus(corpus)
    texts = [docs[d].default_text().strip() for d in list(docs)[:n]]
    source = folder / "texts.txt"
    source.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")
    rows, first = [], None
    for name, executor, actors in MODES:
        out = folder / f"embed-{name}.npy"
        (vectors, _), seconds, load = timed(lambda: embed_texts(texts, "all-MiniLM-L6-v2", output=out, input_path=source,
                                                                 executor=executor, actors=actors,
                                                                 show_progress_bar=False))
        first = vectors if first is None else first
        rows.append({"stage": "embed", "mode": name, "ran": timed.started, "documents": n,
                     "seconds": seconds, "load_avg": load,
                     "ms_per_doc": round(1000 * seconds / n, 2),
                     "work_seconds": work_seconds(out.with_name(out.name + ".shards") / "provenance.jsonl"),
                     "max_abs_diff_to_single": float(np.abs(vectors - first).max())})
        print(rows[-1], flush=True)
    return rows


def write(args, rows: list[dict], ray_start: float, env: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "ray_overhead.json"
    stages = {r["stage"] for r in rows}
    kept = [r for r in json.loads(path.read_text())["rows"] if r["stage"] not in stages] if path.exists() else []
    rows = sorted(kept + rows, key=lambda r: (r["stage"] != "expand", r["stage"]))  # expansion first
    result = {"command": " ".join(["python", "benchmarks/ray_overhead.py", *sys.argv[1:]]), "env": env,
              "ray_start_seconds": ray_start, "rows": rows}
    (RESULTS / "ray_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    single = {r["stage"]: r for r in rows if r["mode"] == "single"}
    lines = ["# Ray overhead on one CPU machine (issue 25)", "",
             f"{env['cpu']}, {env['cores']} cores (the load averages say what else ran), one thread per process "
             f"(OMP_NUM_THREADS=1), Ray {env['ray']}. Starting Ray on this machine (once per process, not in "
             f"the rows): {ray_start:.1f} s.", "",
             "| stage | mode | ran | docs | seconds | ms/doc | vs single | shard work s | load avg (1 min) before→after | "
             "output = single |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        same = r.get("equal_to_single")
        same = ("yes" if same else "no") if same is not None else f"max diff {r['max_abs_diff_to_single']:.1e}"
        lines.append(f"| {r['stage']} | {r['mode']} | {r.get('ran', '-')} | {r['documents']} | {r['seconds']} | "
                     f"{r['ms_per_doc']} | "
                     f"{r['seconds'] / single[r['stage']]['seconds']:.2f}x | {r['work_seconds'] or '-'} | "
                     f"{r['load_avg'][0]}→{r['load_avg'][1]} | {same} |")
    lines += ["", f"Command: `{result['command']}` (with OMP_NUM_THREADS=1). How to read it, and what a "
              "million documents need: [ray_overhead_notes.md](ray_overhead_notes.md)."]
    (RESULTS / "ray_overhead.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--expand-docs", type=int, default=24)
    parser.add_argument("--embed-docs", type=int, default=2000)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--stages", default="embed,expand", help="comma-separated: embed, expand")
    args = parser.parse_args()
    import ray
    import torch

    from llmcse.data.paths import resolve_data_dir
    from llmcse.utils import executor

    corpus = resolve_data_dir(args.data_dir) / CORPUS
    env = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "ray": ray.__version__,
           "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    _, ray_start, _ = timed(lambda: executor.connect(None))  # once: the main thread owns the local instance
    with tempfile.TemporaryDirectory(prefix="llmcse-rayb-") as tmp:
        stages = args.stages.split(",")
        rows = (embedding(corpus, args.embed_docs, Path(tmp)) if "embed" in stages else []) + \
            (expansion(corpus, args.expand_docs, Path(tmp)) if "expand" in stages else [])
    executor.shutdown()
    write(args, rows, ray_start, env)
    print((RESULTS / "ray_overhead.md").read_text())


if __name__ == "__main__":
    main()
