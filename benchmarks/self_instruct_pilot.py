"""Issue 23 scope 2: does a self-instruct round help the seeded generator? Two generators' records on the same seeds.

Both files come from `llmcse generate` with the same seeds and settings on the same machine (the commands are in
the summary files beside them). Their records are judged together by one `run_filter` (the cheap checks, then
`--scoring yesno+cosine --quantile 0.25`): the judge's percentile ranks and quantile thresholds are then shared,
so kept fractions compare. Per generator: generate's own rejections, the cheap-check drops by reason, the judge's
keeps, the word overlap of positive / negative with the seed, and the demo leak (as `checks_review.py`).

    python benchmarks/self_instruct_pilot.py --records seeded=runs/gen23/pilot.seeded.jsonl \
        --records si=runs/gen23/pilot.si2.jsonl --llm hf:SmolLM2-135M-Instruct \
        --embedder prompteol:SmolLM2-135M-Instruct --work runs/gen23/pilot.judged
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", action="append", required=True, metavar="NAME=FILE")
    parser.add_argument("--llm", required=True)
    parser.add_argument("--embedder", required=True)
    parser.add_argument("--quantile", type=float, default=0.25)
    parser.add_argument("--work", required=True, help="folder for the joint filter run (resumable)")
    parser.add_argument("--out", default=str(RESULTS / "self_instruct_pilot"), help="writes OUT.json and OUT.md")
    args = parser.parse_args()

    from checks_review import demo_words, word_leak
    from llmcse.synth.checks import check_output
    from llmcse.synth.filter import FilterConfig, dropped_path, run_filter, word_overlap
    from llmcse.synth.prompts import load_template
    from llmcse.utils.jsonl import read_jsonl

    files = dict(item.split("=", 1) for item in args.records)
    sets = {name: read_jsonl(Path(path)) for name, path in files.items()}
    common = set.intersection(*({r["seed"] for r in rs} for rs in sets.values()))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    joint = work / "records.jsonl"
    if not joint.exists():  # ids are per seed: prefixed per generator, so both sets' records stay apart
        joint.write_text("".join(json.dumps({**r, "id": f"{name}-{r['id']}"}) + "\n" for name, rs in sets.items()
                                 for r in rs if r["seed"] in common), encoding="utf-8")
    t0 = time.perf_counter()
    cfg = FilterConfig(input=str(joint), out=str(work / "kept.jsonl"), llm=args.llm, scoring="yesno+cosine",
                       embedder=args.embedder, quantile=args.quantile)
    report = run_filter(cfg)
    seconds = round(time.perf_counter() - t0, 1)
    decided = read_jsonl(work / "kept.jsonl") + read_jsonl(dropped_path(work / "kept.jsonl"))
    template = load_template("nli")
    words = demo_words(template)
    rows = []
    for name, path in files.items():
        mine = [r for r in decided if r["id"].startswith(f"{name}-")]
        summary = json.loads(Path(path).with_name(Path(path).stem + ".summary.json").read_text())
        reasons = Counter(r["filter"]["reason"] for r in mine if r["filter"]["reason"])
        cheap = sum(r["filter"]["stage"] == "cheap" and r["filter"]["reason"] is not None for r in mine)
        kept = sum(r["filter"]["kept"] for r in mine)
        leak = sum(any(check_output(r[f], r["seed"], demo_texts=template.demo_texts) == "copied_demo"
                       for f in ("positive", "negative")) for r in mine)
        rows.append({
            "generator": name, "file": path, "seeds": summary["seeds_done"], "records": len(mine),
            "generate_kept_fraction": summary["kept_fraction"],
            "generate_field_rejections": summary["field_rejections_by_reason"],
            "cheap_dropped": cheap, "judged": len(mine) - cheap, "kept": kept,
            "kept_fraction": round(kept / len(mine), 4),
            "judge_kept_fraction": round(kept / (len(mine) - cheap), 4) if len(mine) > cheap else None,
            "dropped_by_reason": dict(reasons),
            "median_overlap_positive": round(statistics.median(word_overlap(r["seed"], r["positive"]) for r in mine), 3),
            "median_overlap_negative": round(statistics.median(word_overlap(r["seed"], r["negative"]) for r in mine), 3),
            "median_words_positive": statistics.median(len(r["positive"].split()) for r in mine),
            "demo_leak": leak, "demo_word_not_in_seed": sum(word_leak(r, template, words) for r in mine)})
        print(rows[-1], flush=True)
    command = ("python benchmarks/self_instruct_pilot.py " + " ".join(f"--records {x}" for x in args.records)
               + f" --llm {args.llm} --embedder {args.embedder} --quantile {args.quantile} --work {args.work}")
    result = {"seeds_in_common": len(common), "thresholds": report["thresholds"], "filter_seconds": seconds,
              "command": command, "rows": rows}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Self-instruct pilot: the seeded generator vs itself after one self-instruct round (issue 23 scope 2)", "",
             f"Records of both generators for the same {len(common)} seeds, judged together by one `llmcse filter "
             f"--scoring yesno+cosine --quantile {args.quantile}` (LLM `{args.llm}`, embedder `{args.embedder}`; "
             f"shared thresholds: positive >= {report['thresholds']['t_pos']}, negative <= "
             f"{report['thresholds']['t_neg']}).", "",
             "| generator | records | generate kept | cheap-check drops | judge keeps of the rest | kept in all | "
             "median overlap pos / neg | median words pos | demo leak |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['generator']} | {r['records']} | {r['generate_kept_fraction']} | {r['cheap_dropped']} "
                     f"({', '.join(f'{k} {v}' for k, v in sorted(r['dropped_by_reason'].items()) if k.startswith(('positive_off', 'positive_near', 'negative_un')))}) | "
                     f"{r['judge_kept_fraction']} | {r['kept']} ({r['kept_fraction']:.0%}) | "
                     f"{r['median_overlap_positive']} / {r['median_overlap_negative']} | {r['median_words_positive']} | "
                     f"{r['demo_leak']} |")
    lines += ["", f"Command: `{command}`"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
