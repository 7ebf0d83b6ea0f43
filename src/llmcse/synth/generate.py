"""``llmcse generate``: an LLM writes NLI triplets or 3-level STS records from seed sentences.

Work goes in chunks of seeds. For each chunk every missing field of every seed is asked
for in one batched call; outputs are cleaned and checked (``checks.py``); rejected fields
are asked again with a new sample, up to ``max_attempts``. Finished records are appended
durably (``AppendOnlyJsonl``): kept ones to ``--out``, seeds that never produced a usable
record to ``<out>.rejected.jsonl``. A rerun skips every seed found in either file, so an
interrupted run continues with nothing lost and nothing duplicated.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from llmcse.errors import DataFormatError, LlmcseError
from llmcse.llm.base import LLM, SamplingParams, redact_spec
from llmcse.llm.openai_http import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from llmcse.synth.checks import SENTENCE_FIELDS, check_output, clean_output
from llmcse.synth.prompts import PromptTemplate, load_template
from llmcse.synth.seeds import read_seeds, seed_id
from llmcse.utils.io import atomic_write_json
from llmcse.utils.jsonl import AppendOnlyJsonl

logger = logging.getLogger(__name__)


@dataclass
class GenerateConfig:
    recipe: str = "nli"  # nli | sts3, or a template .toml path
    seeds: str = ""  # seed file (.txt one per line, .jsonl, .tsv)
    llm: str = "hf:SmolLM2-135M-Instruct"
    out: str = "generated.jsonl"
    n: int | None = None  # number of seeds to use (first n usable, unique ones)
    max_new_tokens: int = 48
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 1234  # base sampling seed; each chunk and attempt derives its own
    max_attempts: int = 3  # tries per field before the seed is rejected
    chunk_size: int = 64  # seeds per durable write
    max_length_ratio: float = 3.0
    min_seed_words: int = 4
    max_seed_words: int = 64
    request_timeout: float = DEFAULT_TIMEOUT  # openai: seconds per request attempt
    max_retries: int = DEFAULT_MAX_RETRIES  # openai: further attempts after a transport/protocol failure


def rejected_path(out: Path) -> Path:
    return out.with_name(out.stem + ".rejected.jsonl")


def summary_path(out: Path) -> Path:
    return out.with_name(out.stem + ".summary.json")


def identity_path(out: Path) -> Path:
    return out.with_name(out.stem + ".identity.json")


IDENTITY_KEYS = ("recipe", "prompt_id", "prompt_version", "generator", "sampling")


def _check_identity(out: Path, template: PromptTemplate, generator: str, sampling: dict) -> None:
    """One output, one job: a rerun into ``out`` continues it only with the same recipe, prompt, LLM and
    sampling (else nli and sts3 records, or two models' records, would mix under one summary)."""
    from llmcse.utils.safety import check_identity, first_record

    identity = {"recipe": template.recipe, "prompt_id": template.id, "prompt_version": template.version,
                "generator": generator, "sampling": sampling}
    legacy = None
    if not identity_path(out).exists():  # an output made before identity files: its records say what made it
        first = first_record(out) or first_record(rejected_path(out))
        legacy = {k: first.get(k) for k in IDENTITY_KEYS} if first else None
    shards = out.with_name(out.name + ".shards")  # --executor ray's work
    check_identity(out, identity_path(out), identity,
                   [p for p in (out, rejected_path(out), summary_path(out), identity_path(out), shards) if p.exists()],
                   legacy)


def _generate_chunk(llm: LLM, template: PromptTemplate, seeds: list[str], cfg: GenerateConfig, chunk_index: int):
    """Fill every field of every seed, retrying rejected fields. Returns per-seed results."""
    field_names = list(template.fields)
    accepted: list[dict[str, str]] = [{} for _ in seeds]
    attempts: list[Counter] = [Counter() for _ in seeds]
    rejections: list[Counter] = [Counter() for _ in seeds]
    last_reason: list[dict[str, str]] = [{} for _ in seeds]
    for attempt in range(cfg.max_attempts):
        todo = [(i, f) for i in range(len(seeds)) for f in field_names if f not in accepted[i]]
        if not todo:
            break
        params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                                seed=cfg.seed + 7919 * chunk_index + 104729 * attempt, stop=("\n",))
        prompts = [template.fields[f].messages(seeds[i], template.system) for i, f in todo]
        outputs = llm.generate(prompts, params)
        for (i, f), raw in zip(todo, outputs):
            attempts[i][f] += 1
            text = clean_output(raw if isinstance(raw, str) else "")
            others = tuple(accepted[i].get(o, "") for o in field_names if o != f)
            reason = check_output(text, seeds[i], instruction=template.fields[f].instruction,
                                  demo_texts=template.demo_texts, other_fields=others,
                                  max_length_ratio=cfg.max_length_ratio,
                                  require_sentence=f in SENTENCE_FIELDS)
            if reason is None:
                accepted[i][f] = text
            else:
                rejections[i][reason] += 1
                last_reason[i][f] = reason
    return accepted, attempts, rejections, last_reason


