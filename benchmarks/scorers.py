"""Pair scorers for ``llmcse filter``: how well does each scoring method of an LLM track meaning?

Two measurements per scoring method (``rating`` = MultiCSR's 0-5 rubric, ``yesno`` = 5 x P(Yes)
to "same meaning?"), in one run, with the same LLM:
- Spearman x100 of the score vs the gold similarity on a random sample of STS-B *train* pairs;
- ordering accuracy on SNLI triplets: how often score(premise, entailment) > score(premise,
  contradiction), which is exactly the filter's "positive > negative" rule.
Writes ``benchmarks/results/scorers.json`` and ``scorers.md``.

    python benchmarks/scorers.py [--llm hf:SmolLM2-135M-Instruct] [--n 200]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", default="hf:SmolLM2-135M-Instruct")
    parser.add_argument("--n", type=int, default=200, help="STS-B train pairs and SNLI triplets sampled")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from judges import measure, probe  # the same seeded probe and metrics as the judges table
    from llmcse.llm import load_llm
    from llmcse.synth.filter import LLM_SCORINGS, score_pairs

    sts, triplets, _ = probe(args.n, args.seed, None)
    llm = load_llm(args.llm)
    rows = []
    for scoring in LLM_SCORINGS:
        t0 = time.perf_counter()
        sts_scores = score_pairs(llm, [(p.sentence1, p.sentence2) for p in sts], scoring)
        ent = score_pairs(llm, [(t.anchor, t.positive) for t in triplets], scoring)
        con = score_pairs(llm, [(t.anchor, t.negative) for t in triplets], scoring)
        row = measure(scoring, sts_scores, ent, con, sts, time.perf_counter() - t0)
        graded = [s for s in sts_scores if s is not None]
        rows.append({"scoring": scoring, **{k: v for k, v in row.items() if k != "judge"},
                     "score_quantiles_10_50_90": [round(float(q), 3) for q in np.quantile(graded, [0.1, 0.5, 0.9])]})
    result = {"llm": args.llm, "n": args.n, "seed": args.seed,
              "command": f"python benchmarks/scorers.py --llm {args.llm} --n {args.n} --seed {args.seed}", "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scorers.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Pair scorers for `llmcse filter`", "",
             f"LLM `{args.llm}`; {args.n} random STS-B train pairs and {args.n} random SNLI triplets (seed {args.seed}).", "",
             "| scoring | STS-B train Spearman x100 | SNLI: P(entailment scored above contradiction) | score 10/50/90% | seconds |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['scoring']} | {r['stsb_train_spearman']} | {r['snli_entailment_above_contradiction']} | "
              f"{' / '.join(map(str, r['score_quantiles_10_50_90']))} | {r['seconds']} |" for r in rows]
    lines += ["", "Chance for the ordering column is 0.5 (ties count as failures).", "",
              f"Command: `{result['command']}`"]
    (RESULTS / "scorers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
