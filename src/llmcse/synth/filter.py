"""``llmcse filter``: MultiCSR's pair-level refinement of generated records.

1. Cheap checks first (no LLM): word overlap of each generated text with its seed, since a
   "positive" sharing almost every word is a near copy and one sharing almost none has
   drifted off topic, while a contradiction normally keeps most of the seed's words.
2. LLM scoring second: the LLM rates each (seed, generated) pair on 0-5 with a rubric
   prompt. Back ends that expose next-token probabilities (local transformers) give the
   expected rating over the digits 0-5; others generate a digit at temperature 0.
3. Rules (MultiCSR): keep if positive >= t_pos, negative <= t_neg and positive > negative;
   for sts3 also positive >= intermediate >= negative.

Scores and the decision are stored on every record; kept ones go to ``--out``, dropped ones
to ``<out>.dropped.jsonl``, counts and examples to ``<out>.report.json``. Resumable like
``generate``: records already decided are skipped on a rerun.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from llmcse.errors import DataFormatError
from llmcse.llm.base import LLM, SamplingParams
from llmcse.synth.checks import normalize
from llmcse.synth.prompts import RECIPE_FIELDS
from llmcse.utils.io import atomic_write_json
from llmcse.utils.jsonl import AppendOnlyJsonl, read_jsonl

logger = logging.getLogger(__name__)

SCORE_SYSTEM = "You rate how similar two sentences are in meaning. Reply with one digit from 0 to 5."
SCORE_INSTRUCTION = ("Rate the similarity in meaning of the two sentences from 0 (unrelated) to 5 "
                     "(same meaning).\nSentence 1: {a}\nSentence 2: {b}")
SCORE_DEMOS = (
    ("A man is playing a guitar.", "A man plays the guitar.", "5"),
    ("A man is playing a guitar.", "A man is playing a piano.", "2"),
    ("The committee approved the budget.", "Dogs like to run on the beach.", "0"),
    ("A woman slices an onion in the kitchen.", "A woman is cutting vegetables.", "4"),
)
DIGITS = ["0", "1", "2", "3", "4", "5"]


@dataclass
class FilterConfig:
    input: str = "generated.jsonl"
    out: str = "kept.jsonl"
    llm: str | None = "hf:SmolLM2-135M-Instruct"  # None: cheap checks only
    t_pos: float = 3.0  # MultiCSR: keep positives scored >= 3
    t_neg: float = 3.0  # ... and negatives scored <= 3
    max_positive_overlap: float = 0.9  # word Jaccard with the seed above this: near copy
    min_positive_overlap: float = 0.2  # below this: the paraphrase drifted off topic
    min_negative_overlap: float = 0.1  # below this: an unrelated sentence, not a hard negative
    chunk_size: int = 128


def word_overlap(a: str, b: str) -> float:
    """Jaccard overlap of the two texts' word sets."""
    wa, wb = set(normalize(a).split()), set(normalize(b).split())
    return len(wa & wb) / len(wa | wb) if wa | wb else 0.0


def cheap_check(record: dict, cfg: FilterConfig) -> str | None:
    seed, pos, neg = record["seed"], record["positive"], record["negative"]
    overlap = word_overlap(seed, pos)
    if overlap > cfg.max_positive_overlap:
        return "positive_near_copy"
    if overlap < cfg.min_positive_overlap:
        return "positive_off_topic"
    if word_overlap(seed, neg) < cfg.min_negative_overlap:
        return "negative_unrelated"
    return None


def score_messages(a: str, b: str) -> list[dict]:
    msgs = [{"role": "system", "content": SCORE_SYSTEM}]
    for da, db, answer in SCORE_DEMOS:
        msgs.append({"role": "user", "content": SCORE_INSTRUCTION.format(a=da, b=db)})
        msgs.append({"role": "assistant", "content": answer})
    msgs.append({"role": "user", "content": SCORE_INSTRUCTION.format(a=a, b=b)})
    return msgs


_DIGIT = re.compile(r"[0-5](?:\.\d+)?")


def score_pairs(llm: LLM, pairs: list[tuple[str, str]]) -> list[float | None]:
    """0-5 similarity per pair; None where a generated answer held no rating."""
    prompts = [score_messages(a, b) for a, b in pairs]
    if hasattr(llm, "choice_probabilities"):
        probs = llm.choice_probabilities(prompts, DIGITS)
        return [round(sum(i * p for i, p in enumerate(row)), 4) for row in probs]
    outputs = llm.generate(prompts, SamplingParams(max_new_tokens=4, temperature=0.0, top_p=1.0))
    scores = []
    for text in outputs:
        match = _DIGIT.search(text or "")
        scores.append(float(match.group()) if match else None)
    return scores


