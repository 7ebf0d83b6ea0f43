"""``llmcse filter``: MultiCSR's pair-level refinement of generated records.

1. Cheap checks first (no LLM): word overlap of each generated text with its seed, since a
   "positive" sharing almost every word is a near copy and one sharing almost none has
   drifted off topic, while a contradiction normally keeps most of the seed's words.
2. LLM scoring second, on a 0-5 scale, one of two ways (``scoring``):
   - ``rating`` (MultiCSR): the LLM rates each (seed, generated) pair 0-5 with a rubric
     prompt; back ends with next-token probabilities give the expected rating over the digits.
     Where the probabilities come from is the ``scoring_method`` in the report: ``logprobs``
     (local transformers' logits, or a server's ``top_logprobs``), ``sampled-k8`` (a server that
     refuses or omits logprobs: the mean of 8 answers sampled at temperature 1, still graded, with
     a warning) or ``greedy`` (a back end without either: one digit at temperature 0).
   - ``yesno``: 5 x P("Yes") to "do the two sentences mean the same thing?". A small model
     cannot use a 6-point rubric: on 200 STS-B train pairs the bundled SmolLM2-135M's expected
     rating has Spearman 0.06 with the gold scores, its P(Yes) 0.38 (benchmarks/results/scorers.md).
   Or with an embedder instead of (or beside) the LLM:
   - ``cosine``: 5 x the cosine of the two texts under ``embedder`` (clipped at 0), MultiCSR's
     batch-level signal used per pair. With a small LLM it is the better judge: on a labelled probe
     the PromptEOL SmolLM2-135M cosine has Spearman 0.74 with STS-B train gold, SmolLM2's P(Yes)
     0.34 (benchmarks/results/judges.md).
   - ``yesno+cosine``: both, combined as 5 x the mean of their percentile ranks among this run's
     scores (all fields pooled, so "positive above negative" compares across them): no weights
     to fit, and the two judges' errors differ (SNLI ordering 0.85 vs 0.77 / 0.805 alone).
3. Rules (MultiCSR): keep if positive >= t_pos, negative <= t_neg and positive > negative;
   for sts3 also positive >= intermediate >= negative. A weak scorer's scores are compressed
   into a narrow band, so fixed thresholds keep all or nothing; ``quantile`` q instead sets
   t_pos to the q-quantile of this run's positive scores and t_neg to the (1-q)-quantile of
   its negative scores: scale-free, it drops the worst-scored fraction on each side.

Scores go to ``<out>.scores.jsonl`` as they are computed (append-only, so a killed run resumes
where it stopped); then every record is decided and ``--out`` (kept), ``<out>.dropped.jsonl``
and ``<out>.report.json`` are written whole, atomically. Scores and the decision are stored on
every record.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from llmcse.errors import DataFormatError, LlmcseError
from llmcse.llm.base import LLM, SamplingParams, redact_spec
from llmcse.llm.openai_http import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, LogprobsUnavailableError
from llmcse.synth.checks import normalize
from llmcse.synth.prompts import RECIPE_FIELDS
from llmcse.utils.io import atomic_write_json, atomic_write_text
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
SAME_MEANING = ("Sentence 1: {a}\nSentence 2: {b}\nDo the two sentences mean the same thing? "
                "Answer Yes or No.")  # no demos: with SmolLM2-135M they lowered Spearman (0.38 -> 0.28)
SCORINGS = ("yesno", "rating", "cosine", "yesno+cosine")
LLM_SCORINGS = ("yesno", "rating")  # the components an LLM computes; "cosine" is the embedder's


@dataclass
class FilterConfig:
    input: str = "generated.jsonl"
    out: str = "kept.jsonl"
    llm: str | None = "hf:SmolLM2-135M-Instruct"  # None: cheap checks only
    scoring: str = "yesno"  # yesno | rating | cosine | yesno+cosine (see the module docstring)
    embedder: str | None = None  # cosine scoring: any llmcse embedder spec, e.g. the model you will train
    t_pos: float = 3.0  # MultiCSR: keep positives scored >= 3
    t_neg: float = 3.0  # ... and negatives scored <= 3
    quantile: float | None = None  # set t_pos / t_neg from this run's score quantiles instead
    max_positive_overlap: float = 0.9  # word Jaccard with the seed above this: near copy
    min_positive_overlap: float = 0.2  # below this: the paraphrase drifted off topic
    min_negative_overlap: float = 0.1  # below this: an unrelated sentence, not a hard negative
    chunk_size: int = 128
    request_timeout: float = DEFAULT_TIMEOUT  # openai: seconds per request attempt
    max_retries: int = DEFAULT_MAX_RETRIES  # openai: further attempts after a transport/protocol failure


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


def yesno_messages(a: str, b: str) -> list[dict]:
    return [{"role": "user", "content": SAME_MEANING.format(a=a, b=b)}]


# Fallback for servers without logprobs: answers sampled per pair at temperature 1. Their mean is a
# graded score (k + 1 levels) that estimates the same expectation as the logprobs path.
SAMPLES = 8
SAMPLE_SEED = 1234
_warned_fallback: set[str] = set()


def score_pairs(llm: LLM, pairs: list[tuple[str, str]], scoring: str = "yesno") -> list[float | None]:
    """0-5 similarity per pair; None where the LLM's answer held no rating."""
    return score_pairs_with_method(llm, pairs, scoring)[0]


