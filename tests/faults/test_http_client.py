"""Issue 20, cases 4, 8 and 15: the openai: back end against a server that fails, hangs, or sits
behind a URL with credentials. A stub server (tests/openai_stub.py) on 127.0.0.1 plays each fault."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from openai_stub import FAULTS, StubOpenAI

from llmcse.cli import main
from llmcse.llm import SamplingParams, load_llm
from llmcse.llm.base import redact_spec
from llmcse.llm.openai_http import (DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, MAX_BACKOFF, OpenAIHTTPGenerator,
                                    ServerProtocolError, ServerUnavailableError)

SEEDS = ("The river flowed quickly through the valley.\nA girl opened a long book on the train.\n"
         "The committee approved the new budget on Monday.\n")

# what the one-line error says came back, per fault
SAYS = {"null": "message.content is null", "html": "a text/html body instead of JSON: '<html><body><h1>Welcome to nginx!",
        "empty": "no choices: '{\"choices\": []}'", "invalid": "invalid JSON: '{\"choices\": [{\"message\"",
        "500": "HTTP 500: '{\"error\": {\"message\": \"CUDA out of memory\"}}'"}


@pytest.fixture()
def stub():
    with StubOpenAI() as server:
        yield server


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _generate(tmp_path: Path, llm: str, *extra: str) -> int:
    seeds = tmp_path / "seeds.txt"
    if not seeds.exists():
        seeds.write_text(SEEDS, encoding="utf-8")
    return main(["-q", "generate", "--recipe", "sts3", "--seeds", str(seeds), "--llm", llm,
                 "--out", str(tmp_path / "out" / "gen.jsonl"), *extra])


# -- case 4: transport and protocol failures stop the run; they never reject a seed --------------------

@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_case4_a_failing_server_stops_generate_and_a_rerun_completes_every_seed(fault, stub, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    stub.mode = fault
    assert _generate(tmp_path, f"openai:{stub.url}#m", "--max-retries", "1", "--request-timeout", "5") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"llmcse: error: LLM server at {stub.url} ")
    assert SAYS[fault] in err and "after 2 attempts" in err
    kind = "is not answering" if fault == "500" else "did not answer like an OpenAI-compatible API"
    assert kind in err
    assert len(stub.requests) >= 2  # asked again before giving up
    assert not _lines(tmp_path / "out" / "gen.rejected.jsonl") and not _lines(tmp_path / "out" / "gen.jsonl")

    stub.mode = "good"  # the server is fixed: a rerun does every seed
    assert _generate(tmp_path, f"openai:{stub.url}#m") == 0
    summary = json.loads((tmp_path / "out" / "gen.summary.json").read_text())
    assert (summary["seeds_done"], summary["kept"], summary["rejected"]) == (3, 3, 0)


def _records(path: Path) -> Path:
    """Two nli records that pass the cheap checks, so that each one reaches the LLM judge."""
    rows = [{"id": f"r{i}", "recipe": "nli", "seed": f"A man is playing a guitar on stage number {i}.",
             "positive": f"A man plays the guitar on stage number {i}.",
             "negative": f"A man is not playing a guitar on stage number {i}."} for i in range(2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_case4_filter_stops_on_a_failing_server_without_recording_a_score(stub, tmp_path, capsys):
    records, kept = _records(tmp_path / "gen.jsonl"), tmp_path / "kept.jsonl"
    args = ["-q", "filter", "--in", str(records), "--out", str(kept), "--llm", f"openai:{stub.url}#m", "--max-retries", "1"]
    stub.mode = "html"
    assert main(args) == 2
    assert "a text/html body instead of JSON" in capsys.readouterr().err
    assert not _lines(tmp_path / "kept.scores.jsonl") and not kept.exists()
    stub.mode = "good"  # the fake's answer is the question reversed, "No. or Yes Answer ...": scored 0 from real answers
    assert main(args) == 0
    assert [row["scores"] for row in _lines(tmp_path / "kept.scores.jsonl")] == [{"positive": 0.0, "negative": 0.0}] * 2
    assert json.loads((tmp_path / "kept.report.json").read_text())["scoring_method"] == "sampled-k8"  # no logprobs


def test_case4_expand_stops_on_a_failing_server_and_a_rerun_expands_every_document(stub, tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": line}) + "\n"
                              for i, line in enumerate(SEEDS.splitlines())), encoding="utf-8")
    exp = tmp_path / "exp.jsonl"
    args = ["-q", "expand", "--corpus", str(corpus), "--out", str(exp), "--llm", f"openai:{stub.url}#m",
            "--queries", "1", "--keywords", "1", "--max-retries", "1"]
    stub.mode = "null"
    assert main(args) == 2
    assert "did not answer like an OpenAI-compatible API" in capsys.readouterr().err
    assert not _lines(exp)
    stub.mode = "good"
    assert main(args) == 0 and [r["_id"] for r in _lines(exp)] == ["d0", "d1", "d2"]


# -- case 8: a server that accepts and never answers ---------------------------------------------------

def test_case8_a_hanging_server_is_reported_within_the_timeout_budget(stub, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    stub.mode = "hang"
    started = time.monotonic()
    assert _generate(tmp_path, f"openai:{stub.url}#m", "--request-timeout", "1", "--max-retries", "1") == 2
    elapsed = time.monotonic() - started
    assert elapsed < 10  # 2 attempts x 1 s + 0.5 s backoff, plus start-up
    err = capsys.readouterr().err
    assert f"LLM server at {stub.url} is not answering (no answer within 1 s) after 2 attempts" in err
    assert "raise --request-timeout" in err
    assert not _lines(tmp_path / "out" / "gen.rejected.jsonl")


def test_case8_defaults_report_a_dead_server_within_two_minutes():
    backoffs = sum(min(0.5 * 2 ** i, MAX_BACKOFF) for i in range(DEFAULT_MAX_RETRIES))
    assert (DEFAULT_MAX_RETRIES + 1) * DEFAULT_TIMEOUT + backoffs <= 120
    llm = load_llm("openai:http://127.0.0.1:9/v1#m")
    assert (llm.timeout, llm.max_retries) == (DEFAULT_TIMEOUT, DEFAULT_MAX_RETRIES)


def test_case8_recipe_keys_set_timeout_and_retries(stub, tmp_path, capsys):
    from llmcse.pipeline import run_pipeline

    stub.mode = "hang"
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(SEEDS, encoding="utf-8")
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[run]\nstages = ["generate"]\n[generate]\nrecipe = "sts3"\nseeds = "{seeds}"\n'
                      f'llm = "openai:{stub.url}#m"\nrequest_timeout = 1\nmax_retries = 0\n', encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(ServerUnavailableError, match=r"no answer within 1 s\) after 1 attempt;"):
        run_pipeline(recipe, tmp_path / "run")
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("argv, message", [
    (["--request-timeout", "0"], "argument --request-timeout"),
    (["--request-timeout", "abc"], "argument --request-timeout"),
    (["--max-retries", "-1"], "argument --max-retries"),
])
def test_case8_bad_timeout_and_retry_options_are_usage_errors(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        _generate(tmp_path, "openai:http://127.0.0.1:9/v1#m", *argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    ({"timeout": -1}, "request timeout must be a number of seconds > 0, got -1"),
    ({"max_retries": -2}, "max retries must be an integer >= 0, got -2"),
])
def test_case8_bad_recipe_values_are_clear_errors(options, message):
    from llmcse.errors import LlmcseError

    with pytest.raises(LlmcseError, match=message):
        load_llm("openai:http://127.0.0.1:9/v1#m", **options)


# -- case 15: credentials in the spec are used but never saved ------------------------------------------

@pytest.mark.parametrize("spec, saved", [
    ("openai:http://127.0.0.1:8000/v1#m", "openai:http://127.0.0.1:8000/v1#m"),
    ("openai:https://bob:hunter2@api.example.com/v1#gpt", "openai:https://***@api.example.com/v1#gpt"),
    ("openai:https://sk-abc@api.example.com/v1#gpt", "openai:https://***@api.example.com/v1#gpt"),
    ("openai:https://h/v1?api_key=SEKRET&api-version=2024-06-01#m", "openai:https://h/v1?api_key=***&api-version=2024-06-01#m"),
    ("openai:https://h/v1?key=a&token=b&access_token=c&sig=d&x=1#m", "openai:https://h/v1?key=***&token=***&access_token=***&sig=***&x=1#m"),
    ("hf:SmolLM2-135M-Instruct", "hf:SmolLM2-135M-Instruct"),
    ("fake:delay=0.1", "fake:delay=0.1"),
])
def test_case15_redact_spec(spec, saved):
    assert redact_spec(spec) == saved
    assert redact_spec(saved) == saved


def test_case15_generate_and_filter_use_credentials_but_save_none(stub, tmp_path, capsys):
    host = stub.url.removeprefix("http://")
    llm = f"openai:http://bob:hunter2@{host}?api_key=SEKRET-42&api-version=7#m"
    (tmp_path / "out").mkdir()
    assert _generate(tmp_path, llm, "--max-retries", "0") == 0
    out = tmp_path / "out"
    assert main(["-v", "filter", "--in", str(out / "gen.jsonl"), "--out", str(out / "kept.jsonl"), "--llm", llm]) == 0
    logs = capsys.readouterr()
    path, headers, _ = stub.requests[0]
    assert "api_key=SEKRET-42" in path and "api-version=7" in path  # the query string is sent ...
    assert headers["authorization"].startswith("Basic ")  # ... and user:password as basic auth
    saved = _files(out)
    assert {"gen.jsonl", "gen.summary.json", "kept.report.json", "kept.scores.jsonl"} <= set(saved)
    for name, data in saved.items():
        assert b"hunter2" not in data and b"SEKRET" not in data, name
    assert "hunter2" not in logs.out + logs.err and "SEKRET" not in logs.out + logs.err
    record = _lines(out / "gen.jsonl")[0]
    assert record["generator"] == f"openai:http://***@{host}?api_key=***&api-version=7#m"


def test_case15_error_messages_name_the_server_without_credentials(stub):
    stub.mode = "500"
    client = OpenAIHTTPGenerator(stub.url.replace("http://", "http://bob:hunter2@") + "?token=SEKRET", "m",
                                 max_retries=0)
    with pytest.raises(ServerUnavailableError) as e:
        client.generate(["x"], SamplingParams())
    assert "hunter2" not in str(e.value) and "SEKRET" not in str(e.value) and "***@127.0.0.1" in str(e.value)


# -- issue 21.1: the SDK client's key, usage and concurrency ------------------------------------------

def test_api_key_from_the_environment_and_token_counts_from_usage(stub, monkeypatch):
    monkeypatch.setenv("LLMCSE_API_KEY", "key-123")
    client = OpenAIHTTPGenerator(stub.url, "m", concurrency=3)
    out = client.generate([[{"role": "user", "content": f"Paraphrase: sentence number {i}"}] for i in range(5)],
                          SamplingParams(max_new_tokens=8, seed=10))
    assert out == [f"{i} number sentence paraphrase." for i in range(5)]
    assert {h["authorization"] for _, h, _ in stub.requests} == {"Bearer key-123"}
    assert sorted(b["seed"] for _, _, b in stub.requests) == [10, 11, 12, 13, 14]  # one seed per request
    assert client.stats.prompt_tokens == 5 * 7 and client.stats.completion_tokens == 5 * 4  # the server's usage


def test_no_key_set_sends_a_placeholder(stub, monkeypatch):
    monkeypatch.delenv("LLMCSE_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    OpenAIHTTPGenerator(stub.url, "m").generate(["x y"], SamplingParams())
    assert stub.requests[0][1]["authorization"] == "Bearer EMPTY"


def test_protocol_error_class_for_malformed_answers(stub):
    stub.mode = "empty"
    with pytest.raises(ServerProtocolError, match=r"no choices"):
        OpenAIHTTPGenerator(stub.url, "m", max_retries=0).generate([[{"role": "user", "content": "x"}]],
                                                                    SamplingParams())


def test_case15_a_recipe_run_saves_no_credentials(stub, tmp_path):
    from llmcse.pipeline import run_pipeline

    host = stub.url.removeprefix("http://")
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(SEEDS, encoding="utf-8")
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[run]\nstages = ["generate"]\n[generate]\nrecipe = "sts3"\nseeds = "{seeds}"\n'
                      f'llm = "openai:http://bob:hunter2@{host}?key=SEKRET#m"\n', encoding="utf-8")
    run_pipeline(recipe, tmp_path / "run", overrides=[f"generate.llm=openai:http://bob:hunter2@{host}?key=SEKRET#m"])
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert any(p.name == "generated.jsonl" for p in files) and any(p.name == "config.json" for p in files)
    for p in files:
        data = p.read_bytes()
        assert b"hunter2" not in data and b"SEKRET" not in data, p
