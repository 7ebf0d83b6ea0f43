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


COMMITTED = {"nli": [("raw", "benchmarks/data/nli_smollm2.jsonl.gz"), ("kept", "benchmarks/data/nli_smollm2.kept.jsonl")],
             "sts3": [("raw", "benchmarks/data/sts3_smollm2.jsonl.gz"), ("kept", "benchmarks/data/sts3_smollm2.kept.jsonl")]}


GENERIC = {"playing", "plays", "other", "approved", "rejected", "accepted", "woman", "people"}


def demo_words(template) -> set[str]:
    """The demos' topic words ('Tuesday', 'committee', 'budget', 'guitar', 'piano', 'stage'): words of
    five letters or more, plus 'piano', less generic ones that SNLI-style text uses everywhere."""
    words = {w.strip(".,").lower() for t in template.demo_texts for w in t.split()}
    return {w for w in words if len(w) > 4 or w == "piano"} - GENERIC


def word_leak(record: dict, template, words: set[str]) -> bool:
    """A demo word in an output field that the seed does not have (the softer leak measure: e.g. the
    demo's 'On Tuesday' pasted into an unrelated sentence)."""
    seed = {w.strip(".,").lower() for w in record["seed"].split()}
    return any(w in words and w not in seed for f in template.fields
               for w in (x.strip(".,").lower() for x in (record.get(f) or "").split()))


def recheck(files: dict | None = None) -> None:
    for recipe, sets in (files or COMMITTED).items():
        template = load_template(recipe)
        words = demo_words(template)
        for name, path in sets:
            records = load(ROOT / path)
            reasons, leaks, seeds_skipped, soft = Counter(), 0, 0, 0
            for r in records:
                why = {f: check_output(r.get(f) or "", r["seed"], instruction=template.fields[f].instruction,
                                       demo_texts=template.demo_texts, require_sentence=f in SENTENCE_FIELDS)
                       for f in template.fields}
                reasons.update(f"{f}:{w}" for f, w in why.items() if w)
                leaks += "copied_demo" in why.values()
                seeds_skipped += seed_skip_reason(" ".join(r["seed"].split()), 4, 64) is not None
                soft += word_leak(r, template, words)
            n = len(records)
            print(f"{recipe} {name} {path} ({n} records): demo leak {leaks} ({100 * leaks / n:.1f}%), "
                  f"demo word not in the seed {soft} ({100 * soft / n:.1f}%), "
                  f"seed now skipped {seeds_skipped} ({100 * seeds_skipped / n:.1f}%), by field:reason "
                  + str({k: f"{v} ({100 * v / n:.1f}%)" for k, v in sorted(reasons.items())}))
            if "intermediate" in template.fields:
                print("   intermediate fragments:", dict(Counter(
                    fragment_reason(r["intermediate"]) for r in records if fragment_reason(r["intermediate"]))))


if __name__ == "__main__":
    # --files RECIPE=NAME:PATH ...: other record files (e.g. runs/gen23/nli_seeded.jsonl) instead of the committed sets
    if "--files" in sys.argv:
        chosen: dict = defaultdict(list)
        for spec in sys.argv[sys.argv.index("--files") + 1:]:
            recipe, rest = spec.split("=", 1)
            chosen[recipe].append(tuple(rest.split(":", 1)))
        recheck(dict(chosen))
    else:
        seed_skips("--examples" in sys.argv)
        recheck()
