"""Training speed: llmcse's InfoNCE + Hierarchical Triplet + false-negative masking vs plain
sentence-transformers MultipleNegativesRankingLoss, same model, same batch, same inputs, one run.

All losses get the same 4 columns (anchor, positive, intermediate, negative): MNRL treats the
last two as hard negatives, so every configuration encodes the same texts and the difference is
the loss itself (plus, for masking with a frozen reference model, that model's forward pass).
Configurations are interleaved round-robin so that load drift hits them alike. Writes
``benchmarks/results/training_speed.json`` and ``.md``.

    python benchmarks/training_speed.py [--steps 20] [--rounds 3] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def load_rows(n: int, seed: int) -> tuple[list[tuple[str, str, str, str]], str]:
    """4-tuples from the committed sts3 data set if present, else NLI triplets (intermediate = positive)."""
    from llmcse.data.loaders import load_triplets
    from llmcse.data.paths import resolve_data_dir
    from llmcse.utils.jsonl import read_jsonl

    generated = Path(__file__).parent / "data" / "sts3_smollm2.jsonl"
    if generated.exists():
        rows = [(r["seed"], r["positive"], r["intermediate"], r["negative"]) for r in read_jsonl(generated)]
        source = str(generated.relative_to(Path(__file__).parent.parent))
    else:
        rows = [(t.anchor, t.positive, t.positive, t.negative) for t in load_triplets(resolve_data_dir() / "nli" / "triplets.tsv")]
        source = "shared nli/triplets.tsv (intermediate = positive)"
    random.Random(seed).shuffle(rows)
    return (rows * (n // max(len(rows), 1) + 1))[:n], source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-seq-length", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from llmcse.embed.models import load_embedder
    from llmcse.train.losses import HierarchicalTripletLoss, ReferenceEmbeddings

    torch.manual_seed(args.seed)
    rows, source = load_rows(args.batch_size * args.steps, args.seed)
    base = load_embedder(args.model, device="cpu", max_seq_length=args.max_seq_length)

    def make(name: str):
        model = copy.deepcopy(base)
        model.train()
        if name == "MNRL (sentence-transformers)":
            loss = MultipleNegativesRankingLoss(model, scale=20.0)
        elif name == "InfoNCE + HT":
            loss = HierarchicalTripletLoss(model)
        elif name == "InfoNCE + HT + masking (own embeddings)":
            loss = HierarchicalTripletLoss(model, false_negative_threshold=0.95)
        elif name == "InfoNCE + HT + masking (frozen reference model)":
            loss = HierarchicalTripletLoss(model, false_negative_threshold=0.95, reference_model=copy.deepcopy(base))
        else:  # the default of llmcse train: the reference model's embeddings computed once, before training
            t0 = time.perf_counter()
            table = ReferenceEmbeddings(model, copy.deepcopy(base), [t for r in rows for t in r])
            table_seconds[0] = time.perf_counter() - t0
            loss = HierarchicalTripletLoss(model, false_negative_threshold=0.95, reference_model=table)
        return model, loss, torch.optim.AdamW(model.parameters(), lr=2e-5)

    table_seconds = [0.0]
    names = ["MNRL (sentence-transformers)", "InfoNCE + HT", "InfoNCE + HT + masking (own embeddings)",
             "InfoNCE + HT + masking (frozen reference model)", "InfoNCE + HT + masking (precomputed reference table)"]
    setups = {name: make(name) for name in names}
    batches = []
    for start in range(0, len(rows), args.batch_size):
        chunk = rows[start:start + args.batch_size]
        batches.append([base.tokenize([r[c] for r in chunk]) for c in range(4)])

    def step(name: str, features) -> None:
        model, loss, opt = setups[name]
        opt.zero_grad()
        loss([{k: v for k, v in f.items()} for f in features], None).backward()
        opt.step()

    for name in names:  # warm-up
        step(name, batches[0])
    seconds = {name: 0.0 for name in names}
    for _ in range(args.rounds):
        for name in names:
            t0 = time.perf_counter()
            for features in batches:
                step(name, features)
            seconds[name] += time.perf_counter() - t0
    pairs = args.rounds * len(batches) * args.batch_size
    baseline = pairs / seconds[names[0]]
    table = [{"loss": name, "pairs_per_s": round(pairs / seconds[name], 1),
              "overhead_vs_mnrl_pct": round(100 * (baseline / (pairs / seconds[name]) - 1), 1)} for name in names]
    result = {"model": args.model, "batch_size": args.batch_size, "max_seq_length": args.max_seq_length,
              "steps_per_round": len(batches), "rounds": args.rounds, "data": source,
              "torch_threads": torch.get_num_threads(), "reference_table_build_s": round(table_seconds[0], 1),
              "command": f"python benchmarks/training_speed.py --steps {args.steps} --rounds {args.rounds} "
                         f"--batch-size {args.batch_size}", "rows": table}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Training speed: loss overhead", "",
             f"{args.model}, batch {args.batch_size}, max_seq_length {args.max_seq_length}, CPU, "
             f"{result['torch_threads']} threads; {args.rounds} interleaved rounds x {len(batches)} steps; data: {source}.",
             "Every loss gets the same 4 columns (MNRL: intermediate and negative as hard negatives).", "",
             "| loss | training pairs/s | overhead vs MNRL |", "|---|---|---|"]
    lines += [f"| {r['loss']} | {r['pairs_per_s']} | {r['overhead_vs_mnrl_pct']:+.1f}% |" for r in table]
    lines += ["", f"The precomputed table (one pass of the frozen model over the {len(rows)} rows' texts, before "
              f"training) took {table_seconds[0]:.1f} s; it replaces a reference forward pass at every step of every epoch.",
              "", f"Command: `{result['command']}`"]
    (RESULTS / "training_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