def score_pairs_with_method(llm: LLM, pairs: list[tuple[str, str]],
                            scoring: str = "yesno") -> tuple[list[float | None], str]:
    """(scores, method): ``logprobs`` (expected score from next-token probabilities), ``sampled-k8``
    (the server gives no logprobs: mean of 8 sampled answers) or ``greedy`` (one answer)."""
    if scoring not in LLM_SCORINGS:
        raise LlmcseError(f"unknown LLM scoring {scoring!r}; choose one of {list(LLM_SCORINGS)}")
    if scoring == "yesno":
        prompts = [yesno_messages(a, b) for a, b in pairs]
        choices, values, max_new_tokens, parse = ["Yes", "No"], [5.0, 0.0], 3, _yes_or_no
    else:
        prompts = [score_messages(a, b) for a, b in pairs]
        choices, values, max_new_tokens, parse = DIGITS, [float(d) for d in DIGITS], 4, _digit
    if hasattr(llm, "choice_probabilities"):
        try:
            rows = llm.choice_probabilities(prompts, choices)
        except LogprobsUnavailableError as e:
            if llm.spec not in _warned_fallback:
                _warned_fallback.add(llm.spec)
                logger.warning("%s; scoring falls back to the mean of %d answers sampled at temperature 1 per pair "
                               "(graded, but noisier; scoring_method sampled-k%d in the report)", e, SAMPLES, SAMPLES)
            return _sampled_scores(llm, prompts, max_new_tokens, parse), f"sampled-k{SAMPLES}"
        return [None if row is None else round(sum(v * p for v, p in zip(values, row)), 4) for row in rows], "logprobs"
    outputs = llm.generate(prompts, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, top_p=1.0))
    return [parse(text) for text in outputs], "greedy"


def cosine_scores(model, pairs: list[tuple[str, str]]) -> list[float]:
    """0-5 per pair: 5 x the cosine of the two texts' embeddings, clipped at 0. Each distinct text
    is embedded once (a seed is in every one of its record's pairs)."""
    texts = list(dict.fromkeys(t for pair in pairs for t in pair))
    row = {t: i for i, t in enumerate(texts)}
    emb = model.encode(texts, normalize_embeddings=True, batch_size=32, show_progress_bar=False)  # (texts, dim)
    return [round(5.0 * max(0.0, float(emb[row[a]] @ emb[row[b]])), 4) for a, b in pairs]


def _sampled_scores(llm: LLM, prompts: list, max_new_tokens: int, parse) -> list[float | None]:
    """Mean of SAMPLES answers per prompt, sampled at temperature 1 (each request its own seed);
    answers without a rating are left out, a prompt with none at all scores None."""
    many = [p for p in prompts for _ in range(SAMPLES)]
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=1.0, top_p=1.0, seed=SAMPLE_SEED)
    outputs = llm.generate(many, params)
    scores, unanimous = [], 0
    for i in range(len(prompts)):
        values = [v for v in (parse(t) for t in outputs[i * SAMPLES:(i + 1) * SAMPLES]) if v is not None]
        scores.append(round(sum(values) / len(values), 4) if values else None)
        unanimous += len(set(outputs[i * SAMPLES:(i + 1) * SAMPLES])) == 1
    if len(prompts) >= 4 and unanimous == len(prompts):
        # transformers serve 5.23 ignores `temperature` unless the model folder's generation_config
        # says do_sample: every "sampled" answer is then the greedy one and every score 0 or 5
        logger.warning("%s gave the same answer to all %d samples of every one of %d pairs: the server seems to "
                       "ignore temperature (for transformers serve: set \"do_sample\": true in the model folder's "
                       "generation_config.json); these scores are not graded", llm.spec, SAMPLES, len(prompts))
    return scores