def chunk_records(llm: LLM, template: PromptTemplate, chunk: list[str], cfg: GenerateConfig, chunk_index: int,
                  generator: str, sampling: dict) -> tuple[list[dict], list[dict], Counter]:
    """(kept records, rejected records, field rejections by reason) of one chunk of seeds."""
    accepted, attempts, rejections, last_reason = _generate_chunk(llm, template, chunk, cfg, chunk_index)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    kept, rejected, reasons = [], [], Counter()
    for i, seed in enumerate(chunk):
        reasons.update(rejections[i])
        record = {"id": seed_id(seed), "recipe": template.recipe, "seed": seed,
                  **{f: accepted[i].get(f) for f in template.fields},
                  "generator": generator, "prompt_id": template.id, "prompt_version": template.version,
                  "sampling": {**sampling, "seed": cfg.seed}, "attempts": dict(attempts[i]),
                  "rejections": dict(rejections[i]), "created": now}
        if len(accepted[i]) == len(template.fields):
            kept.append(record)
        else:
            record["reason"] = {f: last_reason[i][f] for f in template.fields if f not in accepted[i]}
            rejected.append(record)
    return kept, rejected, reasons


def sampling_of(cfg: GenerateConfig) -> dict:
    return {k: getattr(cfg, k) for k in ("max_new_tokens", "temperature", "top_p", "max_attempts")}


