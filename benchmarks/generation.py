"""Generation speed against peers: six ways to run the same greedy prompts, side by side in one run.

Same model (SmolLM2-135M-Instruct from the bundled package), same prompts (the shipped ``nli``
template's chats over real wiki seeds: half 'positive', half 'negative'), greedy, the same token
budget, each prompt stopping at its end-of-turn token as in a real run:

a. naive: one prompt per ``model.generate`` (a subset: it is slow);
b. transformers ``generate``, batched (left padding), the same batches as (d);
b2. as (b), with the batch's shared prompt prefix (system prompt + demos) prefilled once and passed
    as ``past_key_values``: what llmcse's own loop also does, done with ``generate``;
c. transformers continuous batching (``model.generate_batch``, paged KV cache);
d. llmcse's shipped hf back end (``load_llm("hf:...")``: whatever ``HFGenerator.generate`` does);
e. HTTP, ``concurrency`` requests in flight, to ``transformers serve --continuous-batching`` through
   llmcse's ``openai:`` client;
f. HTTP, the same, to ``llmcse serve-llm``.

The machine is shared, so the prompts run in rounds (one batch per round) and every round runs every
path, in alternating order: slow drifts of the background load fall on all paths alike. The
ratios are the claim; the absolute tokens/s depend on the load (recorded). Generated tokens are
counted the same way for every path (the output text re-tokenized), and outputs are compared
with (b)'s: greedy decoding should give the same text (exact match rate per path).

Writes ``benchmarks/results/generation.json`` and ``generation.md``.

    OMP_NUM_THREADS=1 python benchmarks/generation.py [--prompts 64] [--batch-size 32] [--new-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
PATHS = {
    "naive": "a. naive: 1 prompt per `generate`",
    "generate": "b. transformers `generate`, batched",
    "generate_prefix": "b2. transformers `generate`, batched + shared-prefix KV cache",
    "continuous": "c. transformers continuous batching (`generate_batch`)",
    "llmcse_hf": "d. llmcse hf back end (shipped)",
    "http_transformers": "e. HTTP -> `transformers serve --continuous-batching`",
    "http_serve_llm": "f. HTTP -> `llmcse serve-llm`",
}
IN_PROCESS = ("naive", "generate", "generate_prefix", "continuous", "llmcse_hf")
TRANSFORMERS_PATHS = ("generate", "generate_prefix", "continuous", "http_transformers")
KV_BLOCKS = 48  # paged KV cache blocks (256 tokens each) for (c) and (e), as tests/test_transformers_serve.py
READY_TIMEOUT_S = 300


# -- prompts --------------------------------------------------------------------------------------

def build_prompts(n: int) -> list:
    """n chats, field-major: the first n/2 ask for paraphrases, the rest for contradictions."""
    from llmcse.data.paths import resolve_data_dir
    from llmcse.synth.prompts import load_template
    from llmcse.synth.seeds import read_seeds

    template = load_template("nli")
    fields = list(template.fields.values())
    seeds, _ = read_seeds(resolve_data_dir() / "unlabeled" / "wiki_sentences.txt")
    per_field = n // len(fields)
    return [f.messages(s, template.system) for f in fields for s in seeds[:per_field]]


# -- memory ---------------------------------------------------------------------------------------

class PeakRSS:
    """Samples this process's RSS every 50 ms: the peak while a path runs."""

    def __init__(self):
        import psutil

        self._proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self):
        self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def server_peak_rss(pid: int) -> int | None:
    """VmHWM (peak resident set) of a server process, bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


# -- in-process paths -----------------------------------------------------------------------------

class Local:
    """Paths (a)-(d) on one set of weights: the hf back end's own model object."""

    def __init__(self, gen, new_tokens: int, kv_blocks: int):
        import torch

        self.gen, self.tok, self.model, self.torch = gen, gen.tokenizer, gen.model, torch
        self.new_tokens, self.kv_blocks = new_tokens, kv_blocks
        self.pad = self.tok.pad_token_id
        eos = self.model.generation_config.eos_token_id
        self.end_ids = sorted({self.tok.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None})

    def ids(self, prompts: list) -> list[list[int]]:
        return [self.tok(self.gen.render(p), add_special_tokens=False)["input_ids"] for p in prompts]

    def _text(self, new_ids) -> str:
        """A row's new tokens up to its first end-of-turn token, as text."""
        new_ids = list(new_ids)
        for i, t in enumerate(new_ids):
            if t in self.end_ids:
                new_ids = new_ids[:i]
                break
        return self.tok.decode(new_ids, skip_special_tokens=True)

    def _generate(self, **inputs):
        with self.torch.no_grad():
            return self.model.generate(**inputs, max_new_tokens=self.new_tokens, do_sample=False,
                                       eos_token_id=self.end_ids, pad_token_id=self.pad)

    def naive(self, prompts: list) -> list[str]:
        out = []
        for row in self.ids(prompts):
            ids = self.torch.tensor([row])
            gen = self._generate(input_ids=ids, attention_mask=self.torch.ones_like(ids))
            out.append(self._text(gen[0, len(row):].tolist()))
        return out

    def generate(self, prompts: list) -> list[str]:
        rows = self.ids(prompts)
        width = max(map(len, rows))
        ids = self.torch.tensor([[self.pad] * (width - len(r)) + r for r in rows])  # (batch, width), left padding
        mask = self.torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        gen = self._generate(input_ids=ids, attention_mask=mask)
        return [self._text(g[width:].tolist()) for g in gen]

    def generate_prefix(self, prompts: list) -> list[str]:
        """The shared prefix's keys/values from one forward pass, repeated per row; the padding
        sits between prefix and each row's own tokens (masked; position ids skip it)."""
        rows = self.ids(prompts)
        n = len(os.path.commonprefix(rows))
        n = min(n, min(map(len, rows)) - 1)  # every row keeps >= 1 token to feed
        with self.torch.no_grad():
            cache = self.model(input_ids=self.torch.tensor([rows[0][:n]]), use_cache=True,
                               logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(len(rows))
        suffixes = [r[n:] for r in rows]
        width = max(map(len, suffixes))
        ids = self.torch.tensor([rows[0][:n] + [self.pad] * (width - len(s)) + s for s in suffixes])  # (batch, n + width)
        mask = self.torch.tensor([[1] * n + [0] * (width - len(s)) + [1] * len(s) for s in suffixes])
        gen = self._generate(input_ids=ids, attention_mask=mask, past_key_values=cache)
        return [self._text(g[n + width:].tolist()) for g in gen]

    def continuous(self, prompts: list) -> list[str]:
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        rows = self.ids(prompts)
        config = GenerationConfig(max_new_tokens=self.new_tokens, do_sample=False, eos_token_id=self.end_ids,
                                  pad_token_id=self.pad)
        # Left to itself on CPU the paged cache is sized from free RAM (tens of GB here: minutes to allocate).
        cb = ContinuousBatchingConfig(num_blocks=self.kv_blocks)
        results = self.model.generate_batch(rows, generation_config=config, continuous_batching_config=cb,
                                            max_new_tokens=self.new_tokens)
        ordered = sorted(results.values(), key=lambda r: int(r.request_id.rpartition("_")[2]))
        assert [r.prompt_ids for r in ordered] == rows, "generate_batch answered in an unexpected order"
        return [self._text(r.generated_tokens) for r in ordered]

    def llmcse_hf(self, prompts: list) -> list[str]:
        from llmcse.llm import SamplingParams

        return self.gen.generate(prompts, SamplingParams(max_new_tokens=self.new_tokens, temperature=0.0))


# -- servers --------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict, timeout: float) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


class Server:
    """A server subprocess in its own process group, ready once /health answers and one warm-up
    chat completion (greedy: with continuous batching the first request fixes the sampling settings
    for the server's whole life) has come back."""

    def __init__(self, name: str, command: list[str], port: int, model: str, log: Path, env: dict):
        self.name, self.model, self.log = name, model, log
        self.base = f"http://127.0.0.1:{port}"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not healthy within {READY_TIMEOUT_S} s:\n{self.tail()}")
            time.sleep(0.5)
        _post(f"{self.base}/v1/chat/completions", {"model": self.model, "max_tokens": 4, "temperature": 0.0,
                                                   "messages": [{"role": "user", "content": "Say hi."}]},
              timeout=max(deadline - time.monotonic(), 30))

    def tail(self, n: int = 2000) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-n:] if self.log.exists() else "(no log)"

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        except ProcessLookupError:
            pass


