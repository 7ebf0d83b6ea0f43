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
SCORINGS = ("yesno", "rating")


@dataclass
class FilterConfig:
    input: str = "generated.jsonl"
    out: str = "kept.jsonl"
    llm: str | None = "hf:SmolLM2-135M-Instruct"  # None: cheap checks only
    scoring: str = "yesno"  # yesno | rating (see the module docstring)
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
    if scoring not in SCORINGS:
        raise LlmcseError(f"unknown scoring {scoring!r}; choose one of {list(SCORINGS)}")
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


def score_chunk(chunk: list[dict], cfg: FilterConfig, llm: LLM | None, scorer: str | None) -> list[dict]:
    """The scores rows of one chunk of records: cheap check, then (if it passed and there is an LLM) scores."""
    rows = [{"id": r["id"], "scorer": scorer, "scoring": cfg.scoring, "cheap": cheap_check(r, cfg), "scores": None}
            for r in chunk]
    to_score = [(r, row) for r, row in zip(chunk, rows) if row["cheap"] is None and llm is not None]
    pairs = [(r["seed"], r[f]) for r, _ in to_score for f in RECIPE_FIELDS[r["recipe"]]]
    scores, method = score_pairs_with_method(llm, pairs, cfg.scoring) if pairs else ([], None)
    flat = iter(scores)
    for r, row in to_score:
        row["scores"] = {f: next(flat) for f in RECIPE_FIELDS[r["recipe"]]}
        row["method"] = method
    return rows


def run_filter(cfg: FilterConfig, llm: LLM | None = None, show_progress_bar: bool | None = None, *,
               executor: str | None = None, ray_address: str | None = None, actors: int | None = None) -> dict:
    """Score the records not yet scored, then decide every record; return the report (also written).

    ``executor="ray"``: the records are cut into fixed shards (``<out>.shards/``) that ``actors`` Ray
    actors score, each loading the scorer once (``llmcse.synth.scaleout``); their rows are appended
    to ``<out>.scores.jsonl`` in input order. ``None`` (all three): the current
    ``llmcse.utils.executor.using(...)`` scope's settings, else this process.
    """
    from llmcse.llm import load_llm, transport_options
    from llmcse.utils.executor import resolve
    from llmcse.utils.progress import progress_enabled

    executor, ray_address, actors = resolve(executor, ray_address, actors)
    in_path, out = Path(cfg.input), Path(cfg.out)
    records = read_jsonl(in_path)
    _validate(records, in_path)
    if cfg.scoring not in SCORINGS:
        raise LlmcseError(f"unknown scoring {cfg.scoring!r}; choose one of {list(SCORINGS)}")
    scorer = None if not cfg.llm else redact_spec(cfg.llm if llm is None else llm.spec)  # saved: no credentials
    scores_file = AppendOnlyJsonl(scores_path(out))
    # A scores row counts only for the scorer that made it: change the scorer and records are rescored.
    scored = {r["id"]: r for r in scores_file.read() if (r.get("scorer"), r.get("scoring")) == (scorer, cfg.scoring)}
    pending = [r for r in records if r["id"] not in scored]
    started = time.perf_counter()
    if executor == "ray" and pending:
        scores_file.append(_filter_on_ray(cfg, records, set(scored), llm, scorer, ray_address=ray_address,
                                          actors=actors, show_progress_bar=show_progress_bar))
        scored = {r["id"]: r for r in scores_file.read() if (r.get("scorer"), r.get("scoring")) == (scorer, cfg.scoring)}
        pending = []
    if pending and cfg.llm and llm is None:
        llm = load_llm(cfg.llm, **transport_options(cfg.llm, cfg.request_timeout, cfg.max_retries))
    bar = tqdm(total=len(records), initial=len(records) - len(pending), unit="rec", desc="filter",
               disable=not progress_enabled(show_progress_bar))
    for start in range(0, len(pending), cfg.chunk_size):
        chunk = pending[start:start + cfg.chunk_size]
        rows = score_chunk(chunk, cfg, llm, scorer)
        scores_file.append(rows)
        scored.update((row["id"], row) for row in rows)
        bar.update(len(chunk))
    bar.close()
    report = decide_all(records, scored, cfg, out)
    report["seconds_this_run"] = round(time.perf_counter() - started, 1)
    atomic_write_json(report_path(out), report)
    return report


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

    def __init__(self, cfg: FilterConfig, source, scorer: str | None):
        self.cfg, self.scorer = cfg, scorer
        self.llm = source() if source else None  # the scorer loads here, once per actor

    def __call__(self, task: dict) -> dict:
        from llmcse.synth.scaleout import open_shard_file

        file = open_shard_file(Path(task["path"]))
        have = {row["id"] for row in file.read()} | set(task["done"])  # after a retry: go on
        items, size = 0, self.cfg.chunk_size
        for offset in range(0, len(task["records"]), size):
            chunk = [r for r in task["records"][offset:offset + size] if r["id"] not in have]
            if chunk:
                file.append(score_chunk(chunk, self.cfg, self.llm, self.scorer))
                items += len(chunk)
        return {"items": items}


def _filter_on_ray(cfg: FilterConfig, records: list[dict], scored: set[str], llm: LLM | None, scorer: str | None, *,
                   ray_address: str | None, actors: int, show_progress_bar: bool | None = None) -> list[dict]:
    """Score the records whose id is not in ``scored`` on Ray; their scores rows, in input order."""
    import functools

    from llmcse.synth.scaleout import llm_source, run_on_ray, shard_folder, shard_rows
    from llmcse.utils.io import file_md5
    from llmcse.utils.shards import auto_shard_size, prepare_manifest

    out = Path(cfg.out)
    source = llm_source(llm, cfg.llm, cfg.request_timeout, cfg.max_retries, actors) if cfg.llm else None
    folder = shard_folder(out)
    identity = {"kind": "llmcse-filter", "input_md5": file_md5(cfg.input), "scorer": scorer, "scoring": cfg.scoring,
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
    run_on_ray(functools.partial(FilterShardWorker, cfg, source, scorer), tasks, folder, source, ray_address, actors,
               show_progress_bar, "filter shards")
    by_id = {row["id"]: row for rows in shard_rows(folder, manifest).values() for row in rows}
    return [by_id[r["id"]] for r in records if r["id"] not in scored and r["id"] in by_id]
