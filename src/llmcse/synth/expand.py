"""``llmcse expand``: an LLM writes synthetic queries and keywords for every document of a corpus.

For each document (title + text, truncated by tokens): the query prompt is sampled until N
distinct usable queries exist (each answer's first line is one query), the keyword prompt once
(its answer split on commas, up to K). Output is never trusted: empty, over-long, echoed,
non-Latin or duplicate texts are rejected and counted by reason; a query prompt is retried up to
``max_attempts`` rounds. Records ``{"_id", "queries", "keywords", provenance...}`` are appended
durably per chunk, so an interrupted run continues with nothing lost and nothing duplicated.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from llmcse.data.loaders import load_beir_corpus
from llmcse.data.records import Doc
from llmcse.llm.base import LLM, SamplingParams, redact_spec
from llmcse.llm.openai_http import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from llmcse.synth.checks import clean_output, leaks_demo, normalize, wrong_language
from llmcse.synth.prompts import PromptTemplate, load_template
from llmcse.utils.io import atomic_write_json, atomic_write_text, file_md5
from llmcse.utils.jsonl import AppendOnlyJsonl

logger = logging.getLogger(__name__)

MAX_QUERY_WORDS = 32
MAX_KEYWORD_WORDS = 6
# Words a keyword answer uses to talk about the task instead of the document. SmolLM2-135M answered
# ArguAna's keyword prompt with "the document contains multiple keywords:" (314x), "the document is:"
# (280x), "separated by commas" (183x) ...; embedded as keywords, such phrases make every document alike.
TASK_WORDS = frozenset({"document", "documents", "keyword", "keywords", "comma", "commas", "separated"})
FUNCTION_WORDS = frozenset(
    "a an the and or but nor of to in on at by for with from as is are was were be been this that these those "
    "it its their his her our your my some any all no not so such than then there here which who what including".split())


@dataclass
class ExpandConfig:
    corpus: str = "corpus.jsonl"  # BEIR corpus
    out: str = "expansions.jsonl"
    llm: str = "hf:SmolLM2-135M-Instruct"
    queries: int = 3  # synthetic queries per document
    keywords: int = 5  # keywords per document (at most)
    prompts: str = "expand"  # shipped template name or a .toml path
    max_doc_tokens: int = 256  # documents are cut to this many tokens of the LLM's tokenizer
    # token budgets: a query over ~24 words is rejected anyway, and a 135M model repeats its keyword
    # list until the budget ends (344 duplicate keywords in 32 ArguAna documents at 48 tokens)
    max_new_tokens: int = 32
    keyword_max_new_tokens: int = 32
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 1234
    max_attempts: int = 3  # rounds of query sampling before a document keeps fewer than N
    chunk_size: int = 32  # documents per durable write
    n: int | None = None  # first n documents only
    tokenizer: str | None = None  # for truncation; None: the hf back end's own, else SmolLM2's
    shard_size: int = 1000  # documents per shard when workers share the corpus (--workers / --shard)
    request_timeout: float = DEFAULT_TIMEOUT  # openai: seconds per request attempt
    max_retries: int = DEFAULT_MAX_RETRIES  # openai: further attempts after a transport/protocol failure


def truncate_tokens(text: str, tokenizer, max_tokens: int) -> tuple[str, int, bool]:
    """(text cut to ``max_tokens`` tokens, its original token count, whether it was cut)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text, len(ids), False
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True).strip() + " ...", len(ids), True


def check_query(text: str, document: str, instruction: str, seen: set[str], demo_texts=()) -> str | None:
    if not text or not normalize(text):
        return "empty"
    if wrong_language(text, document):
        return "wrong_language"
    if len(text.split()) > MAX_QUERY_WORDS:
        return "too_long"
    prefix = normalize(instruction.split("{seed}")[0].split("\n")[0])
    if prefix and normalize(text).startswith(prefix):
        return "echoed_instruction"
    if normalize(text) in seen:
        return "duplicate"
    if leaks_demo(normalize(text), normalize(document), demo_texts):
        return "from_demo"
    return None


def from_demo(keyword: str, document: str, demo_keywords: set[str], demo_texts) -> bool:
    """A demo's keyword ("coral reef") or phrase that the document itself never says."""
    norm, norm_doc = normalize(keyword), normalize(document)
    return (norm in demo_keywords and f" {norm} " not in f" {norm_doc} ") or leaks_demo(norm, norm_doc, demo_texts)


