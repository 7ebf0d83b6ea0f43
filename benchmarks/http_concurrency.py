"""Generation through the OpenAI-compatible HTTP back end: throughput vs client concurrency.

A local ``llmcse serve-llm``-style server (the bundled SmolLM2 behind the batching server) is
started in this process; the HTTP client sends the same prompts with 1, 2, 4, ... requests in
flight. The server batches concurrent requests, so throughput grows with concurrency until one
batch saturates the hardware. The same client, pointed at vLLM (``vllm serve <model>``) or a
llama.cpp server (``llama-server -m model.gguf --parallel N``), scales the same way on a GPU:
``--url`` measures such a running server instead (its generated and prompt tokens/s are what a
large ``llmcse expand`` or ``generate`` job costs; see retrieval_notes.md for the arithmetic).
Writes ``benchmarks/results/http_concurrency.json`` and ``.md`` (``http_concurrency_<tag>.*`` with --url).

    python benchmarks/http_concurrency.py [--prompts 64] [--concurrency 1 2 4 8 16 32]
    python benchmarks/http_concurrency.py --url http://gpu-host:8000/v1#HuggingFaceTB/SmolLM2-135M-Instruct \
        --tag vllm-h100 --prompts 1024 --concurrency 1 16 64 256
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=32, help="server-side batch limit (local server)")
    parser.add_argument("--url", metavar="BASE#MODEL", help="measure this running OpenAI-compatible server instead")
    parser.add_argument("--tag", default="server", help="with --url: results go to http_concurrency_<tag>.*")
    args = parser.parse_args()

    import torch

    from llmcse.data.paths import resolve_data_dir
    from llmcse.llm import load_llm
    from llmcse.llm.base import SamplingParams
    from llmcse.llm.hf import HFGenerator
    from llmcse.llm.server import make_server
    from llmcse.synth.prompts import load_template
    from llmcse.synth.seeds import read_seeds

    server = None
    if args.url:
        spec = f"openai:{args.url}"  # the back-end spec `llmcse --llm` takes: its parsing and errors
    else:
        backend = HFGenerator(args.model, dtype="auto", batch_size=args.max_batch)
        server = make_server(backend, host="127.0.0.1", port=0, model_name="smollm2", max_batch=args.max_batch)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        spec = f"openai:http://127.0.0.1:{server.server_address[1]}/v1#smollm2"

    seeds, _ = read_seeds(resolve_data_dir() / "unlabeled" / "wiki_sentences.txt")
    template = load_template("nli")
    prompts = [template.fields["positive"].messages(s, template.system) for s in seeds[: args.prompts]]
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0)
    load_llm(spec, concurrency=2).generate(prompts[:2], params)  # warm-up

    rows = []
    for c in args.concurrency:
        client = load_llm(spec, concurrency=c)
        # token counts: a remote server's usage fields; the local back end's own tokenizer counts
        counter = client.stats if args.url else backend.stats
        before, prompt_before, t0 = counter.completion_tokens, counter.prompt_tokens, time.perf_counter()
        client.generate(prompts, params)
        seconds = time.perf_counter() - t0
        tokens, prompt_tokens = counter.completion_tokens - before, counter.prompt_tokens - prompt_before
        rows.append({"concurrency": c, "seconds": round(seconds, 2), "tokens": tokens,
                     "tokens_per_s": round(tokens / seconds, 1), "prompt_tokens_per_s": round(prompt_tokens / seconds, 1),
                     "requests_per_s": round(len(prompts) / seconds, 2)})
        print(rows[-1], flush=True)
    if server:
        server.shutdown()
    for r in rows:
        r["speedup_vs_1"] = round(r["tokens_per_s"] / rows[0]["tokens_per_s"], 2)
    command = "python benchmarks/http_concurrency.py --prompts {} --concurrency {} ".format(
        args.prompts, " ".join(map(str, args.concurrency)))
    command += f"--url {args.url} --tag {args.tag}" if args.url else f"--max-batch {args.max_batch}"
    result = {"model": client.model if args.url else args.model, "server": args.url or "local batching server",
              "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
              "server_max_batch": None if args.url else args.max_batch,
              "torch_threads": None if args.url else torch.get_num_threads(), "rows": rows, "command": command}
    where = (args.url if args.url else f"{args.model} behind the local batching server (max batch {args.max_batch}), "
             f"CPU {result['torch_threads']} threads")
    stem = f"http_concurrency_{args.tag}" if args.url else "http_concurrency"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Generation over HTTP: throughput vs concurrency", "",
             f"{where}; OpenAI-compatible client, {len(prompts)} prompts, greedy, up to {args.max_new_tokens} new tokens.",
             "", "| requests in flight | tokens/s | prompt tokens/s | requests/s | speed-up vs 1 |", "|---|---|---|---|---|"]
    lines += [f"| {r['concurrency']} | {r['tokens_per_s']} | {r['prompt_tokens_per_s']} | {r['requests_per_s']} | "
              f"{r['speedup_vs_1']}x |" for r in rows]
    lines += ["", f"Command: `{command}`"]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
