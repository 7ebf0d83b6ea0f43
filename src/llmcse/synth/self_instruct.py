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
    if Path(out).resolve() in {Path(p).resolve() for p in (corpus_path, expansions_path, kept_path) if p}:
        raise LlmcseError(f"--out {out} is one of the input files: choose another path")
    pairs, report = expansion_pairs(corpus_path, expansions_path, kept_path, **options)
    atomic_write_text(out, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    out = Path(out)
    atomic_write_json(out.with_name(out.stem + ".report.json"), report)
    return report