def keyword_problem(keyword: str, document: str, instruction: str = "") -> str | None:
    """Why a keyword says nothing about its document: ``function_words`` ("the", "and"), or ``meta``:
    a list lead-in ending in ':' or a phrase using the prompt's own words ("document", "keywords",
    "separated by commas") where the document does not."""
    words = normalize(keyword).split()
    if all(w in FUNCTION_WORDS for w in words):
        return "function_words"
    if keyword.rstrip().endswith(":"):
        return "meta"
    task_words = (TASK_WORDS | set(normalize(instruction.replace("{seed}", "")).split())) - FUNCTION_WORDS
    document_words = set(normalize(document).split())
    if any(w in task_words and w not in document_words for w in words):
        return "meta"
    return None


def split_keywords(raw: str, document: str, limit: int, demo_texts=(), instruction: str = "") -> tuple[list[str], Counter]:
    """Keywords from one comma-separated answer: cleaned, deduplicated, at most ``limit``."""
    demo_keywords = {normalize(k) for d in demo_texts for k in d.split(",")}
    rejected: Counter = Counter()
    line = clean_output(raw if isinstance(raw, str) else "")
    keywords, seen = [], set()
    for part in line.replace(";", ",").split(","):
        word = part.strip().strip(".-*•").strip()
        if not word or not normalize(word):
            continue
        if wrong_language(word, document):
            rejected["wrong_language"] += 1
        elif len(word.split()) > MAX_KEYWORD_WORDS:
            rejected["too_long"] += 1
        elif normalize(word) in seen:
            rejected["duplicate"] += 1
        elif from_demo(word, document, demo_keywords, demo_texts):
            rejected["from_demo"] += 1
        elif problem := keyword_problem(word, document, instruction):
            rejected[problem] += 1
        else:
            seen.add(normalize(word))
            keywords.append(word)
    return keywords[:limit], rejected


def _load_tokenizer(cfg: ExpandConfig, llm: LLM):
    from transformers import AutoTokenizer

    from llmcse.utils.modelspec import resolve_model_path

    if cfg.tokenizer:
        return AutoTokenizer.from_pretrained(resolve_model_path(cfg.tokenizer))
    if getattr(llm, "tokenizer", None) is not None:
        return llm.tokenizer
    logger.info("no --tokenizer given and the back end has none: truncating with SmolLM2's tokenizer")
    return AutoTokenizer.from_pretrained(resolve_model_path("SmolLM2-135M-Instruct"))


def _expand_chunk(llm: LLM, template: PromptTemplate, docs: list[str], cfg: ExpandConfig, chunk_index: int):
    """Queries and keywords for each document text; per-document attempts and rejections."""
    queries: list[list[str]] = [[] for _ in docs]
    rejections: list[Counter] = [Counter() for _ in docs]
    attempts = [0] * len(docs)
    qfield, kfield = template.fields["query"], template.fields["keywords"]
    query_demos = qfield.demo_texts
    for attempt in range(cfg.max_attempts):
        todo = [i for i, q in enumerate(queries) if len(q) < cfg.queries]
        if not todo:
            break
        # ask for every missing query at once: one prompt per missing query, sampled
        prompts, owners = [], []
        for i in todo:
            for _ in range(cfg.queries - len(queries[i])):
                prompts.append(qfield.messages(docs[i], template.system))
                owners.append(i)
        params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                                seed=cfg.seed + 7919 * chunk_index + 104729 * attempt, stop=("\n",))
        for i, raw in zip(owners, llm.generate(prompts, params)):
            attempts[i] += 1
            text = clean_output(raw if isinstance(raw, str) else "")
            if len(queries[i]) >= cfg.queries:
                continue
            reason = check_query(text, docs[i], qfield.instruction, {normalize(q) for q in queries[i]}, query_demos)
            if reason:
                rejections[i][reason] += 1
            else:
                queries[i].append(text)
    keywords = []
    if cfg.keywords > 0:
        params = SamplingParams(max_new_tokens=cfg.keyword_max_new_tokens, temperature=0.0, seed=cfg.seed, stop=("\n",))
        raws = llm.generate([kfield.messages(d, template.system) for d in docs], params)
        for i, raw in enumerate(raws):
            words, rejected = split_keywords(raw, docs[i], cfg.keywords, kfield.demo_texts, kfield.instruction)
            rejections[i].update({f"keyword_{k}": v for k, v in rejected.items()})
            if not words:
                rejections[i]["keywords_empty"] += 1
            keywords.append(words)
    else:
        keywords = [[] for _ in docs]
    return queries, keywords, attempts, rejections


