"""Issue 20 case 9 and issue 21 scope 3: ``llmcse serve-llm`` answers every malformed request with a
4xx JSON error, one bad request never affects another, and responses (usage, logprobs) parse with
the official ``openai`` SDK. Every server here listens on 127.0.0.1 and is stopped by its test."""

from __future__ import annotations

import http.client
import json
import math
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from llmcse.cli import main
from llmcse.llm import FakeLLM
from llmcse.llm.server import ServerLimits, make_server

GOOD_CHAT = {"model": "m", "messages": [{"role": "user", "content": "Say: the cat sat"}], "max_tokens": 8}
LIMITS = ServerLimits(max_body_bytes=100_000, max_prompt_tokens=40, max_tokens=64, request_timeout=30)


class Running:
    """A server on a free loopback port, served from a thread."""

    def __init__(self, llm, **kwargs):
        self.server = make_server(llm, host="127.0.0.1", port=0, model_name="m", **kwargs)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}/v1"

    def request(self, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, dict | str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        text = resp.read().decode("utf-8")
        conn.close()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text

    def raw(self, data: bytes) -> bytes:
        """Send bytes as they are; the reply's status line, headers and body."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(data)
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += s.recv(4096)
            head, _, body = reply.partition(b"\r\n\r\n")
            length = int(dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:]).get(b"content-length", 0))
            while len(body) < length:
                body += s.recv(4096)
            return head + b"\r\n\r\n" + body

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture()
def running():
    started = []

    def start(llm=None, **kwargs):
        started.append(Running(llm or FakeLLM(), **kwargs))
        return started[-1]

    yield start
    for r in started:
        r.stop()


@pytest.fixture(scope="module")
def fake_server():
    r = Running(FakeLLM(), limits=LIMITS, max_wait_ms=5)
    yield r
    r.stop()


# (name, path, body, expected status, expected param, text in the message)
BAD_REQUESTS = [
    ("nested stop list", "/v1/chat/completions", {**GOOD_CHAT, "stop": [["x"]]}, 400, "stop.0", "valid string"),
    ("stop a number", "/v1/chat/completions", {**GOOD_CHAT, "stop": 5}, 400, "stop", "valid string"),
    ("five stop strings", "/v1/chat/completions", {**GOOD_CHAT, "stop": list("abcde")}, 400, "stop", "at most 4"),
    ("body a JSON array", "/v1/chat/completions", [GOOD_CHAT], 400, None, "must be a JSON object"),
    ("body a JSON string", "/v1/completions", '"hello"', 400, None, "must be a JSON object"),
    ("body not JSON", "/v1/chat/completions", "{nope", 400, None, "not valid JSON"),
    ("messages a number", "/v1/chat/completions", {**GOOD_CHAT, "messages": 5}, 400, "messages", "valid array"),
    ("messages empty", "/v1/chat/completions", {**GOOD_CHAT, "messages": []}, 400, "messages", "at least 1"),
    ("messages missing", "/v1/chat/completions", {"max_tokens": 4}, 400, "messages", "Field required"),
    ("unknown role", "/v1/chat/completions", {**GOOD_CHAT, "messages": [{"role": "x", "content": "a"}]}, 400,
     "messages.0.role", "'user'"),
    ("content null", "/v1/chat/completions", {**GOOD_CHAT, "messages": [{"role": "user", "content": None}]}, 400,
     "messages.0.content", "valid string"),
    ("max_tokens 1e9", "/v1/chat/completions", {**GOOD_CHAT, "max_tokens": 1e9}, 400, "max_tokens", "valid integer"),
    ("max_tokens over cap", "/v1/chat/completions", {**GOOD_CHAT, "max_tokens": 10**9}, 400, "max_tokens",
     "over the server's limit of 64"),
    ("max_tokens 0", "/v1/chat/completions", {**GOOD_CHAT, "max_tokens": 0}, 400, "max_tokens", "greater than or equal to 1"),
    ("temperature negative", "/v1/chat/completions", {**GOOD_CHAT, "temperature": -1}, 400, "temperature",
     "greater than or equal to 0"),
    ("temperature a string", "/v1/chat/completions", {**GOOD_CHAT, "temperature": "0.5"}, 400, "temperature",
     "valid number"),
    ("top_p 0", "/v1/chat/completions", {**GOOD_CHAT, "top_p": 0}, 400, "top_p", "greater than 0"),
    ("top_logprobs 21", "/v1/chat/completions", {**GOOD_CHAT, "logprobs": True, "top_logprobs": 21}, 400,
     "top_logprobs", "less than or equal to 20"),
    ("top_logprobs without logprobs", "/v1/chat/completions", {**GOOD_CHAT, "top_logprobs": 2}, 400, "top_logprobs",
     "needs logprobs: true"),
    ("stream", "/v1/chat/completions", {**GOOD_CHAT, "stream": True}, 400, "stream", "not supported"),
    ("prompt too long", "/v1/completions", {"prompt": "word " * 100, "max_tokens": 4}, 400, "prompt",
     "100 tokens, over the server's limit of 40"),
    ("prompt empty", "/v1/completions", {"prompt": "", "max_tokens": 4}, 400, "prompt", "at least 1 character"),
    ("body over the cap", "/v1/completions", json.dumps({"prompt": "x" * 200_000}), 413, None,
     "over the server's limit of 100000"),
    ("unknown route", "/v1/nothing", GOOD_CHAT, 404, None, "POST /v1/nothing"),
]


@pytest.mark.parametrize("name,path,body,status,param,message", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_case9_each_malformed_request_gets_a_4xx_json_error(fake_server, name, path, body, status, param, message):
    got, answer = fake_server.request("POST", path, body)
    assert got == status, answer
    assert set(answer["error"]) == {"message", "type", "param", "code"}
    assert answer["error"]["param"] == param and message in answer["error"]["message"]
    # ... and the server goes on answering well-formed requests
    assert fake_server.request("POST", "/v1/chat/completions", GOOD_CHAT)[0] == 200


def test_case9_null_means_the_default_as_in_openai(fake_server):
    status, answer = fake_server.request("POST", "/v1/chat/completions",
                                         {**GOOD_CHAT, "temperature": None, "top_p": None, "stop": None, "seed": None})
    assert status == 200 and answer["choices"][0]["message"]["content"] == "sat cat the say."


def test_case9_broken_http_framing_gets_400_not_a_hang(fake_server):
    for head in (b"Content-Length: -5\r\n", b"Content-Length: abc\r\n"):
        reply = fake_server.raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
        assert reply.startswith(b"HTTP/1.1 400"), reply
    # a 5 MB body is refused from its Content-Length, before it is read
    reply = fake_server.raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 5000000\r\n\r\n{")
    assert reply.startswith(b"HTTP/1.1 413") and b"body_too_large" in reply


def test_case9_a_failing_request_fails_alone_and_the_batcher_keeps_running(running):
    def responder(text, i):
        if "BOOM" in text:
            raise RuntimeError("back end exploded")
        return "fine"

    r = running(FakeLLM(responder=responder), max_wait_ms=300)  # long wait: all four share one batch
    bodies = [{**GOOD_CHAT, "messages": [{"role": "user", "content": c}]} for c in ("a", "BOOM", "b", "c")]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda b: r.request("POST", "/v1/chat/completions", b), bodies))
    assert [a[0] for a in answers] == [200, 500, 200, 200]
    assert answers[1][1]["error"]["message"] == "generation failed: RuntimeError: back end exploded"
    assert answers[1][1]["error"]["type"] == "server_error"
    assert r.request("GET", "/health") == (200, {"status": "ok"})
    assert r.request("POST", "/v1/chat/completions", GOOD_CHAT)[0] == 200


def test_case9_health_reports_a_dead_batcher_and_requests_get_503(running):
    r = running()
    r.server.app.batcher.close()  # the thread ends, as if it had died
    r.server.app.batcher._thread.join(timeout=5)
    assert r.request("GET", "/health") == (503, {"status": "unhealthy", "reason": "the batching thread stopped"})
    status, answer = r.request("POST", "/v1/chat/completions", GOOD_CHAT)
    assert status == 503 and "batching thread stopped" in answer["error"]["message"]


def test_case9_a_request_that_takes_too_long_gets_504_and_others_still_run(running):
    r = running(FakeLLM(delay=1.5), limits=ServerLimits(request_timeout=0.5), max_wait_ms=1)
    t0 = time.monotonic()
    status, answer = r.request("POST", "/v1/chat/completions", GOOD_CHAT)
    assert status == 504 and answer["error"]["code"] == "timeout" and time.monotonic() - t0 < 1.4
    r.server.app.limits.request_timeout = 10
    assert r.request("POST", "/v1/chat/completions", GOOD_CHAT)[0] == 200


def test_case9_a_client_that_stalls_mid_body_gets_408(running):
    r = running(limits=ServerLimits(request_timeout=0.5))
    reply = r.raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"prompt\":")
    assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.5 s" in reply
    assert r.request("POST", "/v1/chat/completions", GOOD_CHAT)[0] == 200


def test_case9_api_key_is_checked_as_a_bearer_token(running):
    r = running(api_key="s3cret")
    assert r.request("GET", "/health")[0] == 200  # health stays open for probes
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        status, answer = r.request("POST", "/v1/chat/completions", GOOD_CHAT, headers)
        assert status == 401 and answer["error"]["code"] == "invalid_api_key"
    assert r.request("GET", "/v1/models")[0] == 401
    assert r.request("POST", "/v1/chat/completions", GOOD_CHAT, {"Authorization": "Bearer s3cret"})[0] == 200


def test_case9_cli_refuses_a_public_host_without_a_key_and_a_busy_port(capsys, monkeypatch):
    monkeypatch.delenv("LLMCSE_API_KEY", raising=False)
    assert main(["serve-llm", "--llm", "fake:", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--host 0.0.0.0 is reachable from other machines: set --api-key" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve-llm", "--llm", "fake:", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == f"llmcse: error: port {port} on 127.0.0.1 is in use; pick another with --port (0 picks a free one)\n"
    with pytest.raises(SystemExit) as e:
        main(["serve-llm", "--llm", "fake:", "--max-tokens", "0"])
    assert e.value.code == 2


def test_case9_without_the_serve_extra_the_cli_says_what_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "llmcse.llm.server")
    assert main(["serve-llm", "--llm", "fake:", "--port", "0"]) == 2
    assert capsys.readouterr().err == ("llmcse: error: llmcse serve-llm needs its server packages (uvicorn is missing): "
                                       "pip install 'llmcse[serve]'\n")


def test_openai_sdk_parses_usage_and_logprobs_from_the_fake_back_end(fake_server):
    client = openai.OpenAI(base_url=fake_server.base, api_key="unused", max_retries=0)
    chat = client.chat.completions.create(model="m", messages=GOOD_CHAT["messages"], max_tokens=8, temperature=0,
                                          logprobs=True, top_logprobs=2)
    first = chat.choices[0].logprobs.content[0]
    assert (first.token, first.logprob, first.top_logprobs[0].token) == ("sat", 0.0, "sat")
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens
    legacy = client.completions.create(model="m", prompt="Say: one two", max_tokens=8, logprobs=1)
    assert legacy.choices[0].logprobs.tokens == ["two", " one", " say."]
    assert [m.id for m in client.models.list()] == ["m"]


@pytest.fixture(scope="module")
def smollm2():
    from llmcse.llm.hf import HFGenerator

    return HFGenerator("SmolLM2-135M-Instruct", dtype="float32", batch_size=8)


def test_openai_sdk_gets_real_token_logprobs_and_usage_from_smollm2(smollm2):
    """The judge's request (greedy, max_tokens 1, top_logprobs) through the SDK gives the same
    P(Yes) / (P(Yes) + P(No)) as the local scoring path, and usage counts tokenizer tokens."""
    r = Running(smollm2, api_key="k")
    try:
        client = openai.OpenAI(base_url=r.base, api_key="k", max_retries=0)
        messages = [{"role": "user", "content": "Do 'A man rides a horse.' and 'A person is on a horse.' mean the "
                                                "same? Answer Yes or No."}]
        chat = client.chat.completions.create(model="m", messages=messages, max_tokens=1, temperature=0,
                                              logprobs=True, top_logprobs=5, seed=1)
        top = {t.token: math.exp(t.logprob) for t in chat.choices[0].logprobs.content[0].top_logprobs}
        p_yes = smollm2.choice_probabilities([messages], ["Yes", "No"])[0][0]
        assert top["Yes"] / (top["Yes"] + top["No"]) == pytest.approx(p_yes, abs=1e-4)
        assert chat.choices[0].message.content == max(top, key=top.get)  # greedy picks the top token
        n_prompt = len(smollm2.tokenizer(smollm2.render(messages), add_special_tokens=False)["input_ids"])
        assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (n_prompt, 1)
        assert chat.choices[0].finish_reason == "length"
        # the one-token greedy request takes a one-pass shortcut: the general path (generate, then
        # score the completion) gives the same first token and probabilities
        longer = client.chat.completions.create(model="m", messages=messages, max_tokens=2, temperature=0,
                                                logprobs=True, top_logprobs=5)
        first = longer.choices[0].logprobs.content[0]
        assert first.token == chat.choices[0].logprobs.content[0].token
        assert {t.token: t.logprob for t in first.top_logprobs} == pytest.approx(
            {t.token: t.logprob for t in chat.choices[0].logprobs.content[0].top_logprobs}, abs=1e-4)
        assert longer.usage.completion_tokens == len(longer.choices[0].logprobs.content) == 2

        legacy = client.completions.create(model="m", prompt="The capital of France is", max_tokens=3, temperature=0,
                                           logprobs=2)
        lp = legacy.choices[0].logprobs
        assert "".join(lp.tokens) == legacy.choices[0].text and len(lp.tokens) == legacy.usage.completion_tokens == 3
        assert all(len(alts) == 2 and max(alts.values()) >= chosen - 1e-4
                   for alts, chosen in zip(lp.top_logprobs, lp.token_logprobs))
    finally:
        r.stop()


def _bad_kinds() -> list[tuple[str, object, int]]:
    return [(path, body, status) for _, path, body, status, _, _ in BAD_REQUESTS]


def test_case9_load_50_requests_20_in_flight_mixed_good_and_bad(running):
    """Bounded load on loopback: every good request answered 200 with its own text, every bad one its 4xx,
    no connection reset (the listen backlog is 2048, not 5), and the server still answers afterwards."""
    r = running(FakeLLM(delay=0.002), limits=LIMITS, max_batch=8, max_wait_ms=10)
    bad = _bad_kinds()
    work = []
    for i in range(50):
        if i % 2 and bad:
            path, body, status = bad.pop()
            work.append((path, body, status, None))
        else:
            body = {**GOOD_CHAT, "messages": [{"role": "user", "content": f"Say: request number {i}"}]}
            work.append(("/v1/chat/completions", body, 200, f"{i} number request say."))
    assert not bad  # every bad kind was sent

    def send(item):
        path, body, _, _ = item
        try:
            return r.request("POST", path, body)
        except OSError as e:  # a reset or refused connection is a failure, not a crash of the test
            return None, repr(e)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(send, work))
    for (path, body, status, text), (got, answer) in zip(work, answers):
        assert got == status, (path, body, answer)
        if text is not None:
            assert answer["choices"][0]["message"]["content"] == text
        else:
            assert "error" in answer
    assert r.request("GET", "/health") == (200, {"status": "ok"})
    assert r.request("POST", "/v1/chat/completions", GOOD_CHAT)[0] == 200
