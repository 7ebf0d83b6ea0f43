"""Self-instruct training pairs from an ``llmcse expand`` run (arXiv 2409.16497, round 1).

Each kept synthetic query (or keyword list) is paired with the exact prompt that produced it, so
``llmcse tune-generator`` can fine-tune the generator on its own filtered outputs and expand again.
This is synthetic-data building, so it lives with the generation code; ``train`` only sees the
resulting (prompt, completion) JSONL.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from llmcse.errors import LlmcseError
from llmcse.utils.io import atomic_write_json, atomic_write_text


def expansion_pairs(corpus_path: str | Path, expansions_path: str | Path, kept_path: str | Path | None = None, *,
                    prompts: str | None = None, max_doc_tokens: int | None = None, tokenizer: str | None = None,
                    queries: bool = True, keywords: bool = True, demos: bool = True) -> tuple[list[dict], dict]:
    """Self-instruct training pairs from an ``llmcse expand`` run.

    For every document: the prompt that produced its queries (resp. keywords), rebuilt exactly as
    ``llmcse expand`` built it (same template, document cut to the same number of tokens of the same
    tokenizer, read from ``<expansions stem>.summary.json`` unless given), paired with each kept
    query (one pair per query) and with its kept keywords joined by ", " (one pair).

    Args:
        expansions_path: the raw expansion file (``llmcse expand --out``): checked to come from this template.
        kept_path: the filtered file (``llmcse filter-expansions --out``) whose queries / keywords are the
            completions; None uses the raw file's.
        demos: keep the template's in-context demos in the prompts (as generation had them); without,
            pairs are ~3x shorter to train on, and round 1 should then expand with a demo-free template.

    Returns:
        (pairs, report with counts)
    """
    from llmcse.data.loaders import load_beir_corpus, load_expansions
    from llmcse.synth.expand import truncate_tokens
    from llmcse.synth.prompts import load_template
    from llmcse.utils.jsonl import read_jsonl

    expansions_path = Path(expansions_path)
    if not expansions_path.is_file():
        raise LlmcseError(f"expansions file not found: {expansions_path}")
    summary_path = expansions_path.with_name(expansions_path.stem + ".summary.json")
    generated = json.loads(summary_path.read_text(encoding="utf-8")).get("config", {}) if summary_path.is_file() else {}
    prompts = prompts or generated.get("prompts", "expand")
    max_doc_tokens = max_doc_tokens or generated.get("max_doc_tokens", 256)
    tokenizer_name = tokenizer or generated.get("tokenizer") or _generator_model(generated.get("llm"))
    template = load_template(prompts)
    if template.recipe != "expand":
        raise LlmcseError(f"{template.path}: an expansion template needs recipe = \"expand\", not {template.recipe!r}")
    raw = read_jsonl(expansions_path)
    made_by = {(r.get("prompt_id"), r.get("prompt_version")) for r in raw if "prompt_id" in r}
    if made_by - {(template.id, template.version)}:
        raise LlmcseError(f"{expansions_path} was generated with template(s) {sorted(made_by)}, not "
                          f"{template.id} v{template.version} ({template.path}): pass the one it used with --prompts")
    kept = load_expansions(kept_path) if kept_path else {r["_id"]: r for r in raw}
    corpus = load_beir_corpus(corpus_path)
    tok = _tokenizer(tokenizer_name)
    system = template.system
    fields = {name: (f if demos else dataclasses.replace(f, demos=())) for name, f in template.fields.items()}
    pairs, missing = [], 0
    for record in raw:
        doc_id = record["_id"]
        if doc_id not in corpus:
            missing += 1
            continue
        texts = kept.get(doc_id, {"queries": [], "keywords": []})
        document, _, _ = truncate_tokens(corpus[doc_id].default_text().strip(), tok, max_doc_tokens)
        if queries:
            prompt = fields["query"].messages(document, system)
            pairs += [{"prompt": prompt, "completion": q, "_id": doc_id, "field": "query"} for q in texts["queries"]]
        if keywords and texts["keywords"]:
            pairs.append({"prompt": fields["keywords"].messages(document, system),
                          "completion": ", ".join(texts["keywords"]), "_id": doc_id, "field": "keywords"})
    report = {"documents": len(raw), "documents_not_in_corpus": missing, "pairs": len(pairs),
              "query_pairs": sum(1 for p in pairs if p["field"] == "query"),
              "keyword_pairs": sum(1 for p in pairs if p["field"] == "keywords"),
              "template": f"{template.id} v{template.version}", "demos": demos, "max_doc_tokens": max_doc_tokens,
              "tokenizer": tokenizer_name, "expansions": str(expansions_path), "kept": str(kept_path) if kept_path else None}
    return pairs, report


def _generator_model(llm_spec: str | None) -> str:
    """The tokenizer ``llmcse expand`` truncated with: the hf back end's own, else SmolLM2's."""
    if llm_spec and llm_spec.startswith("hf:"):
        return llm_spec[3:]
    return "SmolLM2-135M-Instruct"


def _tokenizer(name: str):
    from transformers import AutoTokenizer

    from llmcse.utils.modelspec import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path(name))


def write_expansion_pairs(corpus_path, expansions_path, kept_path, out, **options) -> dict:
    """``expansion_pairs`` into ``out`` (JSONL) and ``<out stem>.report.json``; returns the report."""
    _refuse_input_as_out(out, corpus_path, expansions_path, kept_path)
    pairs, report = expansion_pairs(corpus_path, expansions_path, kept_path, **options)
    return _write_pairs(out, pairs, report)


def _refuse_input_as_out(out, *inputs) -> None:
    if Path(out).resolve() in {Path(p).resolve() for p in inputs if p}:
        raise LlmcseError(f"--out {out} is one of the input files: choose another path")


def _write_pairs(out, pairs: list[dict], report: dict) -> dict:
    """The pairs as JSONL at ``out`` and the report at ``<out stem>.report.json`` (both atomic); returns the report."""
    atomic_write_text(out, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    out = Path(out)
    atomic_write_json(out.with_name(out.stem + ".report.json"), report)
    return report


# ---- pair recipes (nli / sts3): a generator tuned on records (issue 23's seeded and self-instruct generators)

_DETOKENIZE = [(" n't", "n't"), (" 's", "'s"), (" 're", "'re"), (" 've", "'ve"), (" 'm", "'m"), (" 'll", "'ll"),
               (" 'd", "'d"), (" .", "."), (" ,", ","), (" !", "!"), (" ?", "?"), (" ;", ";"), (" :", ":"),
               ("( ", "("), (" )", ")")]


def detokenize(text: str) -> str:
    """SNLI's tokenized text ("Two kids wash their hands .") as plain prose ("... hands."): a generator
    tuned on it would otherwise learn to write spaces before punctuation."""
    text = " ".join(text.split())
    for old, new in _DETOKENIZE:
        text = text.replace(old, new)
    return text


def read_pair_records(path: str | Path) -> list[dict]:
    """Records to learn from: ``llmcse generate`` / ``filter`` JSONL (seed + fields), or SimCSE triplets
    (TSV ``sent0 sent1 hard_neg``: seed, positive, negative; detokenized). Each keeps ``source`` = file:line."""
    path = Path(path)
    if not path.is_file():
        raise LlmcseError(f"records not found: {path}")
    if path.suffix.lower() == ".tsv":
        from llmcse.data.readers import iter_tsv

        return [{"seed": detokenize(row["sent0"]), "positive": detokenize(row["sent1"]),
                 "negative": detokenize(row["hard_neg"]), "source": f"{path.name}:{n}"}
                for n, row in iter_tsv(path, ["sent0", "sent1", "hard_neg"])]
    from llmcse.data.readers import iter_jsonl
    from llmcse.errors import DataFormatError

    records = []
    for n, r in iter_jsonl(path):
        if not (isinstance(r, dict) and isinstance(r.get("seed"), str)):
            raise DataFormatError(path, n, "expected a generate record with a 'seed' string")
        records.append({**r, "source": f"{path.name}:{n}"})
    return records


def record_pairs(records: list[dict], recipe: str = "nli", *, prompts: str | None = None, demos: bool = True,
                 sample: int | None = None, seed: int = 42) -> tuple[list[dict], dict]:
    """(prompt, completion) pairs that teach a generator to write a record's fields: for each record
    and each field of the recipe it has, the exact chat ``llmcse generate`` sends for its seed -> the
    field's text. ``sample``: a seeded random sample of that many records (which ones is in the report)."""
    import random

    from llmcse.synth.prompts import load_template

    template = load_template(prompts or recipe)
    if template.recipe != recipe:
        raise LlmcseError(f"{template.path}: a template for recipe {template.recipe!r}, not {recipe!r}")
    if sample is not None and sample < len(records):
        records = [records[i] for i in sorted(random.Random(seed).sample(range(len(records)), sample))]
    pairs, missing = [], {name: 0 for name in template.fields}
    for r in records:
        for name, field in template.fields.items():
            text = r.get(name)
            if not (isinstance(text, str) and text.strip()):
                missing[name] += 1
                continue
            f = field if demos else dataclasses.replace(field, demos=())
            pairs.append({"prompt": f.messages(r["seed"], template.system), "completion": text.strip(),
                          "field": name, "source": r.get("source")})
    report = {"records": len(records), "pairs": len(pairs), "recipe": recipe,
              "template": f"{template.id} v{template.version}", "demos": demos,
              "missing_fields": {k: v for k, v in missing.items() if v}, "sample": sample,
              "sample_seed": seed if sample is not None else None,
              "sources": [r.get("source") for r in records]}
    return pairs, report


def write_record_pairs(records_path, out, **options) -> dict:
    """``record_pairs`` of ``read_pair_records(records_path)`` into ``out`` + ``<out stem>.report.json``."""
    _refuse_input_as_out(out, records_path)
    pairs, report = record_pairs(read_pair_records(records_path), **options)
    return _write_pairs(out, pairs, {**report, "records_file": str(records_path)})