def run_expand(cfg: ExpandConfig, llm: LLM | None = None, show_progress_bar: bool | None = None,
               shard: tuple[int, int] | None = None, *, executor: str | None = None, ray_address: str | None = None,
               actors: int | None = None) -> dict:
    """Expand every document of the corpus (or its first ``n``) into ``cfg.out``; resumable.

    ``shard=(K, N)``: be worker K of N. The documents are cut into shards of ``shard_size``;
    this worker expands shards with index % N == K into ``<out>.shards/shards/NNNNN.jsonl`` (each
    append-only, so a killed worker continues mid-shard). A later run without ``shard`` folds the
    shard files into ``cfg.out`` and expands whatever no worker finished.
    ``executor="ray"``: ``actors`` Ray actors expand the unfinished shards (``llmcse.synth.scaleout``),
    then this run folds them as above. ``None`` (all three): the current
    ``llmcse.utils.executor.using(...)`` scope's settings, else this process.
    """
    from tqdm.auto import tqdm

    from llmcse.llm import load_llm, transport_options
    from llmcse.utils.executor import resolve
    from llmcse.utils.progress import progress_enabled

    executor, ray_address, actors = resolve(executor, ray_address, actors)
    if executor == "ray" and shard is not None:
        from llmcse.errors import LlmcseError

        raise LlmcseError("--shard K/N is for processes started by hand; with --executor ray, Ray shares out the shards")
    template = load_template(cfg.prompts)
    if template.recipe != "expand":
        from llmcse.errors import LlmcseError

        raise LlmcseError(f"{template.path}: an expansion template needs recipe = \"expand\", not {template.recipe!r}")
    corpus: dict[str, Doc] = load_beir_corpus(cfg.corpus)
    doc_ids = list(corpus)[: cfg.n] if cfg.n else list(corpus)
    shard_dir = Path(cfg.out).with_name(Path(cfg.out).name + ".shards")
    ray_run = None
    if executor == "ray":
        ray_run = _expand_on_ray(cfg, template, corpus, doc_ids, shard_dir, llm, ray_address=ray_address,
                                 actors=actors, show_progress_bar=show_progress_bar)
    if shard is not None or shard_dir.is_dir():
        from llmcse.utils.shards import prepare_manifest

        manifest = prepare_manifest(shard_dir, {"corpus_md5": file_md5(cfg.corpus), "n": cfg.n},
                                    len(doc_ids), cfg.shard_size, ".jsonl")
    # (output file, its documents, index of its first chunk: chunk seeds do not depend on the sharding)
    if shard is not None:
        targets = [(shard_dir / s["file"], doc_ids[s["start"]:s["end"]], s["start"] // cfg.chunk_size)
                   for s in manifest["shards"] if s["index"] % shard[1] == shard[0]]
    else:
        out_file = AppendOnlyJsonl(Path(cfg.out))
        if shard_dir.is_dir():
            _fold_shards(out_file, shard_dir, manifest, doc_ids)
        targets = [(Path(cfg.out), doc_ids, 0)]
    work = []
    for path, ids, first_chunk in targets:
        file = AppendOnlyJsonl(path)
        done = {r["_id"] for r in file.read()}
        work.append((file, [d for d in ids if d not in done], first_chunk + len(done) // cfg.chunk_size))
    n_pending = sum(len(p) for _, p, _ in work)
    logger.info("%d documents (%d to expand%s); template %s v%d", len(doc_ids), n_pending,
                f", worker {shard[0]} of {shard[1]}" if shard else "", template.id, template.version)
    if n_pending:
        from llmcse.synth.scaleout import LLMSource

        if isinstance(llm, LLMSource):  # loading was left to Ray actors; what they left is done here
            llm = llm()
        llm = llm or load_llm(cfg.llm, **transport_options(cfg.llm, cfg.request_timeout, cfg.max_retries))
    if n_pending:
        _check_identity(Path(cfg.out), template, redact_spec(llm.spec), cfg)
    tokenizer = _load_tokenizer(cfg, llm) if n_pending else None
    started = time.perf_counter()
    tokens_before = llm.stats.completion_tokens if n_pending else 0
    prefill_before = llm.stats.prefill_tokens if n_pending else 0
    bar = tqdm(total=n_pending, unit="doc", desc="expand", disable=not progress_enabled(show_progress_bar))
    # every chunk leaves its cost here at once (a killed worker's cost is not lost), stamped with this
    # process, so the totals count resumed runs and side-by-side workers as the processes they were
    history = AppendOnlyJsonl(Path(cfg.out).with_name(Path(cfg.out).name + ".runs.jsonl"))
    cost_stamp = {"process": f"{socket.gethostname()}:{os.getpid()}:{dt.datetime.now(dt.timezone.utc).isoformat()}",
                  "shard": f"{shard[0]}/{shard[1]}" if shard else None, "threads": _threads() if n_pending else None,
                  "generator": redact_spec(llm.spec) if n_pending else None}
    for file, pending, first_chunk in work:
        _expand_into(file, pending, first_chunk, corpus, llm, template, tokenizer, cfg, bar, started, tokens_before,
                     history, cost_stamp)
    bar.close()
    if shard is None and shard_dir.is_dir():  # workers' records were folded in first: restore corpus order
        position = {d: i for i, d in enumerate(doc_ids)}
        ordered = sorted(work[0][0].read(), key=lambda r: position.get(r["_id"], len(position)))
        atomic_write_text(Path(cfg.out), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
    records = [r for file, _, _ in work for r in file.read()]
    summary = summarize_expansions(records, cfg)
    seconds = time.perf_counter() - started
    summary["this_run"] = {"documents": n_pending, "seconds": round(seconds, 1),
                           "docs_per_s": round(n_pending / seconds, 3) if n_pending and seconds else None,
                           "completion_tokens": (llm.stats.completion_tokens - tokens_before) if n_pending else 0,
                           "prefill_tokens": (llm.stats.prefill_tokens - prefill_before) if n_pending else 0,
                           **{k: v for k, v in cost_stamp.items() if k != "process"}}
    if ray_run:  # the actors' work; this process only folded it
        summary["this_run"].update(ray_run)
    summary["cost"] = expansion_cost(history.read())
    if shard is None:
        atomic_write_json(Path(cfg.out).with_name(Path(cfg.out).stem + ".summary.json"), summary)
    return summary


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def expansion_cost(runs: list[dict]) -> dict:
    """Totals over every chunk (or, in files written before chunks were logged, every process) that
    expanded documents: documents per process-second, tokens/s, and how many processes did it.

    A process-second is one process for one second (N workers for T seconds = N x T): with one
    thread per process this is documents per core-second, the number that scales with cores."""
    processes = {r.get("process") or f"row {i}" for i, r in enumerate(runs)}
    docs = sum(r["documents"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    generated = sum(r["completion_tokens"] for r in runs)
    prefilled = sum(r.get("prefill_tokens", 0) for r in runs)
    return {"runs": len(processes), "documents": docs, "process_seconds": round(seconds, 1),
            "docs_per_process_s": round(docs / seconds, 4) if seconds else None,
            "completion_tokens_per_process_s": round(generated / seconds, 1) if seconds else None,
            "prefill_tokens_per_process_s": round(prefilled / seconds, 1) if seconds else None,
            "completion_tokens_per_doc": round(generated / docs, 1) if docs else None,
            "threads_per_process": sorted({r.get("threads") for r in runs if r.get("threads")})}


def _fold_shards(out_file: AppendOnlyJsonl, shard_dir: Path, manifest: dict, doc_ids: list[str]) -> None:
    """Append the workers' records that ``out`` lacks, in corpus order."""
    have = {r["_id"] for r in out_file.read()}
    by_id = {}
    for s in manifest["shards"]:
        path = shard_dir / s["file"]
        if path.exists():
            by_id.update({r["_id"]: r for r in AppendOnlyJsonl(path).read()})
    new = [by_id[d] for d in doc_ids if d in by_id and d not in have]
    if new:
        logger.info("folding %d expanded documents from %s into %s", len(new), shard_dir, out_file.path)
        out_file.append(new)


def _check_identity(out: Path, template: PromptTemplate, generator: str, cfg: ExpandConfig) -> None:
    """A rerun into ``out`` continues it only with the same prompt, LLM and sampling (records of two
    set-ups would otherwise mix in one file)."""
    from llmcse.utils.safety import check_identity, first_record

    identity = {"prompt_id": template.id, "prompt_version": template.version, "generator": generator,
                "sampling": _sampling(cfg), "queries": cfg.queries, "keywords": cfg.keywords,
                "max_doc_tokens": cfg.max_doc_tokens}
    path = out.with_name(out.stem + ".identity.json")
    first = None if path.exists() else first_record(out)  # an output made before identity files
    legacy = {k: first.get(k) for k in ("prompt_id", "prompt_version", "generator", "sampling")} if first else None
    side = [out.with_name(out.stem + ".summary.json"), out.with_name(out.name + ".runs.jsonl"),
            out.with_name(out.name + ".shards"), path]
    check_identity(out, path, identity, [p for p in (out, *side) if p.exists()], legacy)


def _sampling(cfg: ExpandConfig) -> dict:
    return {k: getattr(cfg, k) for k in ("max_new_tokens", "keyword_max_new_tokens", "temperature", "top_p",
                                         "max_attempts", "seed")}


def _expand_into(out_file: AppendOnlyJsonl, pending: list[str], first_chunk: int, corpus, llm, template, tokenizer,
                 cfg: ExpandConfig, bar, started: float, tokens_before: int, history: AppendOnlyJsonl,
                 cost_stamp: dict) -> None:
    sampling = _sampling(cfg)
    for start in range(0, len(pending), cfg.chunk_size):
        ids = pending[start:start + cfg.chunk_size]
        chunk_started, generated, prefilled = time.perf_counter(), llm.stats.completion_tokens, llm.stats.prefill_tokens
        texts, meta = [], []
        for doc_id in ids:
            text, n_tokens, cut = truncate_tokens(corpus[doc_id].default_text().strip(), tokenizer, cfg.max_doc_tokens)
            texts.append(text)
            meta.append({"doc_tokens": n_tokens, "truncated": cut})
        usable = [i for i, t in enumerate(texts) if normalize(t)]
        results = _expand_chunk(llm, template, [texts[i] for i in usable], cfg, first_chunk + start // cfg.chunk_size) \
            if usable else ([], [], [], [])
        by_index = dict(zip(usable, zip(*results))) if usable else {}
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        records = []
        for i, doc_id in enumerate(ids):
            queries, keywords, attempts, rejected = by_index.get(i, ([], [], 0, Counter({"empty_document": 1})))
            records.append({"_id": doc_id, "queries": queries, "keywords": keywords, "generator": redact_spec(llm.spec),
                            "prompt_id": template.id, "prompt_version": template.version, "sampling": sampling,
                            "attempts": attempts, "rejections": dict(rejected), **meta[i], "created": now})
        out_file.append(records)
        history.append([{"documents": len(ids), "seconds": round(time.perf_counter() - chunk_started, 2),
                         "completion_tokens": llm.stats.completion_tokens - generated,
                         "prefill_tokens": llm.stats.prefill_tokens - prefilled, **cost_stamp,
                         "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}])
        bar.update(len(ids))
        seconds = time.perf_counter() - started
        bar.set_postfix(tok_s=f"{(llm.stats.completion_tokens - tokens_before) / max(seconds, 1e-9):.0f}")


def summarize_expansions(records: list[dict], cfg: ExpandConfig) -> dict:
    rejections: Counter = Counter()
    for r in records:
        rejections.update(r.get("rejections", {}))
    n = len(records)
    return {"out": cfg.out, "documents": n,
            "with_all_queries": sum(1 for r in records if len(r["queries"]) >= cfg.queries),
            "without_queries": sum(1 for r in records if not r["queries"]),
            "mean_queries": round(sum(len(r["queries"]) for r in records) / n, 3) if n else None,
            "mean_keywords": round(sum(len(r["keywords"]) for r in records) / n, 3) if n else None,
            "truncated_documents": sum(1 for r in records if r.get("truncated")),
            "rejections_by_reason": dict(rejections), "config": {**asdict(cfg), "llm": redact_spec(cfg.llm)}}


# --- --executor ray: the documents in fixed shards, one Ray actor per LLM (llmcse.synth.scaleout) ---------

class ExpandShardWorker:
    """Expands one shard of documents per call, continuing after the chunks its file already holds
    (the append-only shard files of ``--shard K/N`` workers: either kind continues the other's)."""

    def __init__(self, cfg: ExpandConfig, source):
        self.cfg, self.llm = cfg, source()  # the LLM loads here, once per actor
        self.template = load_template(cfg.prompts)
        self.tokenizer = _load_tokenizer(cfg, self.llm)

    def __call__(self, task: dict) -> dict:
        from tqdm.auto import tqdm

        from llmcse.synth.scaleout import open_shard_file

        file = open_shard_file(Path(task["path"]))
        done = {r["_id"] for r in file.read()}
        pending = [d for d in task["doc_ids"] if d not in done]
        if not pending:
            return {"items": 0}
        stats = self.llm.stats
        tokens, prefill, started = stats.completion_tokens, stats.prefill_tokens, time.perf_counter()
        stamp = {"process": f"{socket.gethostname()}:{os.getpid()}:{dt.datetime.now(dt.timezone.utc).isoformat()}",
                 "shard": f"ray:{task['index']}", "threads": _threads(), "generator": redact_spec(self.llm.spec)}
        _expand_into(file, pending, task["start"] // self.cfg.chunk_size + len(done) // self.cfg.chunk_size,
                     task["docs"], self.llm, self.template, self.tokenizer, self.cfg, tqdm(disable=True), started,
                     tokens, AppendOnlyJsonl(task["history"]), stamp)
        return {"items": len(pending), "completion_tokens": stats.completion_tokens - tokens,
                "prefill_tokens": stats.prefill_tokens - prefill}


def _expand_on_ray(cfg: ExpandConfig, template: PromptTemplate, corpus: dict, doc_ids: list[str], folder: Path,
                   llm: LLM | None, *, ray_address: str | None, actors: int, show_progress_bar: bool | None = None) -> dict:
    """Expand every shard of ``<out>.shards`` not yet complete on Ray (``run_expand`` then folds them);
    the ``this_run`` fields of the actors' work."""
    import functools

    from llmcse.synth.scaleout import llm_source, run_on_ray, shard_rows
    from llmcse.utils.shards import prepare_manifest

    out = Path(cfg.out)
    source = llm_source(llm, cfg.llm, cfg.request_timeout, cfg.max_retries, actors)
    _check_identity(out, template, redact_spec(source.spec), cfg)
    if cfg.shard_size % cfg.chunk_size:
        logger.warning("--shard-size %d is not a multiple of --chunk-size %d: chunks at shard edges are split, so "
                       "with sampling the records differ from a single-process run's (still valid); e.g. --shard-size %d",
                       cfg.shard_size, cfg.chunk_size, -(-cfg.shard_size // cfg.chunk_size) * cfg.chunk_size)
    # the same manifest as --shard K/N workers: either kind of worker continues the other's shards
    manifest = prepare_manifest(folder, {"corpus_md5": file_md5(cfg.corpus), "n": cfg.n}, len(doc_ids),
                                cfg.shard_size, ".jsonl")
    in_out = {r["_id"] for r in AppendOnlyJsonl(out).read()} if out.exists() else set()
    written = shard_rows(folder, manifest)
    history = out.with_name(out.name + ".runs.jsonl").resolve()
    tasks = []
    for s in manifest["shards"]:
        ids = [d for d in doc_ids[s["start"]:s["end"]] if d not in in_out]
        have = {r["_id"] for r in written.get(s["index"], [])}
        if any(d not in have for d in ids):
            tasks.append({"index": s["index"], "path": str((folder / s["file"]).resolve()), "doc_ids": ids,
                          "docs": {d: corpus[d] for d in ids}, "start": s["start"], "history": str(history)})
    logger.info("%d of %d document shards to expand on Ray", len(tasks), len(manifest["shards"]))
    provenance, stamp = run_on_ray(functools.partial(ExpandShardWorker, cfg, source), tasks, folder, source,
                                   ray_address, actors, show_progress_bar, "expand shards")
    documents = sum(r.get("items", 0) for r in provenance)
    seconds = stamp["wall_seconds"]
    return {"documents": documents, "seconds": seconds, "docs_per_s": round(documents / seconds, 3) if seconds else None,
            "completion_tokens": sum(r.get("completion_tokens", 0) for r in provenance),
            "prefill_tokens": sum(r.get("prefill_tokens", 0) for r in provenance), "shard": None, **stamp}
