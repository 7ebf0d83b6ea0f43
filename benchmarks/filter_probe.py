"""Issue 23 scope 3: does `llmcse filter` keep better records than it drops, per scoring? On labelled records.

The records are SNLI triplets from the judges' probe (``benchmarks/judges.py``: seeded sample, the triplets
the seeded generator was tuned on left out) written as generated records: seed = premise. Half of them
(seeded choice) are made bad by swapping the two fields, so the "positive" contradicts the seed and the
"negative" is entailed by it: the mistake a generator makes when it confuses the two instructions. Each
scoring runs the shipped ``run_filter`` (``--quantile 0.25``, cheap overlap checks off, so the judge alone
decides) and the table gives the share of correct records among the kept and among the dropped.

    python benchmarks/filter_probe.py --llm hf:SmolLM2-135M-Instruct --embedder prompteol:SmolLM2-135M-Instruct \
        --exclude-report benchmarks/data/nli_seeded_smollm2.generator_pairs.report.json
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from judges import RESULTS, probe

SCORINGS = ("yesno", "cosine", "yesno+cosine")


def labelled_records(triplets, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i, t in enumerate(triplets):
        good = rng.random() < 0.5
        pos, neg = (t.positive, t.negative) if good else (t.negative, t.positive)
        rows.append({"id": f"p{i}", "recipe": "nli", "seed": t.anchor, "positive": pos, "negative": neg, "good": good})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", required=True, help="the LLM judge (yes/no)")
    parser.add_argument("--embedder", required=True, help="the embedder judge (cosine)")
    parser.add_argument("--exclude-report", help="record-pairs report of the triplets a judge was tuned on")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quantile", type=float, default=0.25)
    parser.add_argument("--out", default=str(RESULTS / "filter_probe"), help="writes OUT.json and OUT.md")
    args = parser.parse_args()

    from llmcse.llm import load_llm
    from llmcse.synth.filter import FilterConfig, dropped_path, run_filter
    from llmcse.utils.jsonl import read_jsonl

    _, triplets, excluded = probe(args.n, args.seed, args.exclude_report)
    records = labelled_records(triplets, args.seed)
    good = {r["id"]: r["good"] for r in records}
    llm = load_llm(args.llm)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gen = Path(tmp) / "records.jsonl"
        gen.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        out = Path(tmp) / "kept.jsonl"  # one scores file: yesno+cosine reuses the two single runs' rows
        for scoring in SCORINGS:
            t0 = time.perf_counter()
            cfg = FilterConfig(input=str(gen), out=str(out), llm=args.llm, scoring=scoring, embedder=args.embedder,
                               quantile=args.quantile, max_positive_overlap=1.01, min_positive_overlap=0.0,
                               min_negative_overlap=0.0)
            report = run_filter(cfg, llm=llm, show_progress_bar=False)
            kept, dropped = read_jsonl(out), read_jsonl(dropped_path(out))
            share = lambda rs: round(sum(good[r["id"]] for r in rs) / len(rs), 4) if rs else None  # noqa: E731
            rows.append({"scoring": scoring, "kept": len(kept), "dropped": len(dropped),
                         "correct_among_kept": share(kept), "correct_among_dropped": share(dropped),
                         "dropped_by_reason": report["dropped_by_reason"],
                         "seconds": round(time.perf_counter() - t0, 1)})
            print(rows[-1], flush=True)
    command = (f"python benchmarks/filter_probe.py --llm {args.llm} --embedder {args.embedder}"
               + (f" --exclude-report {args.exclude_report}" if args.exclude_report else "")
               + f" --n {args.n} --seed {args.seed} --quantile {args.quantile}")
    n_good = sum(good.values())
    result = {"n": args.n, "seed": args.seed, "correct_records": n_good, "excluded_triplets": excluded,
              "command": command, "rows": rows}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Does `llmcse filter` keep better records than it drops? (issue 23 scope 3)", "",
             f"{args.n} SNLI triplets of the judges' probe (seed {args.seed}; the {excluded} triplets the seeded "
             f"generator was tuned on left out) as generated records, {args.n - n_good} of them made bad by swapping "
             f"positive and negative; {n_good} correct ({n_good / args.n:.0%}). `run_filter` with `--quantile "
             f"{args.quantile}` and the cheap overlap checks off, so only the judge decides. Judges: LLM `{args.llm}`, "
             f"embedder `{args.embedder}`.", "",
             "| scoring | kept | correct among kept | correct among dropped | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {r['scoring']} | {r['kept']} | {r['correct_among_kept']} | {r['correct_among_dropped']} | "
              f"{r['seconds']} |" for r in rows]
    lines += ["", "yesno+cosine reuses the rows the two single scorings stored (its seconds are the combination "
              "alone).", "", f"Command: `{command}`"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