def run_generate(cfg: GenerateConfig, llm: LLM | None = None, show_progress_bar: bool | None = None, *,
                 executor: str | None = None, ray_address: str | None = None, actors: int | None = None) -> dict:
    """Generate records for the seeds not yet done; return the summary (also written to disk).

    ``executor="ray"``: the seeds are cut into fixed shards (``<out>.shards/``) that ``actors`` Ray
    actors generate, each loading the LLM once (``llmcse.synth.scaleout``); the records are then
    appended to the output in seed order, as one process would have written them. ``None`` (all
    three): the current ``llmcse.utils.executor.using(...)`` scope's settings, else this process.
    """
    from llmcse.llm import load_llm, transport_options
    from llmcse.utils.executor import resolve
    from llmcse.utils.progress import progress_enabled

    executor, ray_address, actors = resolve(executor, ray_address, actors)
    template = load_template(cfg.recipe)
    out = Path(cfg.out)
    if cfg.n is not None and cfg.n < 1:  # seeds[:-2] would silently drop the last two
        raise LlmcseError(f"n must be >= 1 (the number of seeds to use), got {cfg.n}")
    seeds, skipped = read_seeds(cfg.seeds, min_words=cfg.min_seed_words, max_words=cfg.max_seed_words)
    if not seeds:  # checked before any output file exists: "0 kept of 0" is no result
        why = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "the file has no text lines"
        raise DataFormatError(cfg.seeds, None, f"no usable seeds ({why}); a seed needs "
                              f"{cfg.min_seed_words}-{cfg.max_seed_words} words of text")
    if cfg.n is not None:
        seeds = seeds[: cfg.n]
    kept_file, rejected_file = AppendOnlyJsonl(out), AppendOnlyJsonl(rejected_path(out))
    done = {r["seed"] for r in kept_file.read()} | {r["seed"] for r in rejected_file.read()}
    pending = [s for s in seeds if s not in done]
    logger.info("%d seeds (%d already done, %d to generate); recipe %s, template %s v%d",
                len(seeds), len(seeds) - len(pending), len(pending), template.recipe, template.id, template.version)
    if executor == "ray":
        run = _generate_on_ray(cfg, template, seeds, done, llm, ray_address=ray_address, actors=actors,
                               show_progress_bar=show_progress_bar)
        return _write_summary(cfg, out, template, skipped, run)

    llm = llm or load_llm(cfg.llm, **transport_options(cfg.llm, cfg.request_timeout, cfg.max_retries))
    generator = redact_spec(llm.spec)  # saved in every record: never with credentials
    sampling = sampling_of(cfg)
    _check_identity(out, template, generator, {**sampling, "seed": cfg.seed})
    started, tokens_before = time.perf_counter(), llm.stats.completion_tokens
    run_rejections: Counter = Counter()
    kept_now = rejected_now = 0

    from tqdm.auto import tqdm

    bar = tqdm(total=len(pending), unit="seed", disable=not progress_enabled(show_progress_bar))
    for chunk_start in range(0, len(pending), cfg.chunk_size):
        chunk = pending[chunk_start:chunk_start + cfg.chunk_size]
        chunk_index = (len(seeds) - len(pending) + chunk_start) // cfg.chunk_size
        kept, rejected, reasons = chunk_records(llm, template, chunk, cfg, chunk_index, generator, sampling)
        run_rejections.update(reasons)
        kept_file.append(kept)
        rejected_file.append(rejected)
        kept_now += len(kept)
        rejected_now += len(rejected)
        bar.update(len(chunk))
        seconds = time.perf_counter() - started
        bar.set_postfix(kept=kept_now, tok_s=f"{(llm.stats.completion_tokens - tokens_before) / max(seconds, 1e-9):.0f}")
    bar.close()

    seconds = time.perf_counter() - started
    return _write_summary(cfg, out, template, skipped, {
        "seeds_processed": len(pending), "kept": kept_now, "rejected": rejected_now,
        "field_rejections": dict(run_rejections), "seconds": round(seconds, 1),
        "completion_tokens": llm.stats.completion_tokens - tokens_before,
        "tokens_per_s": round((llm.stats.completion_tokens - tokens_before) / seconds, 1) if seconds else None,
        "records_per_s": round(len(pending) / seconds, 2) if seconds else None,
    })


def _write_summary(cfg: GenerateConfig, out: Path, template: PromptTemplate, skipped: Counter, this_run: dict) -> dict:
    summary = summarize(out, template, skipped)
    summary["this_run"] = this_run
    summary["config"] = {**asdict(cfg), "llm": redact_spec(cfg.llm)}
    atomic_write_json(summary_path(out), summary)
    return summary


# --- --executor ray: the seeds in fixed shards, one Ray actor per LLM (llmcse.synth.scaleout) ------------