def _sampling_copy(folder: Path, dest: Path) -> Path:
    """The converted folder with ``do_sample: true`` in its generation config, weights linked (as
    a user must serve it for sampled requests; see tests/test_transformers_serve.py)."""
    dest.mkdir()
    for f in folder.iterdir():
        if f.name != "generation_config.json":
            (dest / f.name).symlink_to(f.resolve())
    config = json.loads((folder / "generation_config.json").read_text(encoding="utf-8"))
    (dest / "generation_config.json").write_text(json.dumps({**config, "do_sample": True}), encoding="utf-8")
    return dest


def _exe(name: str) -> str | None:
    beside = Path(sys.executable).with_name(name)  # this environment's, before any on PATH
    return str(beside) if beside.exists() else shutil.which(name)


def start_servers(args, folder: Path, tmp: Path, env: dict) -> dict[str, Server]:
    """Both servers start together (their model loads overlap), then each is warmed up."""
    servers = {}
    transformers = _exe("transformers")
    if "http_transformers" in args.paths and transformers:
        model = str(_sampling_copy(folder, tmp / "SmolLM2-135M-Instruct"))  # the model id is exactly this path
        port = _free_port()
        servers["http_transformers"] = Server(
            "transformers serve", [transformers, "serve", model, "--host", "127.0.0.1", "--port", str(port),
                                   "--device", "cpu", "--dtype", "float32", "--continuous-batching",
                                   "--cb-num-blocks", str(args.kv_blocks), "--log-level", "warning"],
            port, model, tmp / "transformers_serve.log", env)
    if "http_serve_llm" in args.paths:
        port = _free_port()
        servers["http_serve_llm"] = Server(
            "llmcse serve-llm", [_exe("llmcse") or "llmcse", "serve-llm", "--llm", f"hf:{args.model}", "--host", "127.0.0.1",
                                 "--port", str(port), "--dtype", "float32", "--max-batch", str(args.batch_size),
                                 "--model-name", "smollm2"],
            port, "smollm2", tmp / "serve_llm.log", env)
    for s in servers.values():
        s.wait_ready()
    return servers


