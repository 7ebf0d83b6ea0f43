"""``llmcse`` command line: a thin layer that builds configs and calls the library.

Each subcommand is one small function registered with ``set_defaults(func=...)``.
User errors (``LlmcseError``) print one line and exit 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from llmcse.errors import LlmcseError

logger = logging.getLogger("llmcse")

EPILOG_EVAL = """examples:
  llmcse eval --model all-MiniLM-L6-v2 --tasks sts
  llmcse eval --model all-MiniLM-L6-v2 --tasks sts,transfer,arguana --output-dir runs/minilm
  llmcse eval --model SmolLM2-135M-Instruct --pooling last --dtype bfloat16 --tasks stsb
  llmcse eval --model bm25 --tasks arguana
tasks: sts (STS12-16, STS-B, SICK-R + avg), transfer (MR CR SUBJ MPQA SST2 TREC MRPC + avg),
any task from `llmcse data list`, geometry; `task:split` picks a split (stsb:dev)."""


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="benchmark data folder (default: $LLMCSE_DATA, else ../shared/data)")


EMBEDDER_DTYPES = ["float32", "bfloat16", "float16", "auto"]


def _add_embedder_dtype(p: argparse.ArgumentParser, help: str = "default float32; bfloat16 is 2-3x faster on CPUs with bf16") -> None:
    p.add_argument("--dtype", choices=EMBEDDER_DTYPES, help=help)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="sentence-transformers folder or hub id, raw transformer, .gguf, "
                   "bundled name (all-MiniLM-L6-v2, SmolLM2-135M-Instruct), or bm25 (eval only)")
    p.add_argument("--pooling", help="mean, cls or last: only for raw transformer checkpoints without saved pooling; "
                   "eval takes several (mean,last) sharing one forward pass")
    p.add_argument("--device", help="cuda, mps or cpu (default: auto)")
    _add_embedder_dtype(p)
    from llmcse.utils.validate import positive_int

    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--max-seq-length", type=positive_int, help="truncate inputs to this many tokens")


def cmd_data_list(args: argparse.Namespace) -> int:
    from llmcse.data.inventory import data_inventory, format_inventory

    inventory = data_inventory(args.data_dir)
    if args.json:
        print(json.dumps(inventory, indent=2))
    else:
        print(format_inventory(inventory))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from llmcse.eval.run import EvalConfig, results_table_rows, run_evaluations

    cfg = EvalConfig(
        model=args.model, tasks=args.tasks, data_dir=args.data_dir, pooling=args.pooling, device=args.device,
        dtype=args.dtype, batch_size=args.batch_size, max_seq_length=args.max_seq_length, seed=args.seed,
        expansions=args.expansions, expansion_weights=args.expansion_weights,
        transfer_max_examples=args.transfer_max_examples, multirep=args.multirep,
    )
    if args.multirep:
        from llmcse.retrieval.multirep import MultiRepSpec

        if MultiRepSpec.parse(args.multirep).uses_expansions and not args.expansions:
            raise LlmcseError(f"--multirep {args.multirep}: synthetic queries as units need --expansions")
        if args.model.lower() == "bm25":
            raise LlmcseError("--multirep works with dense models, not bm25")
    if args.expansions and args.model.lower() == "bm25":
        raise LlmcseError("--expansions works with dense models (documents become averaged vectors), not bm25")
    if args.dry_run:
        from dataclasses import asdict

        print(json.dumps(asdict(cfg), indent=2))
        return 0
    output_dir = Path(args.output_dir) if args.output_dir else None
    all_results = run_evaluations(cfg, output_dir)
    for results in all_results:
        pooling = f", {results['pooling']} pooling" if results["pooling"] else ""
        _print_table(f"{results['model']}  ({results['device']}, {results['dtype']}{pooling}, "
                     f"{results['evaluation_time']:.0f} s)", results_table_rows(results))
    if output_dir:
        sub = [r["pooling"] for r in all_results] if len(all_results) > 1 else [""]
        print("results: " + ", ".join(str(output_dir / s / "results.json") for s in sub))
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from llmcse.embed.encode import progress_enabled
    from llmcse.embed.files import check_output_path, read_texts, write_embeddings
    from llmcse.embed.models import load_embedder

    if args.pooling and "," in args.pooling:
        raise LlmcseError("embed takes one pooling (several are for eval)")
    check_output_path(args.output)  # before the model loads and the texts are encoded, not after
    ids, texts = read_texts(args.input, field=args.field)
    model = load_embedder(args.model, pooling=args.pooling, device=args.device, dtype=args.dtype,
                          max_seq_length=args.max_seq_length)
    t0 = time.perf_counter()
    embeddings = model.encode(texts, batch_size=args.batch_size, normalize_embeddings=not args.no_normalize,
                              show_progress_bar=progress_enabled(None), convert_to_numpy=True,
                              prompt_name=args.prompt_name)
    seconds = time.perf_counter() - t0
    write_embeddings(args.output, ids, texts, embeddings)
    print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {args.output} "
          f"({embeddings.shape[0] / max(seconds, 1e-9):.0f} texts/s)")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from llmcse.llm import check_llm_spec
    from llmcse.synth.generate import GenerateConfig, run_generate

    cfg = GenerateConfig(recipe=args.prompts or args.recipe, seeds=args.seeds, llm=args.llm, out=args.out, n=args.n,
                         max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                         seed=args.seed, max_attempts=args.max_attempts, chunk_size=args.chunk_size,
                         request_timeout=args.request_timeout, max_retries=args.max_retries)
    check_llm_spec(args.llm)  # before anything is loaded or written: a bad spec is a one-line error
    if args.dry_run:
        print(json.dumps(asdict(cfg), indent=2))
        return 0
    llm = _load_llm_for_cli(args)
    s = run_generate(cfg, llm=llm)
    run = s["this_run"]
    print(f"{s['recipe']}: {s['kept']} kept, {s['rejected']} rejected of {s['seeds_done']} seeds "
          f"(kept fraction {s['kept_fraction']}); this run: {run['seeds_processed']} seeds in {run['seconds']} s, "
          f"{run['completion_tokens']} tokens ({run['tokens_per_s']} tok/s)")
    if s["rejected_by_final_reason"]:
        print("rejected seeds by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(s["rejected_by_final_reason"].items())))
    if s["field_rejections_by_reason"]:
        print("rejected attempts by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(s["field_rejections_by_reason"].items())))
    print(f"records: {cfg.out}   summary: {Path(cfg.out).with_name(Path(cfg.out).stem + '.summary.json')}")
    return 0


def cmd_filter(args: argparse.Namespace) -> int:
    from llmcse.synth.filter import FilterConfig, report_path, run_filter

    cfg = FilterConfig(input=args.input, out=args.out, llm=None if args.no_llm else args.llm, t_pos=args.t_pos,
                       t_neg=args.t_neg, scoring=args.scoring, quantile=args.quantile,
                       request_timeout=args.request_timeout, max_retries=args.max_retries)
    llm = None if args.no_llm else _load_llm_for_cli(args)
    r = run_filter(cfg, llm=llm)
    print(f"kept {r['kept']} of {r['total']} ({r['kept_fraction']}); dropped by reason: "
          + (", ".join(f"{k} {v}" for k, v in sorted(r["dropped_by_reason"].items())) or "none"))
    t = r["thresholds"]
    print(f"thresholds ({t['from']}): positive >= {t['t_pos']}, negative <= {t['t_neg']}")
    if r["total"] and r["kept_fraction"] < 0.1 and cfg.quantile is None and r["score_stats"]:
        print("note: fixed thresholds dropped over 90%: a small scorer's scores sit in a narrow band "
              f"(positives: {r['score_stats']['positive']['quantiles_10_50_90']} at 10/50/90%); "
              "try --quantile 0.25", file=sys.stderr)
    print(f"kept: {cfg.out}   report: {report_path(Path(cfg.out))}")
    return 0


def _load_llm_for_cli(args: argparse.Namespace):
    from llmcse.llm import load_llm

    options = {}
    if args.llm.startswith("hf:"):
        options = {"batch_size": args.llm_batch_size, "dtype": args.dtype}
    elif args.llm.startswith("openai:"):
        options = {"concurrency": args.concurrency, "timeout": args.request_timeout, "max_retries": args.max_retries}
    return load_llm(args.llm, **options)


def cmd_serve_llm(args: argparse.Namespace) -> int:
    import os

    from llmcse.llm import load_llm
    from llmcse.llm.server import ServerLimits, check_exposure, listen, make_server

    api_key = args.api_key or os.environ.get("LLMCSE_API_KEY") or None
    check_exposure(args.host, api_key)  # host, key and port first: loading a model takes a while
    sock = listen(args.host, args.port)
    llm = load_llm(args.llm, batch_size=args.max_batch, dtype=args.dtype) if args.llm.startswith("hf:") else load_llm(args.llm)
    limits = ServerLimits(max_body_bytes=args.max_body_bytes, max_prompt_tokens=args.max_prompt_tokens,
                          max_tokens=args.max_tokens, request_timeout=args.request_timeout)
    server = make_server(llm, host=args.host, model_name=args.model_name, max_batch=args.max_batch,
                         max_wait_ms=args.max_wait_ms, limits=limits, api_key=api_key, sock=sock)
    host, port = server.server_address[:2]
    print(f"serving {llm.spec} at http://{host}:{port}/v1 (model name {args.model_name or llm.spec}); Ctrl-C stops",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _add_llm_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--llm", default="hf:SmolLM2-135M-Instruct",
                   help="hf:<path-or-id> (local), openai:<base-url>#<model> (server), fake: (tests)")
    p.add_argument("--llm-batch-size", type=int, default=32, help="prompts per batch for hf: back ends")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight for openai: back ends")
    from llmcse.llm.openai_http import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
    from llmcse.utils.validate import non_negative_int, positive_float

    p.add_argument("--request-timeout", type=positive_float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"openai: seconds per request attempt (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--max-retries", type=non_negative_int, default=DEFAULT_MAX_RETRIES,
                   help=f"openai: further attempts after a timeout, connection error, 429/5xx or a malformed answer; "
                        f"then the run stops (default {DEFAULT_MAX_RETRIES})")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"], help="hf: back ends (auto: bf16 where fast)")


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from llmcse.train.run import apply_recipe_defaults, cli_config, run_training, summary_line

    cfg, explicitly_set = cli_config(args)
    cfg = apply_recipe_defaults(cfg, explicitly_set)
    if args.dry_run:
        print(json.dumps(asdict(cfg), indent=2))
        return 0
    print(summary_line(run_training(cfg, data_dir=args.data_dir)))
    print(f"model: {cfg.out} (loads with SentenceTransformer({cfg.out!r}))")
    return 0


def cmd_tune_generator(args: argparse.Namespace) -> int:
    from llmcse.train.tune_generator import TuneConfig, tune_generator

    cfg = TuneConfig(data=args.data, out=args.out, base=args.base, epochs=args.epochs, max_steps=args.max_steps,
                     lr=args.lr, lora_r=args.lora_r, batch_size=args.batch_size,
                     gradient_accumulation=args.gradient_accumulation, max_length=args.max_length, seed=args.seed,
                     dtype=args.dtype, logging_steps=args.logging_steps, save_steps=args.save_steps, device=args.device)
    r = tune_generator(cfg)
    resumed = f" (resumed at step {r['steps'] - r['steps_this_run']})" if r["resumed_from"] else ""
    print(f"tuned {cfg.base} on {r['examples']} pairs ({r['dropped_too_long']} over {cfg.max_length} tokens left out): "
          f"{r['steps']} steps{resumed}, loss {r['first_loss']:.3f} -> {r['final_loss']:.3f}; this run "
          f"{r['steps_this_run']} steps in {r['seconds_this_run']} s, {r['tokens_seen']} tokens seen in all")
    print(f"model: {cfg.out} (use --llm hf:{cfg.out}); report: {Path(cfg.out) / 'tune_generator.json'}")
    return 0


def cmd_self_instruct_pairs(args: argparse.Namespace) -> int:
    from llmcse.train.tune_generator import write_expansion_pairs

    r = write_expansion_pairs(args.corpus, args.expansions, args.kept, args.out, prompts=args.prompts,
                              max_doc_tokens=args.max_doc_tokens, tokenizer=args.tokenizer, queries=args.queries,
                              keywords=args.keywords, demos=args.demos)
    print(f"{r['pairs']} training pairs ({r['query_pairs']} queries, {r['keyword_pairs']} keyword lists) from "
          f"{r['documents']} documents, prompts of {r['template']}{'' if r['demos'] else ' without demos'}: {args.out}")
    return 0


def cmd_expand(args: argparse.Namespace) -> int:
    from llmcse.retrieval.expand import ExpandConfig, run_expand
    from llmcse.utils.shards import parse_shard, spawn_workers, without_option

    cfg = ExpandConfig(corpus=args.corpus, out=args.out, llm=args.llm, queries=args.queries, keywords=args.keywords,
                       prompts=args.prompts, max_doc_tokens=args.max_doc_tokens, max_new_tokens=args.max_new_tokens,
                       keyword_max_new_tokens=args.keyword_max_new_tokens, temperature=args.temperature, seed=args.seed,
                       chunk_size=args.chunk_size, n=args.n, tokenizer=args.tokenizer, shard_size=args.shard_size,
                       request_timeout=args.request_timeout, max_retries=args.max_retries)
    shard = parse_shard(args.shard)
    if args.workers > 1:  # N processes each take every N-th shard; this one then folds their files together
        spawn_workers(without_option(args.raw_argv, "--workers"), args.workers, Path(args.out + ".shards") / "logs")
    s = run_expand(cfg, llm=_load_llm_for_cli(args), shard=shard)
    run = s["this_run"]
    if shard:
        print(f"worker {args.shard}: {run['documents']} documents expanded in {run['seconds']} s; run without --shard "
              f"when all workers are done to fold their shards into {cfg.out}")
        return 0
    print(f"{s['documents']} documents expanded ({s['with_all_queries']} with all {cfg.queries} queries, "
          f"{s['without_queries']} with none; mean {s['mean_queries']} queries, {s['mean_keywords']} keywords; "
          f"{s['truncated_documents']} truncated); this run: {run['documents']} documents in {run['seconds']} s")
    if s["rejections_by_reason"]:
        print("rejected by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(s["rejections_by_reason"].items())))
    print(f"expansions: {cfg.out}")
    return 0


def cmd_filter_expansions(args: argparse.Namespace) -> int:
    from llmcse.retrieval.expansion import run_round_trip_filter

    report = run_round_trip_filter(args.corpus, args.input, args.out, model=args.model, top_k=args.top_k,
                                   device=args.device, batch_size=args.batch_size, dtype=args.dtype,
                                   keyword_check=args.keyword_check)
    out = Path(args.out)
    if kw := report["keyword_check"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(kw["rejected_by_reason"].items())) or "none"
        print(f"kept {kw['kept']} of {kw['keywords']} keywords (rejected: {reasons}); "
              f"{kw['documents_left_without_keywords']} documents lost all")
    if args.top_k > 0:
        print(f"kept {report['kept']} of {report['queries']} synthetic queries ({report['kept_fraction']}) whose document "
              f"{args.model} ranks in the top {args.top_k}; {report['documents_left_without_queries']} documents lost all")
    print(f"filtered expansions: {out}")
    return 0


def cmd_sweep_expansions(args: argparse.Namespace) -> int:
    from llmcse.retrieval.sweep import run_sweep

    files = {}
    for item in args.expansions:
        name, eq, path = item.partition("=")
        if not eq or not name or not path:
            raise LlmcseError(f"--expansions {item!r}: expected NAME=FILE, e.g. raw=runs/exp.jsonl")
        files[name] = path
    result = run_sweep(args.model, args.task, files, args.weights or ["1,1,0", "1,0,1", "1,1,1", "mean"], args.output_dir,
                       data_dir=args.data_dir, tune_fraction=args.tune_fraction, device=args.device, dtype=args.dtype,
                       bm25=args.bm25, multirep=args.multirep)
    print((Path(args.output_dir) / "sweep.md").read_text(encoding="utf-8"))
    print(f"chosen on the tune queries (plain and BM25 among the candidates): {result['chosen']}; "
          f"results: {Path(args.output_dir) / 'sweep.json'}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from llmcse.retrieval.index import build_index, check_index_folder
    from llmcse.utils.shards import parse_shard, spawn_workers, without_option

    shard = parse_shard(args.shard)
    check_index_folder(args.out)  # before the workers write their logs into it
    if args.workers > 1:  # N processes each take every N-th shard; this one then assembles
        spawn_workers(without_option(args.raw_argv, "--workers"), args.workers, Path(args.out) / "logs")
    meta = build_index(args.model, args.corpus, args.out, expansions=args.expansions, weights=args.expansion_weights,
                       shard_size=args.shard_size, device=args.device, batch_size=args.batch_size, shard=shard)
    if not meta["complete"]:
        print(f"worker {args.shard}: done; {meta['shards_done']} of {meta['shards']} shards finished. "
              f"Run without --shard when all workers are done to assemble {args.out}")
        return 0
    extra = f" with expansions (weights {meta['weights']})" if meta["expansions"] else ""
    print(f"indexed {meta['documents']} documents ({meta['dim']}-dim, {meta['model']}){extra}: {args.out}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from llmcse.retrieval.index import search_index

    for query, hits in zip(args.query, search_index(args.index, args.query, k=args.k, device=args.device)):
        print(f"query: {query}")
        for hit in hits:
            print(f"  {hit['rank']:>3}. {hit['score']:.4f}  {hit['_id']}  {hit['title']}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from llmcse.pipeline import load_pipeline, run_pipeline

    config, _ = load_pipeline(args.recipe, args.set or [])
    run_dir = Path(args.out or Path("runs") / config["run"].name)
    result = run_pipeline(args.recipe, run_dir, args.set or [], data_dir=args.data_dir, dry_run=args.dry_run)
    width = max(len(name) for name, _, _ in result["plan"])
    print(f"run folder: {run_dir}")
    for name, action, why in result["plan"]:
        print(f"  {name:<{width}}  {action:<6}  {why}")
    if not args.dry_run and (result["before_after"] or result["sweep"]):
        print()
        print(result["before_after"] or result["sweep"])
        details = run_dir / ("eval" if result["before_after"] else "sweep")
        print(f"report: {result['report'][0]} (and .html)   details: {details}   config: {run_dir / 'config.json'}")
    return 0


def cmd_icl_search(args: argparse.Namespace) -> int:
    from llmcse.data.loaders import load_sts
    from llmcse.data.tasks import sts_dev_file
    from llmcse.embed.icl_search import icl_search, load_candidates, sample_pairs
    from llmcse.embed.prompteol import Demo, save_prompteol_model
    from llmcse.utils.io import atomic_write_json

    pairs = sample_pairs(load_sts(sts_dev_file(args.eval_task, args.data_dir, "demo search")), args.max_pairs)
    rows = icl_search(args.base, pairs, load_candidates(args.candidates), template=args.template, dtype=args.dtype,
                      max_seq_length=args.max_seq_length, device=args.device)
    print(f"{args.eval_task}, {len(pairs)} pairs, template {args.template}:")
    for r in rows:
        demo = "(no demo)" if r["demo"] is None else f"{r['demo'][0]!r} -> {r['demo'][1]}"
        print(f"  {r['spearman']:6.2f}  {demo}")
    if args.out:
        out = Path(args.out)
        best = rows[0]["demo"]
        save_prompteol_model(args.base, out, args.template, icl=0 if best is None else 1,
                             demos=None if best is None else [Demo(*best)], dtype=args.dtype,
                             max_seq_length=args.max_seq_length, device=args.device)
        atomic_write_json(out / "icl_search.json", {"eval_task": args.eval_task, "pairs": len(pairs), "rows": rows})
        print(f"saved the best setting to {out}")
    return 0


def cmd_rfd(args: argparse.Namespace) -> int:
    from llmcse.data.tasks import sts_dev_file
    from llmcse.eval import rfd
    from llmcse.utils.io import atomic_write_json, atomic_write_text

    stsb_dev = sts_dev_file(args.eval_task, args.data_dir, "RFD")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.model_dir:
        if len(args.model_dir) != len(args.data):
            raise LlmcseError(f"--model-dir given {len(args.model_dir)} times, --data {len(args.data)} times: "
                              "pair each training run with its data")
        results = [rfd.rfd_over_checkpoints(m, d, stsb_dev, max_pairs=args.max_pairs, device=args.device,
                                            dtype=args.dtype, max_eval_sentences=args.max_eval_sentences)
                   for m, d in zip(args.model_dir, args.data)]
        atomic_write_json(out / "rfd.json", {"runs": results})
        rfd.plot(results, out / "rfd.png")
        rows = [(Path(r["data"]).name, Path(r["model_dir"]).name, str(len(r["checkpoints"])),
                 f"{r['rfd_alignment']:.4f}", f"{r['rfd_uniformity']:.4f}") for r in results]
        header = ("data", "run", "checkpoints", "RFD alignment", "RFD uniformity")
    else:
        ranked = rfd.rank_datasets(args.model, args.data, stsb_dev, max_pairs=args.max_pairs, device=args.device)
        atomic_write_json(out / "rfd.json", ranked)
        rows = [(Path(r["data"]).name, "before training", "-", f"{r['rfd_alignment']:.4f}", f"{r['rfd_uniformity']:.4f}")
                for r in ranked["datasets"]]
        header = ("data", "model state", "checkpoints", "RFD alignment", "RFD uniformity")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
    atomic_write_text(out / "rfd.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"results: {out / 'rfd.json'}" + (f"   plot: {out / 'rfd.png'}" if args.model_dir else ""))
    return 0


def _print_table(title: str, rows: list[tuple[str, ...]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain fallback
        print(title)
        for row in rows:
            print("  ".join(row))
        return
    table = Table(title=title)
    for name in ("task", "split", "metric", "score"):
        table.add_column(name, justify="right" if name == "score" else "left")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmcse", description="Turn LLMs into better text embeddings: synthesize data, train, evaluate.",
        epilog="examples:\n  llmcse data list\n  llmcse eval --model all-MiniLM-L6-v2 --tasks sts\n"
               "  llmcse embed --model all-MiniLM-L6-v2 --input sentences.txt --output emb.npy",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors, no progress bars")
    parser.add_argument("--version", action="version", version=f"llmcse {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    data = sub.add_parser("data", help="inspect benchmark data")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data_list = data_sub.add_parser("list", help="tasks found in the data dir, their sizes, missing standard ones")
    _add_data_dir(data_list)
    data_list.add_argument("--json", action="store_true", help="machine-readable output")
    data_list.set_defaults(func=cmd_data_list)
    data.set_defaults(func=lambda a: (data.print_help(), 0)[1])

    from llmcse.utils.validate import positive_int

    ev = sub.add_parser("eval", help="evaluate a model on STS, transfer, retrieval and geometry tasks",
                        epilog=EPILOG_EVAL, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_options(ev)
    ev.add_argument("--tasks", default="sts", help="comma-separated tasks or groups (default: sts); a name that two "
                    "data folders hold is qualified by its folder: sts/NAME, transfer/NAME, beir/NAME")
    ev.add_argument("--output-dir", help="write results.json and results.md here")
    ev.add_argument("--seed", type=int, default=1111, help="seed for transfer-task folds")
    ev.add_argument("--transfer-max-examples", type=positive_int, metavar="N",
                    help="cap each transfer split at N rows (seeded sample): a quick probe to compare many models")
    ev.add_argument("--expansions", help="retrieval: index documents with their synthetic queries/keywords (llmcse expand)")
    ev.add_argument("--expansion-weights", default="1,1,1",
                    help="w_doc,w_queries,w_keywords for the document vector, or 'mean' (default 1,1,1)")
    ev.add_argument("--multirep", metavar="UNITS[:MIX]",
                    help="retrieval: a document = several vectors, scored by the max: sent or pass [+doc] [+queries "
                         "(needs --expansions)], ':0.3' mixes in the whole-document cosine (e.g. sent+doc+queries)")
    ev.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    _add_data_dir(ev)
    ev.set_defaults(func=cmd_eval)

    em = sub.add_parser("embed", help="embed texts from .txt/.jsonl/.tsv into .npy/.parquet",
                        epilog="example:\n  llmcse embed --model all-MiniLM-L6-v2 --input corpus.jsonl --output corpus.parquet",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_options(em)
    em.add_argument("--input", required=True, help=".txt (a text per line), .jsonl (field 'text'), .tsv (column 'sentence')")
    em.add_argument("--output", required=True, help=".npy (matrix in input order) or .parquet (id, text, embedding)")
    em.add_argument("--field", help="JSONL field / TSV column holding the text")
    em.add_argument("--prompt-name", help="a prompt saved with the model, e.g. query or document")
    em.add_argument("--no-normalize", action="store_true", help="keep raw vectors (default: unit length)")
    em.set_defaults(func=cmd_embed)

    ge = sub.add_parser("generate", help="an LLM writes NLI triplets or 3-level STS records from seed sentences",
                        epilog="example:\n  llmcse generate --recipe sts3 --seeds ../shared/data/unlabeled/wiki_sentences.txt "
                               "--n 200 --out runs/sts3.jsonl\n  llmcse generate --recipe nli --seeds seeds.txt "
                               "--llm openai:http://127.0.0.1:8000/v1#smollm2 --out nli.jsonl\n"
                               "Resumable: rerun the same command after an interruption.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ge.add_argument("--recipe", choices=["nli", "sts3"], default="nli")
    ge.add_argument("--prompts", help="a prompt template .toml (copy src/llmcse/synth/templates/*.toml)")
    ge.add_argument("--seeds", required=True, help=".txt (one per line), .jsonl (text) or .tsv (sentence)")
    ge.add_argument("--out", required=True, help="output JSONL (rejected seeds go to <out>.rejected.jsonl)")
    from llmcse.utils.validate import non_negative_float, positive_int, probability

    ge.add_argument("--n", type=positive_int, help="use the first N usable unique seeds")
    ge.add_argument("--max-new-tokens", type=positive_int, default=48)
    ge.add_argument("--temperature", type=non_negative_float, default=0.8, help="0 is greedy")
    ge.add_argument("--top-p", type=probability, default=0.95, help="nucleus sampling, in (0, 1]")
    ge.add_argument("--seed", type=int, default=1234, help="sampling seed")
    ge.add_argument("--max-attempts", type=positive_int, default=3, help="tries per field before a seed is rejected")
    ge.add_argument("--chunk-size", type=positive_int, default=64, help="seeds per durable write")
    ge.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    _add_llm_options(ge)
    ge.set_defaults(func=cmd_generate)

    fi = sub.add_parser("filter", help="MultiCSR refinement: cheap checks, then LLM 0-5 scoring with thresholds",
                        epilog="example:\n  llmcse filter --in runs/sts3.jsonl --out runs/sts3.kept.jsonl --quantile 0.25\n"
                               "Resumable: scores are kept in <out>.scores.jsonl.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    fi.add_argument("--in", dest="input", required=True, help="records from llmcse generate")
    fi.add_argument("--out", required=True, help="kept records (dropped: <out>.dropped.jsonl, report: <out>.report.json)")
    fi.add_argument("--t-pos", type=float, default=3.0, help="keep positives scored >= this (MultiCSR: 3)")
    fi.add_argument("--t-neg", type=float, default=3.0, help="keep negatives scored <= this (MultiCSR: 3)")
    fi.add_argument("--scoring", choices=["yesno", "rating"], default="yesno",
                    help="yesno: 5 x P(Yes) to 'same meaning?' (default; small LLMs); rating: MultiCSR 0-5 rubric")
    fi.add_argument("--quantile", type=float, default=None,
                    help="thresholds from this run's scores: t_pos = this quantile of positive scores, "
                         "t_neg = 1 - this quantile of negative scores (e.g. 0.25; for weak scorers)")
    fi.add_argument("--no-llm", action="store_true", help="cheap checks only")
    _add_llm_options(fi)
    fi.set_defaults(func=cmd_filter)

    from llmcse.utils.validate import int_at_least, non_negative_float, positive_float, positive_int

    se = sub.add_parser("serve-llm", help="serve a local LLM over an OpenAI-compatible HTTP API (batched)",
                        epilog="example:\n  llmcse serve-llm --llm hf:SmolLM2-135M-Instruct --port 8000\n"
                               "  llmcse generate --llm openai:http://127.0.0.1:8000/v1#smollm2 ...\n"
                               "off this machine (--host 0.0.0.0) clients need a key: --api-key or $LLMCSE_API_KEY",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    se.add_argument("--llm", default="hf:SmolLM2-135M-Instruct")
    se.add_argument("--host", default="127.0.0.1")
    se.add_argument("--port", type=int_at_least(0), default=8000, help="0 picks a free port")
    se.add_argument("--model-name", help="name clients use (default: the spec)")
    se.add_argument("--max-batch", type=positive_int, default=32, help="concurrent requests generated together")
    se.add_argument("--max-wait-ms", type=non_negative_float, default=20.0,
                    help="how long a request waits for others to batch with")
    se.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    se.add_argument("--api-key", help="clients must send 'Authorization: Bearer KEY' (default: $LLMCSE_API_KEY); "
                                      "required when --host is not a loopback address")
    se.add_argument("--max-tokens", type=positive_int, default=512,
                    help="the most tokens one request may ask for (also its default)")
    se.add_argument("--max-prompt-tokens", type=positive_int, default=4096, help="longer prompts get 400")
    se.add_argument("--max-body-bytes", type=positive_int, default=1_000_000, help="larger request bodies get 413")
    se.add_argument("--request-timeout", type=positive_float, default=300.0,
                    help="seconds until a request that got no answer gets 504")
    se.set_defaults(func=cmd_serve_llm)

    tr = sub.add_parser("train", help="contrastive training recipes on the sentence-transformers Trainer",
                        epilog="examples:\n  llmcse train --recipe sup-simcse --data ../shared/data/nli/triplets.tsv "
                               "--out runs/sup\n  llmcse train --recipe ngcse --data runs/sts3.kept.jsonl --out runs/ngcse "
                               "--set max_steps=200 --set lr=3e-5\nrecipes: unsup-simcse (sentences .txt), sup-simcse and "
                               "synth-nli and multicsr (triplets .tsv/.jsonl), ngcse (sts3 .jsonl)",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("--recipe", required=True, choices=["unsup-simcse", "sup-simcse", "synth-nli", "ngcse", "multicsr"])
    tr.add_argument("--data", required=True, help="training data file")
    tr.add_argument("--base", default="all-MiniLM-L6-v2", help="model to start from")
    tr.add_argument("--out", required=True, help="output model folder")
    tr.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a TrainConfig field, e.g. --set max_steps=100 (repeatable)")
    tr.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    _add_data_dir(tr)
    tr.set_defaults(func=cmd_train)

    tg = sub.add_parser("tune-generator", help="LoRA fine-tuning of a causal LM on (prompt, completion) pairs "
                                               "(self-instruct); saves a merged folder for --llm hf:DIR",
                        epilog="examples:\n  llmcse tune-generator --data runs/pairs.jsonl --out runs/gen-r1 --epochs 1\n"
                               "  llmcse expand --llm hf:runs/gen-r1 --corpus corpus.jsonl --out runs/exp-r1.jsonl\n"
                               "data: JSONL {\"prompt\": str or [chat messages], \"completion\": str}; loss on the "
                               "completion only.\nResumable: rerun the same command (a larger --max-steps trains on).",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tg.add_argument("--data", required=True, help="JSONL (prompt, completion) pairs, e.g. from llmcse self-instruct-pairs")
    tg.add_argument("--out", required=True, help="output folder (merged model + tokenizer, checkpoints/, tune_generator.json)")
    tg.add_argument("--base", default="SmolLM2-135M-Instruct", help="causal LM: folder, hub id, bundled name or .gguf")
    tg.add_argument("--epochs", type=float, default=1.0)
    tg.add_argument("--max-steps", type=int, default=-1, help="> 0: train this many steps in all (overrides --epochs)")
    tg.add_argument("--lr", type=float, default=2e-4)
    tg.add_argument("--lora-r", type=int, default=16)
    tg.add_argument("--batch-size", type=int, default=8)
    tg.add_argument("--gradient-accumulation", type=int, default=1)
    tg.add_argument("--max-length", type=int, default=512, help="pairs over this many tokens are left out (counted)")
    tg.add_argument("--seed", type=int, default=42)
    tg.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                    help="the frozen base's dtype (adapters train in float32; the merged model is saved in float32)")
    tg.add_argument("--logging-steps", type=int, default=10)
    tg.add_argument("--save-steps", type=int, default=100, help="checkpoint every N steps (the resume points)")
    tg.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    tg.set_defaults(func=cmd_tune_generator)

    sp = sub.add_parser("self-instruct-pairs", help="training pairs from an expansion: the prompt that produced each "
                                                    "kept query / keyword list -> that text",
                        epilog="example:\n  llmcse self-instruct-pairs --corpus corpus.jsonl --expansions runs/exp.jsonl "
                               "--kept runs/exp.rt.jsonl --out runs/pairs.jsonl\nPrompts are rebuilt as llmcse expand "
                               "built them (template, truncation from <expansions>.summary.json).",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("--corpus", required=True, help="BEIR corpus.jsonl the expansions belong to")
    sp.add_argument("--expansions", required=True, help="the raw llmcse expand output (round 0)")
    sp.add_argument("--kept", help="its filtered version (llmcse filter-expansions --out): the completions "
                                   "(default: the raw file's texts)")
    sp.add_argument("--out", required=True, help="pairs JSONL (report: <out stem>.report.json)")
    sp.add_argument("--prompts", help="template (default: the one the expansion used, from its summary)")
    sp.add_argument("--max-doc-tokens", type=int, help="document truncation (default: the expansion's)")
    sp.add_argument("--tokenizer", help="tokenizer for truncation (default: the expansion's)")
    sp.add_argument("--no-queries", dest="queries", action="store_false", help="no query pairs")
    sp.add_argument("--no-keywords", dest="keywords", action="store_false", help="no keyword pairs")
    sp.add_argument("--no-demos", dest="demos", action="store_false",
                    help="leave the template's in-context demos out of the prompts (shorter to train on)")
    sp.set_defaults(func=cmd_self_instruct_pairs)

    ex = sub.add_parser("expand", help="an LLM writes synthetic queries and keywords for each document of a BEIR corpus",
                        epilog="example:\n  llmcse expand --corpus ../shared/data/beir/arguana/corpus.jsonl --n 100 "
                               "--out runs/arguana.exp.jsonl\n  llmcse eval --model all-MiniLM-L6-v2 --tasks arguana "
                               "--expansions runs/arguana.exp.jsonl --expansion-weights 1,0.5,0.5\n"
                               "Resumable: rerun the same command after an interruption.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("--corpus", required=True, help="BEIR corpus.jsonl")
    ex.add_argument("--out", required=True, help="expansions JSONL ({_id, queries, keywords} + provenance)")
    ex.add_argument("--queries", type=int, default=3, help="synthetic queries per document")
    ex.add_argument("--keywords", type=int, default=5, help="keywords per document (at most)")
    ex.add_argument("--prompts", default="expand", help="template: shipped name or .toml (copy src/llmcse/synth/templates/expand.toml)")
    ex.add_argument("--max-doc-tokens", type=int, default=256, help="documents are truncated to this many tokens")
    ex.add_argument("--max-new-tokens", type=int, default=32, help="token budget of one query")
    ex.add_argument("--keyword-max-new-tokens", type=int, default=32, help="token budget of the keyword list")
    ex.add_argument("--temperature", type=float, default=0.8)
    ex.add_argument("--seed", type=int, default=1234)
    ex.add_argument("--chunk-size", type=int, default=32, help="documents per durable write")
    ex.add_argument("--n", type=int, default=None, help="first N documents only")
    ex.add_argument("--tokenizer", default=None, help="tokenizer for truncation (default: the hf back end's own)")
    ex.add_argument("--shard-size", type=int, default=1000, help="documents per shard when workers share the corpus")
    parallel = ex.add_mutually_exclusive_group()
    parallel.add_argument("--workers", type=int, default=1, help="N local generator processes (one per GPU if there are N)")
    parallel.add_argument("--shard", metavar="K/N", help="be worker K of N (machines sharing the output folder); "
                                                          "a run without --shard folds the shards into --out")
    _add_llm_options(ex)
    ex.set_defaults(func=cmd_expand)

    fe = sub.add_parser("filter-expansions", help="drop meta-phrase keywords, and keep synthetic queries that retrieve "
                                                  "their own document (round trip)",
                        epilog="example:\n  llmcse filter-expansions --corpus ../shared/data/beir/arguana/corpus.jsonl "
                               "--in runs/arguana.exp.jsonl --out runs/arguana.exp.rt.jsonl --top-k 20",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    fe.add_argument("--corpus", required=True, help="BEIR corpus.jsonl the expansions belong to")
    fe.add_argument("--in", dest="input", required=True, help="expansions from llmcse expand")
    fe.add_argument("--out", required=True, help="filtered expansions (report: <out>.report.json)")
    fe.add_argument("--model", default="all-MiniLM-L6-v2", help="the base retriever")
    from llmcse.utils.validate import non_negative_int, positive_int

    fe.add_argument("--top-k", type=non_negative_int, default=20,
                    help="the source document must rank in this many (0: no round trip)")
    fe.add_argument("--no-keyword-check", dest="keyword_check", action="store_false",
                    help="keep keywords as they are (default: drop meta phrases such as 'the document contains "
                         "keywords:' and function words, as llmcse expand does while generating)")
    fe.add_argument("--device", default=None)
    fe.add_argument("--batch-size", type=positive_int, default=64)
    _add_embedder_dtype(fe, "retriever dtype (default float32; bfloat16 ~2x faster on CPUs with bf16)")
    fe.set_defaults(func=cmd_filter_expansions)

    sw = sub.add_parser("sweep-expansions", help="plain vs expanded retrieval, weights chosen on held-out queries",
                        epilog="example:\n  llmcse sweep-expansions --task arguana --expansions raw=runs/exp.jsonl "
                               "--expansions filtered=runs/exp.rt.jsonl --weights 1,1,0 --weights 1,1,1 --output-dir runs/sweep\n"
                               "The task's queries are split by id hash: weights are chosen on one part, reported on the other.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("--task", required=True, help="a BEIR task from llmcse data list (e.g. arguana)")
    sw.add_argument("--model", default="all-MiniLM-L6-v2")
    sw.add_argument("--expansions", action="append", required=True, metavar="NAME=FILE", help="repeatable")
    sw.add_argument("--weights", action="append", help="w_doc,w_q,w_k or mean; repeatable (default 1,1,0 1,0,1 1,1,1 mean)")
    sw.add_argument("--tune-fraction", type=float, default=0.5, help="share of the queries used to choose the setting")
    sw.add_argument("--output-dir", required=True)
    sw.add_argument("--bm25", action="store_true", help="add BM25 as a row, a candidate like the others (needs llmcse[bm25])")
    sw.add_argument("--multirep", action="append", metavar="UNITS[:MIX]",
                    help="multi-representation rows: a document = its sentences (sent) or passages (pass) [+doc] "
                         "[+queries: each synthetic query], scored by the max; ':0.3' mixes in the whole-document "
                         "cosine; repeatable, e.g. --multirep sent --multirep sent+doc+queries")
    sw.add_argument("--device", default=None)
    _add_embedder_dtype(sw)
    _add_data_dir(sw)
    sw.set_defaults(func=cmd_sweep_expansions)

    ix = sub.add_parser("index", help="embed a BEIR corpus (optionally with expansions) into a search index folder",
                        epilog="example:\n  llmcse index --model all-MiniLM-L6-v2 --corpus corpus.jsonl --expansions exp.jsonl "
                               "--out runs/idx\n  llmcse index --model all-MiniLM-L6-v2 --corpus corpus.jsonl --out runs/idx --workers 4"
                               "\n  llmcse search runs/idx \"how do volcanoes form\"",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ix.add_argument("--model", default="all-MiniLM-L6-v2")
    ix.add_argument("--corpus", required=True, help="BEIR corpus.jsonl")
    ix.add_argument("--out", required=True, help="index folder (vectors.npy, docs.jsonl, index.json)")
    ix.add_argument("--expansions", help="synthetic queries/keywords per document (llmcse expand)")
    ix.add_argument("--expansion-weights", default="1,1,1", help="w_doc,w_queries,w_keywords or 'mean'")
    ix.add_argument("--shard-size", type=positive_int, default=10_000, help="documents embedded per shard (resumable unit)")
    parallel = ix.add_mutually_exclusive_group()
    parallel.add_argument("--workers", type=positive_int, default=1, help="embed shards in N local processes (one per GPU if there are N)")
    parallel.add_argument("--shard", metavar="K/N", help="be worker K of N (e.g. on N machines sharing --out); "
                                                          "a run without --shard assembles the index")
    ix.add_argument("--device", default=None)
    ix.add_argument("--batch-size", type=positive_int, default=64)
    ix.set_defaults(func=cmd_index)

    sr = sub.add_parser("search", help="query an index built by llmcse index")
    sr.add_argument("index", help="index folder")
    sr.add_argument("query", nargs="+", help="one or more queries")
    sr.add_argument("-k", type=positive_int, default=10, help="hits per query")
    sr.add_argument("--device", default=None)
    sr.set_defaults(func=cmd_search)

    ru = sub.add_parser("run", help="a recipe in one resumable run: generate -> filter -> train -> eval (or expand -> sweep)",
                        epilog="example:\n  llmcse run recipes/quickstart.toml\n  llmcse run recipes/quickstart.toml "
                               "--set train.lr=3e-5 --dry-run   (shows which stages rerun)\n"
                               "  llmcse run recipes/retrieval-expansion.toml --set expand.n=500\n"
                               "recipes: quickstart, ngcse, multicsr, prompteol-lora, retrieval-expansion,\n"
                               "  retrieval-self-instruct (recipes/*.toml)\n"
                               "Rerun after an interruption: finished stages are skipped, the interrupted one resumes.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ru.add_argument("recipe", help="recipe TOML: [run] [generate] [filter] [train] [eval], or [expand] [filter_expansions] [sweep]")
    ru.add_argument("--out", help="run folder (default: runs/<run.name>)")
    ru.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a recipe value (repeatable)")
    ru.add_argument("--dry-run", action="store_true", help="show the plan: stages to run, resume or skip, and why")
    _add_data_dir(ru)
    ru.set_defaults(func=cmd_run)

    ic = sub.add_parser("icl-search", help="PromptEOL: pick the in-context demo that scores best on an STS dev split",
                        epilog="example:\n  llmcse icl-search --base SmolLM2-135M-Instruct --max-pairs 500 --out runs/pe-icl\n"
                               "candidates: the shipped demos, or --candidates FILE (.tsv sentence<TAB>word, .jsonl)",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ic.add_argument("--base", required=True, help="causal LM (folder, hub id, bundled name or .gguf)")
    ic.add_argument("--template", default="prompteol")
    ic.add_argument("--candidates", help="demo candidates (default: the shipped ones)")
    ic.add_argument("--eval-task", default="stsb:dev", help="STS dev split used for the choice")
    ic.add_argument("--max-pairs", type=int, default=None, help="sample this many dev pairs (faster)")
    ic.add_argument("--max-seq-length", type=int)
    ic.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    ic.add_argument("--device", default="cpu")
    ic.add_argument("--out", help="save a PromptEOL folder with the best demo here")
    _add_data_dir(ic)
    ic.set_defaults(func=cmd_icl_search)

    rf = sub.add_parser("rfd", help="Relative Fitting Difficulty (NGCSE): train vs eval geometry across checkpoints",
                        epilog="examples:\n  llmcse rfd --data runs/sts3.kept.jsonl --model-dir runs/ngcse --output-dir runs/rfd\n"
                               "  llmcse rfd --model all-MiniLM-L6-v2 --data a.jsonl --data b.tsv --output-dir runs/rank"
                               "   (before training: rank data sets)\n"
                               "Train with --set keep_checkpoints=0 so every checkpoint stays for the trajectory.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    rf.add_argument("--data", action="append", required=True, help="training data (.jsonl records, .tsv triplets, .txt sentences); repeatable")
    target = rf.add_mutually_exclusive_group(required=True)
    target.add_argument("--model-dir", action="append", help="a training run folder (one per --data, same order)")
    target.add_argument("--model", help="one fixed model: rank the --data sets before training")
    rf.add_argument("--output-dir", required=True)
    rf.add_argument("--max-pairs", type=int, default=1000, help="training pairs sampled per data set")
    rf.add_argument("--eval-task", default="stsb:dev", help="STS dev split whose pairs scored >= 4 are the eval positives")
    rf.add_argument("--max-eval-sentences", type=int, help="sample the eval sentences (uniformity) to this many")
    rf.add_argument("--device", default=None)
    _add_embedder_dtype(rf, "load checkpoints in this dtype (bfloat16: 2-3x faster for LLM embedders on CPU)")
    _add_data_dir(rf)
    rf.set_defaults(func=cmd_rfd)

    from llmcse.embed.prompteol import add_prompteol_parser

    add_prompteol_parser(sub)
    return parser


def _version() -> str:
    from llmcse import __version__

    return __version__


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose >= 2 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("llmcse").setLevel(level)
    # third-party chatter stays at WARNING unless -vv
    for noisy in ("sentence_transformers", "transformers", "httpx", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    if verbose < 1:
        # transformers' "Loading weights" bars say nothing useful; our own bars stay.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()


def _files(args: argparse.Namespace) -> tuple[list[tuple[str, str]], list, list]:
    """(inputs as (option, path), output files, output folders) of a command that reads and writes files."""
    def under(folder, *names):
        return [Path(folder) / n for n in names] if folder else []

    command = args.command
    if command == "eval":
        return [("--expansions", args.expansions)], under(args.output_dir, "results.json", "results.md"), []
    if command == "embed":
        return [("--input", args.input)], [args.output], []
    if command == "generate":
        return [("--seeds", args.seeds)], [args.out], []
    if command == "filter":
        return [("--in", args.input)], [args.out], []
    if command == "train":
        return [("--data", args.data)], [], [args.out]
    if command == "expand":
        return [("--corpus", args.corpus)], [args.out], []
    if command == "filter-expansions":
        return [("--corpus", args.corpus), ("--in", args.input)], [args.out], []
    if command == "sweep-expansions":
        return ([("--expansions", item.partition("=")[2]) for item in args.expansions if "=" in item],
                under(args.output_dir, "sweep.json", "sweep.md"), [])
    if command == "index":
        from llmcse.retrieval.index import INDEX_FILES

        return [("--corpus", args.corpus), ("--expansions", args.expansions)], under(args.out, *INDEX_FILES), []
    if command == "search":  # search_index checks its folder itself: it can tell a build killed mid-swap
        return [], [], []
    if command == "rfd":
        return ([("--data", d) for d in args.data] + [("--model-dir", m) for m in args.model_dir or []],
                under(args.output_dir, "rfd.json", "rfd.md", "rfd.png"), [])
    if command == "icl-search":
        return [("--candidates", args.candidates)], [], [args.out]
    return [], [], []


def _check_files(args: argparse.Namespace) -> None:
    """Before a command does anything: every input exists (a missing one is never read as empty) and
    no output would overwrite an input or a file beside it (``filter --in g.jsonl --out g.jsonl``)."""
    from llmcse.utils.safety import refuse_overwriting_inputs, require_input

    inputs, outputs, folders = _files(args)
    for option, path in inputs:
        require_input(path, option)
    refuse_overwriting_inputs([path for _, path in inputs], outputs, folders)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.raw_argv = list(sys.argv[1:] if argv is None else argv)  # --workers relaunches the same command per shard
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    _configure_logging(args.verbose, args.quiet)
    try:
        if not getattr(args, "dry_run", False):
            _check_files(args)
        return int(args.func(args) or 0)
    except LlmcseError as e:
        print(f"llmcse: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmcse: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