def _yes_or_no(text: str | None) -> float | None:
    word = (text or "").strip().lower()
    return 5.0 if word.startswith("yes") else 0.0 if word.startswith("no") else None


def _digit(text: str | None) -> float | None:
    match = _DIGIT.search(text or "")
    return float(match.group()) if match else None


def resolve_thresholds(cfg: FilterConfig, scores: list[dict]) -> tuple[float, float]:
    """(t_pos, t_neg): fixed, or this run's quantiles when ``cfg.quantile`` is set."""
    if cfg.quantile is None:
        return cfg.t_pos, cfg.t_neg
    if not 0.0 <= cfg.quantile < 0.5:
        raise LlmcseError(f"quantile must be in [0, 0.5), got {cfg.quantile}")
    pos = [s["positive"] for s in scores if s.get("positive") is not None]
    neg = [s["negative"] for s in scores if s.get("negative") is not None]
    if not pos or not neg:
        return cfg.t_pos, cfg.t_neg
    import numpy as np  # lazily: `llmcse --help` imports this module

    return float(np.quantile(pos, cfg.quantile)), float(np.quantile(neg, 1.0 - cfg.quantile))


def decide(record: dict, scores: dict[str, float | None], cfg: FilterConfig,
           thresholds: tuple[float, float] | None = None) -> str | None:
    """MultiCSR's thresholds; the reason a record is dropped, or None to keep it."""
    t_pos, t_neg = thresholds or (cfg.t_pos, cfg.t_neg)
    if any(v is None for v in scores.values()):
        return "score_unparseable"
    pos, neg = scores["positive"], scores["negative"]
    if pos < t_pos:
        return "positive_score_low"
    if neg > t_neg:
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


def scores_path(out: Path) -> Path:
    return out.with_name(out.stem + ".scores.jsonl")


def score_chunk(chunk: list[dict], cfg: FilterConfig, model, scorer: str | None,
                scoring: str | None = None) -> list[dict]:
    """The scores rows of one chunk of records for one scoring (``cfg.scoring`` or one component of
    it): cheap check, then (if it passed and there is a model: the LLM, or the embedder for
    ``cosine``) scores."""
    scoring = scoring or cfg.scoring
    rows = [{"id": r["id"], "scorer": scorer, "scoring": scoring, "cheap": cheap_check(r, cfg), "scores": None}
            for r in chunk]
    to_score = [(r, row) for r, row in zip(chunk, rows) if row["cheap"] is None and model is not None]
    pairs = [(r["seed"], r[f]) for r, _ in to_score for f in RECIPE_FIELDS[r["recipe"]]]
    if not pairs:
        scores, method = [], None
    elif scoring == "cosine":
        scores, method = cosine_scores(model, pairs), "cosine"
    else:
        scores, method = score_pairs_with_method(model, pairs, scoring)
    flat = iter(scores)
    for r, row in to_score:
        row["scores"] = {f: next(flat) for f in RECIPE_FIELDS[r["recipe"]]}
        row["method"] = method
    return rows


def check_scoring(cfg: FilterConfig) -> list[str]:
    """The scoring's components, after checking that what they need is configured."""
    if cfg.scoring not in SCORINGS:
        raise LlmcseError(f"unknown scoring {cfg.scoring!r}; choose one of {list(SCORINGS)}")
    components = cfg.scoring.split("+")
    if "cosine" in components and not cfg.embedder:
        raise LlmcseError(f"scoring {cfg.scoring!r} needs an embedder: --embedder MODEL (e.g. the model you will "
                          "train: prompteol:SmolLM2-135M-Instruct, or all-MiniLM-L6-v2)")
    if len(components) > 1 and not cfg.llm:
        raise LlmcseError(f"scoring {cfg.scoring!r} needs an LLM for its {components[0]!r} part (--llm); "
                          "--scoring cosine needs none")
    return components


