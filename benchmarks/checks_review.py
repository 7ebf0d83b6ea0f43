"""Issue 23 scope 4: measure the seed reader's skips and the output checks on the committed data.

    OMP_NUM_THREADS=1 python benchmarks/checks_review.py [--examples]

Prints, for ../shared/data/unlabeled/wiki_sentences.txt, the seed skips by reason (first 3,000 lines
and all), and for benchmarks/data/{nli,sts3}_smollm2 (raw = generate's output, kept = after filter)
the share of records that today's check_output would reject (demo leak, not_a_sentence) and the
share whose seed the reader now skips. CPU only, a few seconds.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

from llmcse.data.readers import iter_text_lines
from llmcse.synth.checks import SENTENCE_FIELDS, check_output, fragment_reason
from llmcse.synth.prompts import load_template
from llmcse.synth.seeds import seed_skip_reason

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT.parent / "shared/data/unlabeled/wiki_sentences.txt"


def load(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def seed_skips(examples: bool) -> None:
    lines = [" ".join(t.split()) for _, t in iter_text_lines(SEEDS)]
    for name, part in (("first 3000", lines[:3000]), ("all", lines)):
        counts = Counter(seed_skip_reason(t, 4, 64) or "kept" for t in part)
        print(f"seeds {name} ({len(part)} lines):", dict(counts.most_common()))
    if examples:
        by_reason = defaultdict(list)
        for t in lines:
            by_reason[seed_skip_reason(t, 4, 64) or "kept"].append(t)
        rng = random.Random(23)
        for reason, texts in by_reason.items():
            print(f"== {reason} ({len(texts)})")
            for t in rng.sample(texts, min(10, len(texts))):
                print("   ", t[:140])


def recheck() -> None:
    for recipe in ("nli", "sts3"):
        template = load_template(recipe)
        for name, path in (("raw", f"{recipe}_smollm2.jsonl.gz"), ("kept", f"{recipe}_smollm2.kept.jsonl")):
            records = load(ROOT / "benchmarks/data" / path)
            reasons, leaks, seeds_skipped = Counter(), 0, 0
            for r in records:
                why = {f: check_output(r.get(f) or "", r["seed"], instruction=template.fields[f].instruction,
                                       demo_texts=template.demo_texts, require_sentence=f in SENTENCE_FIELDS)
                       for f in template.fields}
                reasons.update(f"{f}:{w}" for f, w in why.items() if w)
                leaks += "copied_demo" in why.values()
                seeds_skipped += seed_skip_reason(" ".join(r["seed"].split()), 4, 64) is not None
            n = len(records)
            print(f"{recipe} {name} ({n} records): demo leak {leaks} ({100 * leaks / n:.1f}%), "
                  f"seed now skipped {seeds_skipped} ({100 * seeds_skipped / n:.1f}%), by field:reason "
                  + str({k: f"{v} ({100 * v / n:.1f}%)" for k, v in sorted(reasons.items())}))
            if "intermediate" in template.fields:
                print("   intermediate fragments:", dict(Counter(
                    fragment_reason(r["intermediate"]) for r in records if fragment_reason(r["intermediate"]))))


if __name__ == "__main__":
    seed_skips("--examples" in sys.argv)
    recheck()
