"""Embedding throughput of a PromptEOL decoder embedder on CPU: batched + length-sorted encoding
(sentence-transformers' ``encode``, what llmcse uses) vs a naive one-sentence-at-a-time loop,
same model, same sentences, one run. Writes ``benchmarks/results/embedding_speed.json`` and ``.md``.

    python benchmarks/embedding_speed.py [--base SmolLM2-135M-Instruct] [--sentences 512] [--naive 64]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="SmolLM2-135M-Instruct")
    parser.add_argument("--sentences", type=int, default=512, help="STS-B test sentences encoded in batched mode")
    parser.add_argument("--naive", type=int, default=64, help="sentences for the (slow) naive loop")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    args = parser.parse_args()

    import numpy as np
    import torch

    from llmcse.data.loaders import load_sts
    from llmcse.data.paths import resolve_data_dir
    from llmcse.embed.prompteol import build_prompteol_model

    pairs = load_sts(resolve_data_dir() / "sts" / "stsb_test.tsv")
    sentences = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))[: args.sentences]
    model = build_prompteol_model(args.base, dtype=args.dtype)
    model.encode(sentences[:8], batch_size=8)  # warm-up

    t0 = time.perf_counter()
    batched = model.encode(sentences, batch_size=args.batch_size, convert_to_numpy=True)
    batched_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive = np.concatenate([model.encode([s], batch_size=1, convert_to_numpy=True) for s in sentences[: args.naive]])
    naive_s = time.perf_counter() - t0
    # same vectors either way (left padding): the speed-up costs no accuracy
    max_diff = float(np.abs(batched[: args.naive] - naive).max())

    rows = [{"mode": "naive (1 sentence per call)", "sentences": args.naive, "sentences_per_s": round(args.naive / naive_s, 1)},
            {"mode": f"batched {args.batch_size}, length-sorted", "sentences": len(sentences),
             "sentences_per_s": round(len(sentences) / batched_s, 1)}]
    speedup = rows[1]["sentences_per_s"] / rows[0]["sentences_per_s"]
    result = {"base": args.base, "dtype": args.dtype, "torch_threads": torch.get_num_threads(), "rows": rows,
              "speedup": round(speedup, 2), "max_abs_diff_batched_vs_naive": max_diff,
              "command": f"python benchmarks/embedding_speed.py --base {args.base} --sentences {args.sentences} "
                         f"--naive {args.naive} --batch-size {args.batch_size} --dtype {args.dtype}"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "embedding_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Embedding throughput (PromptEOL, CPU)", "",
             f"{args.base} PromptEOL, {args.dtype}, {result['torch_threads']} threads, STS-B test sentences.", "",
             "| mode | sentences | sentences/s |", "|---|---|---|"]
    lines += [f"| {r['mode']} | {r['sentences']} | {r['sentences_per_s']} |" for r in rows]
    lines += ["", f"Speed-up {speedup:.2f}x; largest difference between batched and one-by-one vectors: {max_diff:.1e}.",
              "", f"Command: `{result['command']}`"]
    (RESULTS / "embedding_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