def run_filter(cfg: FilterConfig, llm: LLM | None = None, show_progress_bar: bool | None = None, *,
               executor: str | None = None, ray_address: str | None = None, actors: int | None = None) -> dict:
    """Score the records not yet scored, then decide every record; return the report (also written).

    Each component of the scoring (``yesno+cosine``: the LLM's yes/no, then the embedder's cosine)
    is scored and stored on its own, so a run resumes per component and reuses rows a run with
    one component already wrote.

    ``executor="ray"``: the records are cut into fixed shards (``<out>.shards/``) that ``actors`` Ray
    actors score, each loading the scorer once (``llmcse.synth.scaleout``); their rows are appended
    to ``<out>.scores.jsonl`` in input order. ``None`` (all three): the current
    ``llmcse.utils.executor.using(...)`` scope's settings, else this process.
    """
    from llmcse.utils.executor import resolve

    executor, ray_address, actors = resolve(executor, ray_address, actors)
    in_path, out = Path(cfg.input), Path(cfg.out)
    records = read_jsonl(in_path)
    _validate(records, in_path)
    components = check_scoring(cfg)
    scores_file = AppendOnlyJsonl(scores_path(out))
    started = time.perf_counter()
    by_component = {}
    for component in components:
        by_component[component] = _score_component(
            cfg, records, component, llm if component in LLM_SCORINGS else None, scores_file, show_progress_bar,
            executor=executor, ray_address=ray_address, actors=actors)
    scored = combine_components(records, by_component, cfg)
    report = decide_all(records, scored, cfg, out)
    report["seconds_this_run"] = round(time.perf_counter() - started, 1)
    atomic_write_json(report_path(out), report)
    return report


def _scorer_name(cfg: FilterConfig, component: str, llm: LLM | None) -> str | None:
    """Who made a scores row (saved: no credentials). A row counts only for its scorer and scoring:
    change either and records are rescored."""
    if component == "cosine":
        return redact_spec(cfg.embedder)
    return None if not cfg.llm else redact_spec(cfg.llm if llm is None else llm.spec)


def _load_scorer(cfg: FilterConfig, component: str):
    if component == "cosine":
        from llmcse.embed.models import load_embedder

        return load_embedder(cfg.embedder)
    from llmcse.llm import load_llm, transport_options

    return load_llm(cfg.llm, **transport_options(cfg.llm, cfg.request_timeout, cfg.max_retries))


def _score_component(cfg: FilterConfig, records: list[dict], component: str, model, scores_file: AppendOnlyJsonl,
                     show_progress_bar: bool | None, *, executor: str, ray_address: str | None,
                     actors: int) -> dict[str, dict]:
    """Every record's scores row for one component: stored rows, then the missing ones scored and appended."""
    from llmcse.utils.progress import progress_enabled

    scorer = _scorer_name(cfg, component, model)
    cheap = {r["id"]: cheap_check(r, cfg) for r in records}

    def stored() -> dict[str, dict]:
        # a row counts for its scorer and scoring, and only while its cheap verdict is today's: with other
        # overlap settings a record that was cut before scoring must now be scored (and one that now fails
        # is decided by the check)
        return {r["id"]: r for r in scores_file.read() if (r.get("scorer"), r.get("scoring")) == (scorer, component)
                and r["id"] in cheap and r.get("cheap") == cheap[r["id"]]}

    scored = stored()
    pending = [r for r in records if r["id"] not in scored]
    if executor == "ray" and pending:
        scores_file.append(_filter_on_ray(cfg, records, set(scored), model, scorer, component, ray_address=ray_address,
                                          actors=actors, show_progress_bar=show_progress_bar))
        scored = stored()
        pending = []
    if pending and scorer is not None and model is None:
        model = _load_scorer(cfg, component)
    bar = tqdm(total=len(records), initial=len(records) - len(pending), unit="rec",
               desc="filter" if component == cfg.scoring else f"filter ({component})",
               disable=not progress_enabled(show_progress_bar))
    for start in range(0, len(pending), cfg.chunk_size):
        chunk = pending[start:start + cfg.chunk_size]
        rows = score_chunk(chunk, cfg, model, scorer, component)
        scores_file.append(rows)
        scored.update((row["id"], row) for row in rows)
        bar.update(len(chunk))
    bar.close()
    return scored