class GenerateShardWorker:
    """Generates the records of one shard of seeds per call, chunk by chunk as ``run_generate`` does
    (same chunks, same chunk seeds), appending each chunk to the shard's file."""

    def __init__(self, cfg: GenerateConfig, source):
        self.cfg, self.llm = cfg, source()  # the LLM loads here, once per actor
        self.template = load_template(cfg.recipe)
        self.generator = redact_spec(self.llm.spec)
        self.sampling = sampling_of(cfg)

    def __call__(self, task: dict) -> dict:
        from llmcse.synth.scaleout import open_shard_file

        file = open_shard_file(Path(task["path"]))
        have = {row["record"]["seed"] for row in file.read()} | set(task["done"])  # after a retry: go on
        tokens, items, size = self.llm.stats.completion_tokens, 0, self.cfg.chunk_size
        for offset in range(0, len(task["seeds"]), size):
            chunk = [s for s in task["seeds"][offset:offset + size] if s not in have]
            if chunk:
                kept, rejected, _ = chunk_records(self.llm, self.template, chunk, self.cfg,
                                                  (task["start"] + offset) // size, self.generator, self.sampling)
                file.append([{"kept": True, "record": r} for r in kept] + [{"kept": False, "record": r} for r in rejected])
                items += len(chunk)
        return {"items": items, "completion_tokens": self.llm.stats.completion_tokens - tokens}


def _generate_on_ray(cfg: GenerateConfig, template: PromptTemplate, seeds: list[str], done: set[str], llm: LLM | None,
                     *, ray_address: str | None, actors: int, show_progress_bar: bool | None = None) -> dict:
    """Generate the seeds not in ``done`` on Ray, append their records to the output files; ``this_run``."""
    import functools

    from llmcse.synth.scaleout import llm_source, run_on_ray, shard_folder, shard_rows
    from llmcse.utils.io import file_md5
    from llmcse.utils.shards import auto_shard_size, prepare_manifest

    out = Path(cfg.out)
    source = llm_source(llm, cfg.llm, cfg.request_timeout, cfg.max_retries, actors)
    sampling = {**sampling_of(cfg), "seed": cfg.seed}
    _check_identity(out, template, redact_spec(source.spec), sampling)
    folder = shard_folder(out)
    identity = {"kind": "llmcse-generate", "seeds_md5": file_md5(cfg.seeds), "n": cfg.n, "recipe": template.recipe,
                "prompt_id": template.id, "prompt_version": template.version, "generator": redact_spec(source.spec),
                "sampling": sampling, "chunk_size": cfg.chunk_size,
                "checks": [cfg.max_length_ratio, cfg.min_seed_words, cfg.max_seed_words]}
    # shards of whole chunks: each chunk (and its sampling seed) is the one a single process makes
    manifest = prepare_manifest(folder, identity, len(seeds), auto_shard_size(len(seeds), cfg.chunk_size), ".jsonl")
    written = shard_rows(folder, manifest)
    tasks = []
    for s in manifest["shards"]:
        part = seeds[s["start"]:s["end"]]
        have = {row["record"]["seed"] for row in written.get(s["index"], [])}
        if any(x not in done and x not in have for x in part):
            tasks.append({"index": s["index"], "path": str((folder / s["file"]).resolve()), "seeds": part,
                          "start": s["start"], "done": [x for x in part if x in done]})
    logger.info("%d of %d seed shards to generate on Ray", len(tasks), len(manifest["shards"]))
    provenance, stamp = run_on_ray(functools.partial(GenerateShardWorker, cfg, source), tasks, folder, source,
                                   ray_address, actors, show_progress_bar, "generate shards")
    by_seed = {row["record"]["seed"]: row for rows in shard_rows(folder, manifest).values() for row in rows}
    new = [by_seed[x] for x in seeds if x not in done and x in by_seed]  # seed order: as one process appends
    kept = [row["record"] for row in new if row["kept"]]
    rejected = [row["record"] for row in new if not row["kept"]]
    AppendOnlyJsonl(out).append(kept)
    AppendOnlyJsonl(rejected_path(out)).append(rejected)
    reasons: Counter = Counter()
    for row in new:
        reasons.update(row["record"].get("rejections", {}))
    seconds, tokens = stamp["wall_seconds"], sum(r.get("completion_tokens", 0) for r in provenance)
    return {"seeds_processed": len(new), "kept": len(kept), "rejected": len(rejected),
            "field_rejections": dict(reasons), "seconds": seconds, "completion_tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
            "records_per_s": round(len(new) / seconds, 2) if seconds else None, **stamp}


def summarize(out: Path, template: PromptTemplate, skipped: Counter | None = None) -> dict:
    """Totals over everything in the output files (so resumed runs add up)."""
    kept = AppendOnlyJsonl(out).read()
    rejected = AppendOnlyJsonl(rejected_path(out)).read()
    field_rejections: Counter = Counter()
    final_reasons: Counter = Counter()
    for r in kept + rejected:
        field_rejections.update(r.get("rejections", {}))
    for r in rejected:
        final_reasons.update(r.get("reason", {}).values())
    total = len(kept) + len(rejected)
    return {
        "out": str(out), "recipe": template.recipe, "prompt_id": template.id, "prompt_version": template.version,
        "seeds_done": total, "kept": len(kept), "rejected": len(rejected),
        "kept_fraction": round(len(kept) / total, 4) if total else None,
        "rejected_by_final_reason": dict(final_reasons),
        "field_rejections_by_reason": dict(field_rejections),
        "seeds_skipped": dict(skipped or {}),
    }