def decide(record: dict, scores: dict[str, float | None], cfg: FilterConfig) -> str | None:
    """MultiCSR's thresholds; the reason a record is dropped, or None to keep it."""
    if any(v is None for v in scores.values()):
        return "score_unparseable"
    pos, neg = scores["positive"], scores["negative"]
    if pos < cfg.t_pos:
        return "positive_score_low"
    if neg > cfg.t_neg:
        return "negative_score_high"
    if pos <= neg:
        return "positive_not_above_negative"
    if "intermediate" in scores and not pos >= scores["intermediate"] >= neg:
        return "levels_out_of_order"
    return None


def _validate(records: list[dict], path: Path) -> None:
    for line_no, r in enumerate(records, start=1):
        recipe = r.get("recipe")
        if recipe not in RECIPE_FIELDS:
            raise DataFormatError(path, line_no, f"record has recipe {recipe!r}; expected one of {list(RECIPE_FIELDS)}")
        for f in ("id", "seed", *RECIPE_FIELDS[recipe]):
            if not isinstance(r.get(f), str) or not r[f].strip():
                raise DataFormatError(path, line_no, f"record lacks a non-empty {f!r}")


def dropped_path(out: Path) -> Path:
    return out.with_name(out.stem + ".dropped.jsonl")


def report_path(out: Path) -> Path:
    return out.with_name(out.stem + ".report.json")


def run_filter(cfg: FilterConfig, llm: LLM | None = None) -> dict:
    from llmcse.llm import load_llm

    in_path, out = Path(cfg.input), Path(cfg.out)
    records = read_jsonl(in_path)
    _validate(records, in_path)
    kept_file, dropped_file = AppendOnlyJsonl(out), AppendOnlyJsonl(dropped_path(out))
    done = {r["id"] for r in kept_file.read()} | {r["id"] for r in dropped_file.read()}
    pending = [r for r in records if r["id"] not in done]
    if pending and cfg.llm and llm is None:
        llm = load_llm(cfg.llm)
    started = time.perf_counter()
    for start in range(0, len(pending), cfg.chunk_size):
        chunk = pending[start:start + cfg.chunk_size]
        decided: list[tuple[dict, str | None]] = []
        to_score = []
        for r in chunk:
            reason = cheap_check(r, cfg)
            if reason:
                decided.append(({**r, "filter": {"kept": False, "reason": reason, "stage": "cheap"}}, reason))
            else:
                to_score.append(r)
        if to_score and llm is not None:
            pairs, where = [], []
            for j, r in enumerate(to_score):
                for f in RECIPE_FIELDS[r["recipe"]]:
                    pairs.append((r["seed"], r[f]))
                    where.append((j, f))
            flat = score_pairs(llm, pairs)
            scores: list[dict] = [{} for _ in to_score]
            for (j, f), s in zip(where, flat):
                scores[j][f] = s
            for r, s in zip(to_score, scores):
                reason = decide(r, s, cfg)
                decided.append(({**r, "scores": s, "filter": {"kept": reason is None, "reason": reason, "stage": "llm",
                                                              "scorer": llm.spec}}, reason))
        else:
            decided += [({**r, "filter": {"kept": True, "reason": None, "stage": "cheap"}}, None) for r in to_score]
        kept_file.append(r for r, reason in decided if reason is None)
        dropped_file.append(r for r, reason in decided if reason is not None)
        logger.info("filtered %d/%d records", min(start + cfg.chunk_size, len(pending)), len(pending))
    report = filter_report(out, cfg)
    report["seconds_this_run"] = round(time.perf_counter() - started, 1)
    atomic_write_json(report_path(out), report)
    return report


def filter_report(out: Path, cfg: FilterConfig) -> dict:
    kept, dropped = read_jsonl(out), read_jsonl(dropped_path(out))
    reasons = Counter(r["filter"]["reason"] for r in dropped)
    total = len(kept) + len(dropped)
    examples = {reason: [{k: r.get(k) for k in ("seed", "positive", "intermediate", "negative", "scores") if k in r}
                         for r in dropped if r["filter"]["reason"] == reason][:3] for reason in reasons}
    return {"input": cfg.input, "out": str(out), "total": total, "kept": len(kept), "dropped": len(dropped),
            "kept_fraction": round(len(kept) / total, 4) if total else None, "dropped_by_reason": dict(reasons),
            "examples_dropped": examples,
            "examples_kept": [{k: r.get(k) for k in ("seed", "positive", "intermediate", "negative", "scores") if k in r}
                              for r in kept[:5]],
            "config": asdict(cfg)}