def combine_components(records: list[dict], by_component: dict[str, dict[str, dict]],
                       cfg: FilterConfig) -> dict[str, dict]:
    """One scores row per record. One component: its rows as they are. Several: per component, each
    score's percentile rank among all of this run's scores of that component (every field pooled),
    and the record's score per field = 5 x the mean of those ranks; the parts stay in ``components``."""
    if len(by_component) == 1:
        return next(iter(by_component.values()))
    from scipy.stats import rankdata  # lazily: `llmcse --help` imports this module

    ranks: dict[str, dict[tuple[str, str], float]] = {}
    for component, rows in by_component.items():
        cells = [((r["id"], f), v) for r in records if (s := rows[r["id"]]["scores"])
                 for f, v in s.items() if v is not None]
        pct = rankdata([v for _, v in cells]) / len(cells) if cells else []
        ranks[component] = {cell: float(p) for (cell, _), p in zip(cells, pct)}
    merged = {}
    for r in records:
        parts = {c: rows[r["id"]] for c, rows in by_component.items()}
        first = next(iter(parts.values()))
        row = {"id": r["id"], "scorer": "+".join(str(p["scorer"]) for p in parts.values()), "scoring": cfg.scoring,
               "cheap": first["cheap"], "scores": None,
               "method": "+".join(str(p.get("method")) for p in parts.values())}
        if first["cheap"] is None:
            fields = RECIPE_FIELDS[r["recipe"]]
            row["components"] = {c: p["scores"] for c, p in parts.items()}
            row["scores"] = {f: None if any((r["id"], f) not in ranks[c] for c in parts)
                             else round(5.0 * sum(ranks[c][(r["id"], f)] for c in parts) / len(parts), 4)
                             for f in fields}
        merged[r["id"]] = row
    return merged


def decide_all(records: list[dict], scored: dict[str, dict], cfg: FilterConfig, out: Path) -> dict:
    """Decide every record from its stored scores; write kept, dropped and the report whole."""
    thresholds = resolve_thresholds(cfg, [scored[r["id"]]["scores"] for r in records
                                          if scored[r["id"]]["scores"] is not None])
    kept, dropped = [], []
    for r in records:
        row = scored[r["id"]]
        if row["cheap"] is not None:
            reason, info = row["cheap"], {"stage": "cheap"}
        elif row["scores"] is None:  # no scorer: cheap checks only
            reason, info = None, {"stage": "cheap"}
        else:
            reason, info = decide(r, row["scores"], cfg, thresholds), {"stage": "llm", "scorer": row["scorer"],
                                                                        "scoring": row["scoring"],
                                                                        "scoring_method": row.get("method")}
        record = {**r, **({"scores": row["scores"]} if row["scores"] is not None else {}),
                  **({"score_components": row["components"]} if row.get("components") else {}),
                  "filter": {"kept": reason is None, "reason": reason, **info}}
        (kept if reason is None else dropped).append(record)
    _write_jsonl(out, kept)
    _write_jsonl(dropped_path(out), dropped)
    return filter_report(kept, dropped, cfg, out, thresholds)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _fields(r: dict) -> dict:
    return {k: r.get(k) for k in ("seed", "positive", "intermediate", "negative", "scores") if k in r}


def filter_report(kept: list[dict], dropped: list[dict], cfg: FilterConfig, out: Path,
                  thresholds: tuple[float, float]) -> dict:
    reasons = Counter(r["filter"]["reason"] for r in dropped)
    total = len(kept) + len(dropped)
    score_stats = {}
    scored = [r["scores"] for r in kept + dropped if r.get("scores")]
    for f in ("positive", "intermediate", "negative"):
        vals = [s[f] for s in scored if s.get(f) is not None]
        if vals:
            import numpy as np  # lazily: `llmcse --help` imports this module

            score_stats[f] = {"mean": round(float(np.mean(vals)), 3),
                              "quantiles_10_50_90": [round(float(q), 3) for q in np.quantile(vals, [0.1, 0.5, 0.9])]}
    methods = sorted({r["filter"].get("scoring_method") or "unknown" for r in kept + dropped
                      if r["filter"]["stage"] == "llm"})
    return {"input": cfg.input, "out": str(out), "total": total, "kept": len(kept), "dropped": len(dropped),
            # logprobs | sampled-k8 | greedy (module docstring); several when a resumed run changed server
            "scoring_method": "+".join(methods) if methods else None,
            "kept_fraction": round(len(kept) / total, 4) if total else None, "dropped_by_reason": dict(reasons),
            "thresholds": {"t_pos": round(thresholds[0], 4), "t_neg": round(thresholds[1], 4),
                           "from": "unused: no scorer, cheap checks only" if not cfg.llm else
                           f"quantile {cfg.quantile}" if cfg.quantile is not None else "fixed"},
            "score_stats": score_stats,
            "examples_dropped": {reason: [_fields(r) for r in dropped if r["filter"]["reason"] == reason][:3]
                                 for reason in reasons},
            "examples_kept": [_fields(r) for r in kept[:5]],
            "config": {**asdict(cfg), "llm": redact_spec(cfg.llm)}}


