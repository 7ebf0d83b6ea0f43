"""Generation throughput: batched local back end vs naive one-prompt-at-a-time generate.

Same model, same prompts (the sts3 recipe's chats over real wiki seeds), same dtype and
greedy decoding with a fixed number of new tokens, measured in one run. Writes
``benchmarks/results/generation.json`` and ``generation.md``.

    python benchmarks/generation.py [--prompts 64] [--batch-sizes 16 32 64] [--dtype auto]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--naive-prompts", type=int, default=12, help="the naive loop is slow; time a subset")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--note", default="", help="conditions worth recording (e.g. other load on the machine)")
    args = parser.parse_args()

    import torch

    from llmcse.data.paths import resolve_data_dir
    from llmcse.llm.hf import HFGenerator, common_prefix
    from llmcse.synth.prompts import load_template
    from llmcse.synth.seeds import read_seeds

    seeds, _ = read_seeds(resolve_data_dir() / "unlabeled" / "wiki_sentences.txt")
    template = load_template("sts3")
    prompts = [template.fields["positive"].messages(s, template.system) for s in seeds[: args.prompts]]
    gen = HFGenerator(args.model, dtype=args.dtype, batch_size=1)
    tok, model = gen.tokenizer, gen.model

    def run(batch: list, batch_size: int) -> tuple[int, float]:
        """Greedy, exactly new_tokens per prompt (no early stop), so every run does the same work."""
        texts = [gen.render(p) for p in batch]
        produced, t0 = 0, time.perf_counter()
        for start in range(0, len(texts), batch_size):
            enc = tok(texts[start:start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                     do_sample=False, pad_token_id=tok.pad_token_id)
            produced += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
        return produced, time.perf_counter() - t0

    def run_prefix_cached(batch: list, batch_size: int) -> tuple[int, float]:
        """As ``run``, but the prefix a batch shares (system prompt + demos) comes from one cached
        forward pass: what ``HFGenerator.generate`` does."""
        ids = [tok(gen.render(p), add_special_tokens=False)["input_ids"] for p in batch]
        produced, t0 = 0, time.perf_counter()
        for start in range(0, len(ids), batch_size):
            rows = ids[start:start + batch_size]
            n_shared = min(len(common_prefix(rows)), min(map(len, rows)) - 1)
            input_ids, mask = gen._pad(rows, n_shared)
            with torch.no_grad():
                out = model.generate(input_ids=input_ids, attention_mask=mask,
                                     past_key_values=gen._cached_prefix(tuple(rows[0][:n_shared]), len(rows)),
                                     max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                     do_sample=False, pad_token_id=tok.pad_token_id)
            produced += (out.shape[1] - input_ids.shape[1]) * out.shape[0]
        return produced, time.perf_counter() - t0

    run(prompts[:2], 2)  # warm-up
    naive_tokens, naive_s = run(prompts[: args.naive_prompts], 1)
    naive_tps = naive_tokens / naive_s
    rows = [{"mode": "naive (1 prompt per generate)", "batch_size": 1, "prompts": args.naive_prompts,
             "tokens": naive_tokens, "seconds": round(naive_s, 2), "tokens_per_s": round(naive_tps, 1), "speedup": 1.0}]
    for bs in args.batch_sizes:
        tokens, seconds = run(prompts, bs)
        rows.append({"mode": "batched, left padding", "batch_size": bs, "prompts": len(prompts), "tokens": tokens,
                     "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
                     "speedup": round(tokens / seconds / naive_tps, 2)})
    for bs in args.batch_sizes:
        tokens, seconds = run_prefix_cached(prompts, bs)
        rows.append({"mode": "batched + cached shared prefix", "batch_size": bs, "prompts": len(prompts),
                     "tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
                     "speedup": round(tokens / seconds / naive_tps, 2)})
    # Natural lengths (each prompt stops at its end-of-turn, as in a real run): useful tokens/s of
    # the back end llmcse uses (cached prefix + rows retired when they end) vs the naive loop.
    from llmcse.llm.base import SamplingParams

    def run_natural(batch: list, batch_size: int, naive: bool) -> tuple[int, float]:
        gen.batch_size = batch_size
        before, t0 = gen.stats.completion_tokens, time.perf_counter()
        if naive:
            for p in batch:
                enc = tok(gen.render(p), return_tensors="pt", add_special_tokens=False)
                with torch.no_grad():
                    out = model.generate(**enc, max_new_tokens=args.new_tokens, do_sample=False,
                                         pad_token_id=tok.pad_token_id)
                gen.stats.completion_tokens += int((out[0, enc["input_ids"].shape[1]:] != tok.pad_token_id).sum())
        else:
            gen.generate(batch, SamplingParams(max_new_tokens=args.new_tokens, temperature=0.0))
        return gen.stats.completion_tokens - before, time.perf_counter() - t0

    nat_tokens, nat_s = run_natural(prompts[: args.naive_prompts], 1, naive=True)
    nat_tps = nat_tokens / nat_s
    rows.append({"mode": "naive, natural stops", "batch_size": 1, "prompts": args.naive_prompts, "tokens": nat_tokens,
                 "seconds": round(nat_s, 2), "tokens_per_s": round(nat_tps, 1), "speedup": 1.0})
    for bs in args.batch_sizes:
        tokens, seconds = run_natural(prompts, bs, naive=False)
        rows.append({"mode": "HFGenerator.generate, natural stops (prefix cache + row retirement)", "batch_size": bs,
                     "prompts": len(prompts), "tokens": tokens, "seconds": round(seconds, 2),
                     "tokens_per_s": round(tokens / seconds, 1), "speedup": round(tokens / seconds / nat_tps, 2)})
    result = {"model": args.model, "dtype": str(model.dtype), "device": gen.device, "new_tokens": args.new_tokens,
              "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
              "command": "python benchmarks/generation.py " + " ".join(
                  f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()),
              "note": args.note, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "generation.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Generation throughput", "", f"{args.model}, {result['dtype']}, {gen.device}, {result['torch_threads']} threads, "
             f"greedy, sts3 'positive' chats over wiki seeds. Fixed-length rows: exactly {args.new_tokens} new tokens per "
             f"prompt; natural-stop rows: each prompt ends at its end-of-turn token (at most {args.new_tokens}), "
             "tokens/s counts real tokens only.", "",
             "| mode | batch | prompts | tokens/s | speedup vs naive (same stopping) |", "|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['batch_size']} | {r['prompts']} | {r['tokens_per_s']} | {r['speedup']}x |" for r in rows]
    lines += ["", f"Command: `{result['command']}`"]
    if args.note:
        lines += ["", f"Note: {args.note}"]
    (RESULTS / "generation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
