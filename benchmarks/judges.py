"""Issue 23 scope 3: which judge helps `llmcse filter`? Every candidate on one fixed labelled probe, in one run.

The probe (as ``benchmarks/scorers.py``): a seeded sample of STS-B *train* pairs (Spearman x100 of the
score vs the gold similarity) and of SNLI triplets (share where score(premise, entailment) >
score(premise, contradiction), the filter's own "positive above negative" rule). The triplets that
the seeded generator was tuned on (``--exclude-report``: a ``record-pairs`` report) are left out, so
that judge is not scored on its training rows.

Candidates: an LLM's yes/no and 0-5 rating scores (``--llm NAME=SPEC``, repeatable: e.g. the base
SmolLM2 and the seeded generator), the starting embedder's cosine (``--embedder``: the batch-level
signal MultiCSR masks false negatives with), and a fixed combination: the mean of the per-probe
rank percentiles of the first LLM's yes/no score and the embedder's cosine (no weights fitted on
the probe).

    python benchmarks/judges.py --llm base=hf:SmolLM2-135M-Instruct --llm seeded=hf:runs/gen23/gen-seeded \
        --embedder prompteol:SmolLM2-135M-Instruct --exclude-report benchmarks/data/nli_seeded_smollm2.generator_pairs.report.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from scipy.stats import rankdata, spearmanr

RESULTS = Path(__file__).parent / "results"


def probe(n: int, seed: int, exclude_report: str | None):
    from llmcse.data.loaders import load_sts, load_triplets
    from llmcse.data.paths import resolve_data_dir

    data = resolve_data_dir()
    rng = random.Random(seed)
    sts = rng.sample(load_sts(data / "sts" / "stsb_train.tsv"), n)
    triplets = load_triplets(data / "nli" / "triplets.tsv")
    seen: set[int] = set()
    if exclude_report:  # sources are "triplets.tsv:LINE"; data row i (0-based) is on line i + 2
        seen = {int(s.rsplit(":", 1)[1]) - 2 for s in json.loads(Path(exclude_report).read_text())["sources"]}
    pool = [t for i, t in enumerate(triplets) if i not in seen]
    return sts, rng.sample(pool, n), len(seen)


def measure(name: str, sts_scores, ent, con, sts, seconds: float) -> dict:
    ok = [(s, p.score) for s, p in zip(sts_scores, sts) if s is not None]
    order = [e > c for e, c in zip(ent, con) if e is not None and c is not None]
    row = {"judge": name, "stsb_train_spearman": round(100 * spearmanr([s for s, _ in ok], [g for _, g in ok])[0], 2),
           "snli_entailment_above_contradiction": round(float(np.mean(order)), 4),
           "unparseable": sum(s is None for s in list(sts_scores) + list(ent) + list(con)), "seconds": round(seconds, 1)}
    print(row, flush=True)
    return row


def percentiles(values) -> np.ndarray:
    return rankdata(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", action="append", required=True, metavar="NAME=SPEC")
    parser.add_argument("--embedder", help="sentence embedder for the cosine judge (any llmcse --model spec)")
    parser.add_argument("--exclude-report", help="record-pairs report of the triplets a judge was tuned on")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "judges"), help="writes OUT.json and OUT.md")
    args = parser.parse_args()

    from llmcse.llm import load_llm
    from llmcse.synth.filter import LLM_SCORINGS, score_pairs

    sts, triplets, excluded = probe(args.n, args.seed, args.exclude_report)
    pairs = {"sts": [(p.sentence1, p.sentence2) for p in sts], "ent": [(t.anchor, t.positive) for t in triplets],
             "con": [(t.anchor, t.negative) for t in triplets]}
    rows, raw = [], {}
    for item in args.llm:
        name, spec = item.split("=", 1)
        llm = load_llm(spec)
        for scoring in LLM_SCORINGS:
            t0 = time.perf_counter()
            scores = {k: score_pairs(llm, v, scoring) for k, v in pairs.items()}
            raw[f"{name} {scoring}"] = scores
            rows.append(measure(f"{name} {scoring} ({spec})", scores["sts"], scores["ent"], scores["con"], sts,
                                time.perf_counter() - t0))
        del llm
    if args.embedder:
        from llmcse.embed.models import load_embedder

        t0 = time.perf_counter()
        model = load_embedder(args.embedder)
        cos = {}
        for k, v in pairs.items():
            a = model.encode([x for x, _ in v], normalize_embeddings=True, batch_size=32)
            b = model.encode([y for _, y in v], normalize_embeddings=True, batch_size=32)
            cos[k] = [float(x @ y) for x, y in zip(a, b)]
        raw["cosine"] = cos
        rows.append(measure(f"embedder cosine ({args.embedder})", cos["sts"], cos["ent"], cos["con"], sts,
                            time.perf_counter() - t0))
        first = f"{args.llm[0].split('=', 1)[0]} yesno"
        combo = {}  # entailment and contradiction scores are ranked together: the ordering compares across them
        both = raw[first]["ent"] + raw[first]["con"]
        both_cos = cos["ent"] + cos["con"]
        p = (percentiles([s if s is not None else 0.0 for s in both]) + percentiles(both_cos)) / 2
        combo["ent"], combo["con"] = list(p[:len(triplets)]), list(p[len(triplets):])
        combo["sts"] = list((percentiles([s if s is not None else 0.0 for s in raw[first]["sts"]])
                             + percentiles(cos["sts"])) / 2)
        rows.append(measure(f"combination: mean rank of {first} and cosine", combo["sts"], combo["ent"], combo["con"],
                            sts, 0.0))
    command = "python benchmarks/judges.py " + " ".join(
        [f"--llm {x}" for x in args.llm] + ([f"--embedder {args.embedder}"] if args.embedder else [])
        + ([f"--exclude-report {args.exclude_report}"] if args.exclude_report else []) + [f"--n {args.n} --seed {args.seed}"])
    result = {"n": args.n, "seed": args.seed, "excluded_triplets": excluded, "command": command, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Judges for `llmcse filter` on one labelled probe (issue 23 scope 3)", "",
             f"{args.n} random STS-B train pairs and {args.n} random SNLI triplets (seed {args.seed}; the {excluded} "
             "triplets the seeded generator was tuned on left out). Chance for the ordering column is 0.5.", "",
             "| judge | STS-B train Spearman x100 | SNLI: entailment scored above contradiction | seconds |",
             "|---|---|---|---|"]
    lines += [f"| {r['judge']} | {r['stsb_train_spearman']} | {r['snli_entailment_above_contradiction']} | {r['seconds']} |"
              for r in rows]
    lines += ["", f"Command: `{command}`"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