def http_path(server: Server, concurrency: int, new_tokens: int):
    from llmcse.llm import SamplingParams, load_llm

    client = load_llm(f"openai:{server.base}/v1#{server.model}", concurrency=concurrency, timeout=900.0, max_retries=0)
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0, top_p=1.0)
    return lambda prompts: client.generate(prompts, params)


# -- the run --------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32, help="batch of (b), (b2), (c), (d); one round each")
    parser.add_argument("--naive-prompts", type=int, default=16, help="the naive loop is slow: this many, spread over the rounds")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=16, help="HTTP requests in flight, (e) and (f)")
    parser.add_argument("--kv-blocks", type=int, default=KV_BLOCKS)
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--note", default="", help="conditions worth recording")
    parser.add_argument("--out", default=str(RESULTS), help="folder for generation.json / .md")
    args = parser.parse_args()

    import torch

    from llmcse.llm import load_llm

    threads = torch.get_num_threads()
    prompts = build_prompts(args.prompts)
    gen = load_llm(f"hf:{args.model}", batch_size=args.batch_size, dtype="float32")
    local = Local(gen, args.new_tokens, args.kv_blocks)
    folder = Path(gen.model.name_or_path)  # the converted transformers folder the bundled name resolves to

    tmp = Path(tempfile.mkdtemp(prefix="llmcse-genbench-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    load_start = os.getloadavg()
    servers = {}
    try:
        servers = start_servers(args, folder, tmp, env)
        runners = {name: getattr(local, name) for name in IN_PROCESS if name in args.paths}
        runners.update({name: http_path(s, args.concurrency, args.new_tokens) for name, s in servers.items()})
        for name, run in runners.items():  # warm-up: first-call costs (thread pools, allocations) are not timed
            run(prompts[:2])
        rows = run_rounds(args, prompts, runners, servers, local)
        for name, s in servers.items():
            rows[name]["peak_rss_mb"] = round((server_peak_rss(s.proc.pid) or 0) / 2**20)
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # the servers' logs and the folder copy (links only)
    load_end = os.getloadavg()
    skipped = {name: "`transformers` CLI (transformers[serving]) not installed" for name in args.paths
               if name not in rows}
    write_results(args, rows, skipped, {"torch_threads": threads, "dtype": str(gen.model.dtype),
                                        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                        "load_avg_start": load_start, "load_avg_end": load_end})


def run_rounds(args, prompts: list, runners: dict, servers: dict, local: Local) -> dict:
    """Each round (one batch of prompts) runs every path; the order flips every round."""
    n_rounds = -(-len(prompts) // args.batch_size)
    naive_per_round = -(-args.naive_prompts // n_rounds)
    stats = {name: {"prompts": 0, "tokens": 0, "seconds": 0.0, "texts": {}, "peak_rss": 0, "server_cpu_idle_s": 0.0}
             for name in runners}
    order = list(runners)
    for r in range(n_rounds):
        idx = list(range(r * args.batch_size, min((r + 1) * args.batch_size, len(prompts))))
        for name in (order if r % 2 == 0 else order[::-1]):
            use = idx[:naive_per_round] if name == "naive" else idx
            idle_cpu = {n: cpu_seconds(s.proc.pid) for n, s in servers.items() if n != name}
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                texts = runners[name]([prompts[i] for i in use])
                seconds = time.perf_counter() - t0
            st = stats[name]
            st["prompts"] += len(use)
            st["seconds"] += seconds
            st["tokens"] += sum(len(local.tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
            st["texts"].update(zip(use, texts))
            st["peak_rss"] = max(st["peak_rss"], mem.peak)
            for n, before in idle_cpu.items():  # an idle server should not steal the cores from the others
                stats[n]["server_cpu_idle_s"] += cpu_seconds(servers[n].proc.pid) - before
            print(f"round {r + 1}/{n_rounds} {name}: {len(use)} prompts, {seconds:.1f} s", flush=True)
    ref = stats.get("generate", {}).get("texts", {})
    rows = {}
    for name, st in stats.items():
        same = [st["texts"][i] == ref[i] for i in st["texts"] if i in ref]
        rows[name] = {"mode": PATHS[name], "prompts": st["prompts"], "tokens": st["tokens"],
                      "seconds": round(st["seconds"], 2), "tokens_per_s": round(st["tokens"] / st["seconds"], 1),
                      "exact_match_vs_b": round(sum(same) / len(same), 3) if same else None,
                      "peak_rss_mb": None if name in servers else round(st["peak_rss"] / 2**20)}
        if name in servers:
            rows[name]["server_cpu_s_while_other_paths_ran"] = round(st["server_cpu_idle_s"], 1)
    naive_tps = rows.get("naive", {}).get("tokens_per_s")
    best_tf = max((rows[n]["tokens_per_s"] for n in TRANSFORMERS_PATHS if n in rows), default=None)
    for row in rows.values():
        row["vs_naive"] = round(row["tokens_per_s"] / naive_tps, 2) if naive_tps else None
        row["vs_best_transformers"] = round(row["tokens_per_s"] / best_tf, 2) if best_tf else None
    return rows


def write_results(args, rows: dict, skipped: dict, env: dict) -> None:
    command = (f"OMP_NUM_THREADS={env['torch_threads']} python benchmarks/generation.py --prompts {args.prompts} "
               f"--batch-size {args.batch_size} --naive-prompts {args.naive_prompts} --new-tokens {args.new_tokens} "
               f"--concurrency {args.concurrency} --kv-blocks {args.kv_blocks}")
    if args.paths != list(PATHS):
        command += " --paths " + " ".join(args.paths)
    best = max((n for n in TRANSFORMERS_PATHS if n in rows), key=lambda n: rows[n]["tokens_per_s"], default=None)
    result = {"model": args.model, **env, "new_tokens": args.new_tokens, "batch_size": args.batch_size,
              "concurrency": args.concurrency, "best_transformers_path": best, "command": command, "note": args.note,
              "rows": rows, "skipped": skipped}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "generation.json").write_text(json.dumps(result, indent=2) + "\n")

    def cell(v, suffix=""):
        return "-" if v is None else f"{v}{suffix}"

    lines = ["# Generation speed against peers", "",
             f"{args.model} (bundled), {env['dtype']}, CPU ({env['cpu']}, {env['cores']} cores shared with other jobs), "
             f"{env['torch_threads']} torch thread(s) per process, greedy, at most {args.new_tokens} new tokens, each "
             f"prompt stopping at its end-of-turn token. Prompts: the shipped `nli` template's chats over wiki seeds "
             f"({args.prompts // 2} 'positive' + {args.prompts // 2} 'negative'). Batched in-process paths: batch "
             f"{args.batch_size}; HTTP paths: {args.concurrency} requests in flight through llmcse's `openai:` client.",
             "", "| path | prompts | tokens | tokens/s | vs naive | vs best transformers | exact match vs (b) | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['prompts']} | {r['tokens']} | {r['tokens_per_s']} | {cell(r['vs_naive'], 'x')} | "
              f"{cell(r['vs_best_transformers'], 'x')} | {cell(r['exact_match_vs_b'])} | {cell(r['peak_rss_mb'])} |"
              for r in rows.values()]
    lines += [f"| {PATHS[n]} | not run: {why} | | | | | | |" for n, why in skipped.items()]
    lines += ["", f"Best transformers path in this run: {PATHS[best] if best else '-'}.", "",
              "How to read it: every row comes from the same run. The machine is shared (a niced background "
              "`llmcse expand` and other jobs), so absolute tokens/s move with the load "
              f"(load average {env['load_avg_start'][0]:.1f} at the start, {env['load_avg_end'][0]:.1f} at the end on "
              f"{env['cores']} cores); the prompts ran in {-(-args.prompts // args.batch_size)} rounds and every round ran "
              "every path in alternating order, so the ratios between rows are what counts. Tokens are counted alike "
              "for every path (the output text re-tokenized). (c) is one `generate_batch` call per round (its paged "
              "cache is set up per call); the servers of (e) and (f) were started and warmed up before any timing. "
              "Peak RSS: the benchmark process while the path ran "
              "(all in-process paths share one copy of the weights, so this is not the path's own footprint) or, "
              "for HTTP paths, the server process's peak (VmHWM). Exact match: share of this path's outputs equal to "
              "(b)'s text for the same prompt (greedy; batch shapes change float sums, so a few may differ).",
              "", f"Command: `{command}`"]
    if args.note:
        lines += ["", f"Note: {args.note}"]
    (out / "generation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
