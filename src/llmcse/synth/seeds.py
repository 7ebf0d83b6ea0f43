"""Seed sentences for synthesis: read, clean, deduplicate, and skip unusable ones (counted)."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from llmcse.data.readers import iter_text_lines
from llmcse.synth.checks import normalize


def seed_id(seed: str) -> str:
    return hashlib.sha1(seed.encode("utf-8")).hexdigest()[:12]


def seed_skip_reason(text: str, min_words: int, max_words: int) -> str | None:
    words = text.split()
    if len(words) < min_words:
        return "seed_too_short"
    if len(words) > max_words:
        return "seed_too_long"
    if "<" in text and ">" in text:
        return "seed_markup"  # wiki residue such as <onlyinclude></onlyinclude>
    letters = sum(c.isalpha() for c in text)
    if letters < 0.5 * len(text.replace(" ", "")):
        return "seed_not_text"
    return None


def read_seeds(path: str | Path, *, min_words: int = 4, max_words: int = 64) -> tuple[list[str], Counter]:
    """Unique usable seeds in file order, and counts of what was skipped and why.

    ``.txt``: one seed per line; ``.jsonl``/``.tsv``: the ``text``/``sentence`` field.
    """
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".tsv"):
        from llmcse.embed.files import read_texts

        _, texts = read_texts(path)
    else:
        texts = [t for _, t in iter_text_lines(path)]
    seeds, seen, skipped = [], set(), Counter()
    for text in texts:
        text = " ".join(text.split())
        reason = seed_skip_reason(text, min_words, max_words)
        if reason:
            skipped[reason] += 1
            continue
        key = normalize(text)
        if key in seen:
            skipped["seed_duplicate"] += 1
            continue
        seen.add(key)
        seeds.append(text)
    return seeds, skipped