# --- --executor ray: the records in fixed shards, one Ray actor per scorer (llmcse.synth.scaleout) --------

class FilterShardWorker:
    """Scores one shard of records per call, chunk by chunk as ``run_filter`` does, appending each
    chunk's scores rows to the shard's file."""

    def __init__(self, cfg: FilterConfig, source, scorer: str | None, scoring: str | None = None):
        self.cfg, self.scorer, self.scoring = cfg, scorer, scoring or cfg.scoring
        # the scorer loads here, once per actor: the LLM, or the embedder for cosine
        self.model = _load_scorer(cfg, "cosine") if self.scoring == "cosine" else source() if source else None

    def __call__(self, task: dict) -> dict:
        from llmcse.synth.scaleout import open_shard_file

        file = open_shard_file(Path(task["path"]))
        have = {row["id"] for row in file.read()} | set(task["done"])  # after a retry: go on
        items, size = 0, self.cfg.chunk_size
        for offset in range(0, len(task["records"]), size):
            chunk = [r for r in task["records"][offset:offset + size] if r["id"] not in have]
            if chunk:
                file.append(score_chunk(chunk, self.cfg, self.model, self.scorer, self.scoring))
                items += len(chunk)
        return {"items": items}


def _filter_on_ray(cfg: FilterConfig, records: list[dict], scored: set[str], llm: LLM | None, scorer: str | None,
                   scoring: str | None = None, *, ray_address: str | None, actors: int,
                   show_progress_bar: bool | None = None) -> list[dict]:
    """Score the records whose id is not in ``scored`` on Ray for ``scoring`` (``cfg.scoring`` or one
    of its components); their scores rows, in input order."""
    import functools

    from llmcse.synth.scaleout import llm_source, run_on_ray, shard_folder, shard_rows
    from llmcse.utils.io import file_md5
    from llmcse.utils.shards import auto_shard_size, prepare_manifest

    out, scoring = Path(cfg.out), scoring or cfg.scoring
    uses_llm = bool(cfg.llm) and scoring in LLM_SCORINGS
    source = llm_source(llm, cfg.llm, cfg.request_timeout, cfg.max_retries, actors) if uses_llm else None
    folder = shard_folder(out)
    identity = {"kind": "llmcse-filter", "input_md5": file_md5(cfg.input), "scorer": scorer, "scoring": scoring,
                "chunk_size": cfg.chunk_size, "cheap": [cfg.max_positive_overlap, cfg.min_positive_overlap,
                                                        cfg.min_negative_overlap]}
    manifest = prepare_manifest(folder, identity, len(records), auto_shard_size(len(records), cfg.chunk_size), ".jsonl")
    written = shard_rows(folder, manifest)
    tasks = []
    for s in manifest["shards"]:
        part = records[s["start"]:s["end"]]
        have = {row["id"] for row in written.get(s["index"], [])}
        if any(r["id"] not in scored and r["id"] not in have for r in part):
            tasks.append({"index": s["index"], "path": str((folder / s["file"]).resolve()), "records": part,
                          "done": [r["id"] for r in part if r["id"] in scored]})
    logger.info("%d of %d record shards to score on Ray", len(tasks), len(manifest["shards"]))
    run_on_ray(functools.partial(FilterShardWorker, cfg, source, scorer, scoring), tasks, folder, source, ray_address, actors,
               show_progress_bar, "filter shards")
    by_id = {row["id"]: row for rows in shard_rows(folder, manifest).values() for row in rows}
    return [by_id[r["id"]] for r in records if r["id"] not in scored and r["id"] in by_id]
