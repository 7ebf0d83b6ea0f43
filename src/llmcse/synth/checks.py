"""LLM output is untrusted: clean it, then accept it or reject it with a reason code.

Reason codes are stable strings; generation and filtering count them per run.
"""

from __future__ import annotations

import re
import unicodedata

# Labels small models like to prepend ("Paraphrase: ...", "Answer: ...").
_LABEL_PREFIX = re.compile(r"^\s*(?:paraphrase|answer|output|sentence|rewritten(?: sentence)?|false(?: version)?|"
                           r"shortened?|result|response)\s*[:\-]\s*", re.IGNORECASE)
_WORD = re.compile(r"\w+", re.UNICODE)

REASONS = (
    "empty",            # nothing left after cleanup
    "copy_of_seed",     # the seed again (case, spaces and end punctuation ignored)
    "too_long",         # longer than max_length_ratio x the seed
    "copied_demo",      # a demo input or output from the prompt
    "echoed_instruction",  # the instruction itself came back
    "wrong_language",   # mostly non-Latin letters, or control characters (bad bytes)
    "same_as_other_field",  # e.g. the "negative" equals the "positive"
    "unfinished",       # cut off mid-sentence (hit the token limit): seed ends a sentence, output does not
)

_SENTENCE_END = tuple('.!?"\')”’»')


def clean_output(text: str) -> str:
    """First non-empty line, label prefix and wrapping quotes removed, whitespace normalised."""
    text = text.replace("\ufffd", "\x00")  # replacement chars mark bad bytes; keep them visible to checks
    for line in text.splitlines():
        line = _LABEL_PREFIX.sub("", line.strip())
        line = line.strip().strip('"“”\'').strip()
        if line:
            return " ".join(line.split())
    return ""


def normalize(text: str) -> str:
    """Lower case, words only: for comparing texts."""
    return " ".join(_WORD.findall(text.lower()))


def latin_fraction(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
    return latin / len(letters)


def wrong_language(text: str, reference: str) -> bool:
    """Control characters (bad bytes), or mostly non-Latin letters where the reference is Latin."""
    return any(ord(c) < 32 for c in text) or (latin_fraction(text) < 0.8 and latin_fraction(reference) >= 0.8)


def _trigrams(words: list[str]) -> set[tuple[str, ...]]:
    """Word 3-grams with at least one word of 4+ letters ("a man is" is too common to mean a copy)."""
    grams = (tuple(words[i:i + 3]) for i in range(len(words) - 2))
    return {g for g in grams if any(len(w) >= 4 for w in g)}


def leaks_demo(norm_text: str, norm_seed: str, demo_texts) -> bool:
    """True if the output shares a word 3-gram with a demo that the seed does not have.

    Small models paste demo phrases into their answers ("On Tuesday, the committee ...").
    """
    if not demo_texts:
        return False
    own = _trigrams(norm_text.split()) - _trigrams(norm_seed.split())
    if any(own & _trigrams(normalize(d).split()) for d in demo_texts):
        return True
    # A demo's proper noun ("On Tuesday, ...") in an output whose seed never mentions it: even a
    # two-word paste is a leak (seen in 5 of 25 kept records of the first 3,000-seed nli run).
    words = set(norm_text.split()) - set(norm_seed.split())
    return bool(words & _demo_proper_nouns(frozenset(demo_texts)))


def _demo_proper_nouns(demo_texts: frozenset[str]) -> set[str]:
    """Capitalised words that are not a demo's first word, lower-cased ("Tuesday" -> "tuesday")."""
    nouns = set()
    for demo in demo_texts:
        for word in re.findall(r"\w+", demo)[1:]:
            if word[:1].isupper():
                nouns.add(word.lower())
    return nouns


def check_output(
    text: str,
    seed: str,
    *,
    instruction: str = "",
    demo_texts: set[str] | frozenset[str] = frozenset(),
    other_fields: tuple[str, ...] = (),
    max_length_ratio: float = 3.0,
) -> str | None:
    """Return a reason code if ``text`` (already cleaned) is unusable, else None."""
    if not text or not normalize(text):
        return "empty"
    if any(ord(c) < 32 for c in text):
        return "wrong_language"
    if len(text) > max_length_ratio * max(len(seed), 20):
        return "too_long"
    norm = normalize(text)
    if norm == normalize(seed):
        return "copy_of_seed"
    if any(norm == normalize(d) for d in demo_texts) or leaks_demo(norm, normalize(seed), demo_texts):
        return "copied_demo"
    prefix = normalize(instruction.split("{seed}")[0]) if instruction else ""
    if (prefix and norm.startswith(prefix)) or re.search(r"\{\w*\}", text):  # a template placeholder came back
        return "echoed_instruction"
    if latin_fraction(text) < 0.8 and latin_fraction(seed) >= 0.8:
        return "wrong_language"
    if any(norm == normalize(o) for o in other_fields if o):
        return "same_as_other_field"
    if seed.rstrip().endswith(_SENTENCE_END) and not text.endswith(_SENTENCE_END):
        return "unfinished"
    return None
