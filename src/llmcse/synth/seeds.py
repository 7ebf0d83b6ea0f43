"""Seed sentences for synthesis: read, clean, deduplicate, and skip unusable ones (counted)."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

from llmcse.data.readers import iter_text_lines, read_texts
from llmcse.synth.checks import has_verb, normalize


def seed_id(seed: str) -> str:
    return hashlib.sha1(seed.encode("utf-8")).hexdigest()[:12]


# Heuristics for lines of a Wikipedia dump that are not sentences (hand review, issue 23: seeds
# such as "Rasmus Jensen may refer to:" or "2020 BWF Continental Circuit" give the generator
# nothing to paraphrase, so it invents). Checked in this order; each has its own reason code.
_DISAMBIGUATION = re.compile(r"\b(?:may|can|might) (?:also )?refer to\b", re.IGNORECASE)
_URL = re.compile(r"https?://|\bwww\.", re.IGNORECASE)  # not "Blu-ray.com called the film ...": a name
_TABLE_MARKUP = re.compile(r"^[!|{]|colspan=|rowspan=|style=|\{\{|\}\}|\[\[|\]\]")
_END = tuple('.!?"\')”’»')  # as checks._SENTENCE_END
# Lowercase words that a title may contain ("Museum of Natural History", "Lac à la Catin").
_TITLE_SMALL_WORDS = frozenset(
    "a an the of in on at to for and or by with from de la le les des du di da del von van der à et y "
    "vs v s".split())
_NAME_PARTICLES = frozenset("de van von der den ter al el da di du le la d' bin ibn".split())
_TRAILING_FUNCTION_WORD = frozenset(
    "of the a an and or to in on at for by with from as that which is was are were his her their its".split())


def _name_particle_start(words: list[str]) -> bool:
    """ "de Chazan was granted ...": a lowercase name particle before a capitalised name."""
    return len(words) > 1 and words[0] in _NAME_PARTICLES and words[1][:1].isupper()


def _title_like(text: str) -> bool:
    """Every word with letters is capitalised, a number, or a small title word: a heading, a name."""
    words = re.findall(r"[^\W\d_][\w'’.-]*", text)
    return all(not w[0].islower() or w.lower() in _TITLE_SMALL_WORDS for w in words)


def seed_skip_reason(text: str, min_words: int, max_words: int) -> str | None:
    """A reason code if the line is not a usable seed sentence, else None (see the rules above)."""
    words = text.split()
    if len(words) < min_words:
        return "seed_too_short"
    if len(words) > max_words:
        return "seed_too_long"
    if ("<" in text and ">" in text) or _TABLE_MARKUP.search(text):
        return "seed_markup"  # wiki residue: <onlyinclude></onlyinclude>, "!colspan=12 style=| ..."
    letters = sum(c.isalpha() for c in text)
    if letters < 0.5 * len(text.replace(" ", "")):
        return "seed_not_text"
    if _URL.search(text):
        return "seed_url"
    if _DISAMBIGUATION.search(text):
        return "seed_disambiguation"  # "Palmere may refer to:"
    if text.endswith(":"):
        return "seed_list_intro"  # "Notable people with the surname include:": the content is the list
    if len(re.sub(r"\([^)]*\)", " ", text).split()) < min_words:
        return "seed_fragment"  # mostly a parenthesis: "Furth (b Deisenhofen) station"
    if (text[0].islower() and not _name_particle_start(words)) or text.endswith((",", ";")):
        return "seed_fragment"  # the tail or head of a sentence split in two: "in Adelaide.", "... and"
    last = re.sub(r"[^\w]+$", "", words[-1]).lower()
    if not text.endswith(_END) and last in _TRAILING_FUNCTION_WORD:
        return "seed_fragment"  # cut off: "... professor at University of Montenegro Faculty of"
    if _title_like(text) and not has_verb(text):
        return "seed_title"  # "2020 BWF Continental Circuit", "1886 - 1900 John James Virgo."
    if not text.endswith(_END) and not has_verb(text):
        return "seed_title"  # no end punctuation and no verb: "Arnold Schönberg complete edition"
    return None



def read_seeds(path: str | Path, *, min_words: int = 4, max_words: int = 64) -> tuple[list[str], Counter]:
    """Unique usable seeds in file order, and counts of what was skipped and why.

    ``.txt``: one seed per line; ``.jsonl``/``.tsv``: the ``text``/``sentence`` field.
    """
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".tsv"):
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
