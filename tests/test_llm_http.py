"""The OpenAI-compatible back end against a real HTTP server on 127.0.0.1 (``llmcse serve-llm``'s server)."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from llmcse.llm import FakeLLM, SamplingParams
from llmcse.llm.openai_http import OpenAIHTTPGenerator, ServerUnavailableError
from llmcse.llm.server import make_server


@pytest.fixture()
def serve():
    """Start a server around a back end on a free loopback port; yields its base URL."""
    servers = []

    def start(llm, **kwargs):
        server = make_server(llm, host="127.0.0.1", port=0, model_name="test-model", **kwargs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        host, port = server.server_address[:2]
        return f"http://{host}:{port}/v1"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_chat_and_completion_requests_round_trip_through_the_server(serve):
    base = serve(FakeLLM())
    client = OpenAIHTTPGenerator(base, "test-model", concurrency=4)
    chats = [[{"role": "user", "content": f"Paraphrase: sentence number {i}"}] for i in range(10)]
    out = client.generate(chats, SamplingParams(max_new_tokens=8))
    assert out == [f"{i} number sentence paraphrase." for i in range(10)]  # order kept under concurrency
    assert client.generate(["Paraphrase: plain completion"], SamplingParams()) == ["completion plain paraphrase."]
    assert client.stats.requests == 11 and client.stats.completion_tokens > 0


def test_concurrent_requests_are_batched_on_the_server(serve):
    sizes = []

    class Recording(FakeLLM):
        def generate(self, prompts, params):
            sizes.append(len(prompts))
            return super().generate(prompts, params)

    base = serve(Recording(), max_batch=16, max_wait_ms=200)
    OpenAIHTTPGenerator(base, "m", concurrency=16).generate([f"Say: {i}" for i in range(16)], SamplingParams())
    assert max(sizes) > 1 and sum(sizes) == 16


def test_stop_strings_are_applied(serve):
    base = serve(FakeLLM(responder=lambda text, i: "first line\nsecond line"))
    out = OpenAIHTTPGenerator(base, "m").generate(["x"], SamplingParams(stop=("\n",)))
    assert out == ["first line"]


def test_transient_server_errors_are_retried(serve):
    calls = {"n": 0}

    def flaky(text, i):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return "recovered"

    base = serve(FakeLLM(responder=flaky), max_wait_ms=1)
    client = OpenAIHTTPGenerator(base, "m", max_retries=2, backoff=0.01)
    assert client.generate(["x"], SamplingParams()) == ["recovered"]


def test_a_server_that_is_down_gives_a_clear_error_after_retries():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAIHTTPGenerator(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff=0.01, timeout=2)
    with pytest.raises(ServerUnavailableError, match=r"not answering .* after 2 attempts; is it running\?"):
        client.generate(["x"], SamplingParams())


def test_generate_command_runs_through_the_http_back_end(serve, tmp_path):
    from llmcse.cli import main

    base = serve(FakeLLM())
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("The river flowed quickly through the valley.\nA girl opened a long book on the train.\n", encoding="utf-8")
    out = tmp_path / "gen.jsonl"
    assert main(["-q", "generate", "--recipe", "sts3", "--seeds", str(seeds), "--llm", f"openai:{base}#test-model",
                 "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 and records[0]["generator"] == f"openai:{base}#test-model"


@pytest.mark.slow
def test_bundled_smollm2_served_over_http_generates_and_filters_end_to_end(serve, tmp_path):
    """Issue #4 acceptance: generate + filter with the bundled model through the HTTP back end."""
    from llmcse.cli import main
    from llmcse.llm.hf import HFGenerator

    base = serve(HFGenerator("SmolLM2-135M-Instruct", dtype="auto", batch_size=8))
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("A man is riding a horse along the beach at sunset.\n"
                     "The city council voted to build a new library downtown.\n", encoding="utf-8")
    out, kept = tmp_path / "gen.jsonl", tmp_path / "kept.jsonl"
    llm = f"openai:{base}#smollm2"
    assert main(["-q", "generate", "--recipe", "nli", "--seeds", str(seeds), "--llm", llm, "--out", str(out),
                 "--max-new-tokens", "24"]) == 0
    summary = json.loads((tmp_path / "gen.summary.json").read_text())
    assert summary["seeds_done"] == 2
    if summary["kept"]:
        assert main(["-q", "filter", "--in", str(out), "--out", str(kept), "--llm", llm]) == 0
        report = json.loads(Path(str(kept).replace(".jsonl", ".report.json")).read_text())
        assert report["total"] == summary["kept"]
