"""``--executor ray`` (issue 25): Ray's local mode and a real two-node cluster on 127.0.0.1.

Every Ray output is compared with the single-process run of the same stage: records byte for byte
(the ``created`` timestamps aside), vectors to 1e-5. The cluster test starts its own head and worker
node (one CPU each, token auth with a token that lives only in this process's environment), shows
from the shards' provenance that both nodes worked, then kills the worker node mid-job.

Everything Ray starts lives under one temporary folder (``RAY_TMPDIR`` / ``--temp-dir``); teardown
stops the processes whose command line names that folder (and their children), removes the folder,
and checks that no auth token was left in ``~/.ray``.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from llmcse.errors import LlmcseError
from llmcse.utils import executor
from llmcse.utils.executor import plan_actors, split_concurrency

TESTS = Path(__file__).parent
CORPUS = TESTS / "data" / "data_dir" / "beir" / "toyretrieval" / "corpus.jsonl"  # 4 documents
SEEDS = [
    "A man is riding a horse along the beach at sunset.",
    "The city council voted to build a new library downtown.",
    "Three children are playing football in the park.",
    "The scientist published her results in a major journal.",
    "A small boat sailed across the calm blue lake.",
    "The company reported higher profits than expected this year.",
    "An old woman is feeding the pigeons in the square.",
    "The train to the capital was delayed by heavy snow.",
]
needs_ray = pytest.mark.skipif(not executor.is_ray_available(), reason='needs Ray: pip install "llmcse[ray]"')


def records(path: Path) -> list[dict]:
    """A JSONL file's records without their ``created`` timestamps (the one field two runs differ in);
    none for a missing file (a stage writes no rejected file when nothing was rejected)."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    rows = [json.loads(line) for line in lines if line.strip()]
    return [{k: v for k, v in r.items() if k != "created"} for r in rows]


def provenance(path: Path) -> list[dict]:
    return executor.read_provenance(path)


# ------------------------------------------------------------------ without a cluster


def test_actor_sizing_leaves_cpu_for_ray_datas_own_tasks_and_places_every_actor():
    # two 1-CPU nodes: one actor per node (two of 0.75 never fit on one node)
    assert plan_actors([1.0, 1.0], 0, 2, uses_gpu=True, threads=None) == executor.Placement(2, 0.75, 0.0, 1)
    # one 2-CPU machine (the deadlock: two 1-CPU actors starve the read tasks)
    two = plan_actors([2.0], 0, 2, uses_gpu=False)
    assert two.num_cpus * 2 <= 1.5 and two.threads == 1
    # uneven nodes: shrunk until 3 actors have a place
    uneven = plan_actors([1.0, 4.0], 0, 3, uses_gpu=False)
    assert sum(int(c // uneven.num_cpus) for c in (1.0, 4.0)) >= 3
    # GPUs: one each, at most as many actors as GPUs; $OMP_NUM_THREADS wins for threads
    gpus = plan_actors([16.0, 16.0], 4, 8, uses_gpu=True, threads=2)
    assert (gpus.actors, gpus.num_gpus, gpus.threads) == (4, 1.0, 2)
    assert plan_actors([16.0], 4, 8, uses_gpu=False).num_gpus == 0.0  # an HTTP client needs no GPU


def test_a_servers_concurrency_is_shared_among_the_actors():
    from llmcse.synth.scaleout import llm_source

    assert split_concurrency(8, 3) == 2 and split_concurrency(2, 4) == 1
    source = llm_source(None, "openai:http://127.0.0.1:9/v1#m", 30.0, 2, actors=4)
    assert source.options == {"timeout": 30.0, "max_retries": 2, "concurrency": 2} and not source.uses_gpu
    from llmcse.llm import load_llm

    client = load_llm("openai:http://127.0.0.1:9/v1#m", concurrency=16)
    assert llm_source(client, client.spec, 30.0, 2, actors=4)().concurrency == 4


@pytest.mark.parametrize("argv", [["generate", "--seeds", "S", "--out", "O", "--executor", "ray"],
                                  ["index", "--corpus", "C", "--out", "O", "--workers", "2"]])
def test_ray_options_without_ray_installed_are_one_line_naming_the_extra(tmp_path, capsys, monkeypatch, argv):
    from llmcse.cli import main

    monkeypatch.setattr(executor, "is_ray_available", lambda: False)
    (tmp_path / "S").write_text("\n".join(SEEDS) + "\n")
    (tmp_path / "C").write_text(CORPUS.read_text())
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install "llmcse[ray]"' in err
    assert ("--shard K/N" in err) == ("--workers" in argv)  # the way without Ray
    assert sorted(p.name for p in tmp_path.iterdir()) == ["C", "S"]  # nothing written


@pytest.mark.parametrize("run_table, message", [
    ('executor = "spark"', "r.toml: [run] unknown executor 'spark'; choose one of ['local', 'ray']"),
    ("actors = 3", 'r.toml: [run] actors works with executor = "ray"'),
    ("actors = 0", "r.toml: [run] actors must be an integer >= 1, got 0"),
])
def test_bad_run_executor_settings_are_one_line_naming_the_recipe(run_table, message, tmp_path, capsys):
    from llmcse.cli import main

    recipe = tmp_path / "r.toml"
    recipe.write_text(RAY_RECIPE.format(run=run_table + "\n", seeds=tmp_path / "s.txt"), encoding="utf-8")
    assert main(["-q", "run", str(recipe), "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    # the flags are the same settings: --executor ray with Ray's settings passes the plan
    assert main(["-q", "run", str(recipe), "--out", str(tmp_path / "o"), "--dry-run", "--set", 'run.executor=local',
                 "--set", "run.actors=1", "--executor", "ray", "--actors", "2"]) == 0


@needs_ray
def test_under_ray_the_driver_leaves_loading_an_hf_model_to_the_actors():
    """[generate.llm] batch_size = 8 makes the stage build its back end; under Ray only the actors load it."""
    from llmcse.stages.base import load_backend
    from llmcse.stages.generate import GenerateStageConfig
    from llmcse.synth.scaleout import LLMSource, llm_source

    cfg = GenerateStageConfig(seeds="s.txt", out="o.jsonl", llm="hf:SmolLM2-135M-Instruct", batch_size=8)
    with executor.using("ray", actors=2):
        deferred = load_backend(cfg)
    assert isinstance(deferred, LLMSource) and deferred.options == {"batch_size": 8, "dtype": "auto"}
    assert llm_source(deferred, cfg.llm, 60.0, 2, actors=2) is deferred and deferred.uses_gpu


def test_ray_settings_without_the_ray_executor_are_refused():
    with pytest.raises(LlmcseError, match="--actors works with --executor ray"):
        executor.check_executor("local", actors=3)
    with pytest.raises(LlmcseError, match="unknown executor 'spark'"):
        executor.check_executor("spark")
    with executor.using("local"):
        assert executor.resolve() == ("local", None, 1)


# ------------------------------------------------------------------ Ray's processes, owned by the test


def _descendants(roots):
    import psutil

    found = set()
    for p in roots:
        try:
            found.add(p)
            found.update(p.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return found


def _ray_processes(folder: Path) -> set:
    """Every process whose command line names ``folder`` (Ray's own) and every child of those (actors)."""
    import psutil

    roots = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(str(folder) in part for part in p.info["cmdline"] or ()):
                roots.append(p)
        except psutil.NoSuchProcess:
            pass
    return _descendants(roots)


def _kill(procs) -> None:
    import psutil

    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(list(procs), timeout=30)


@pytest.fixture(scope="module")
def ray_env():
    """Ray's temp folder, token auth with a token only in the environment, no usage stats, no $RAY_ADDRESS."""
    folder = Path(tempfile.mkdtemp(prefix="lr-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    token = Path.home() / ".ray" / "auth_token"
    had_token = token.exists()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_TMPDIR", str(folder))
        mp.setenv("RAY_AUTH_MODE", "token")
        mp.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.delenv("RAY_ADDRESS", raising=False)
        try:
            # Started here, in the main thread: Ray ties a local instance's processes to the thread that
            # starts it (they get SIGKILL when it ends), and the jobs below run in run_bounded's threads.
            executor.connect(None)
            yield folder
        finally:
            executor.shutdown()
            _kill(_ray_processes(folder))
    shutil.rmtree(folder, ignore_errors=True)
    assert not _ray_processes(folder)
    assert had_token or not token.exists(), "a Ray auth token was left in ~/.ray"


def run_bounded(fn, seconds: float):
    """``fn()`` in a thread: (finished, result or exception); a hung Ray job fails the test, not CI."""
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if "error" in box:
        raise box["error"]
    return not thread.is_alive(), box.get("result")


# ------------------------------------------------------------------ Ray's local mode


@needs_ray
def test_index_on_ray_equals_one_process_and_skips_the_shards_already_done(ray_env, tmp_path, capsys):
    """Worker 0 of 2 (``--shard``, no Ray) embeds the even shards; ``--workers 2`` (Ray, two actors on
    this machine) embeds only the odd ones and assembles an index equal to the single-process one."""
    from llmcse.cli import main
    from llmcse.retrieval.index import build_index

    build_index("all-MiniLM-L6-v2", CORPUS, tmp_path / "one", shard_size=1)
    two = tmp_path / "two"
    assert main(["-q", "index", "--corpus", str(CORPUS), "--out", str(two), "--shard-size", "1", "--shard", "0/2"]) == 0
    even = {p.name: p.stat().st_mtime_ns for p in (two / "shards").glob("*.npy")}
    assert sorted(even) == ["00000.npy", "00002.npy"]
    done, _ = run_bounded(lambda: main(["-q", "index", "--corpus", str(CORPUS), "--out", str(two), "--shard-size", "1",
                                        "--workers", "2"]), 600)
    assert done
    assert {p.name: p.stat().st_mtime_ns for p in (two / "shards").glob("*.npy") if p.name in even} == even
    rows = provenance(two / "provenance.jsonl")  # written by Ray runs only: the local folder layout is unchanged
    assert sorted((r["executor"], r["index"]) for r in rows) == [("ray", 1), ("ray", 3)]
    assert all(r["documents"] == 1 and r["host"] == socket.gethostname() for r in rows)
    assert np.allclose(np.load(two / "vectors.npy"), np.load(tmp_path / "one" / "vectors.npy"), atol=1e-5)
    assert (two / "docs.jsonl").read_bytes() == (tmp_path / "one" / "docs.jsonl").read_bytes()


@needs_ray
def test_generate_and_filter_on_ray_write_what_one_process_writes_and_resume_from_shards(ray_env, tmp_path):
    from llmcse.synth.filter import FilterConfig, dropped_path, run_filter, scores_path
    from llmcse.synth.generate import GenerateConfig, rejected_path, run_generate, summary_path

    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(SEEDS) + "\n", encoding="utf-8")

    def generate(out: Path, **kwargs) -> dict:
        cfg = GenerateConfig(recipe="nli", seeds=str(seeds), llm="fake:", out=str(out), chunk_size=2)
        return run_generate(cfg, show_progress_bar=False, **kwargs)

    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    expected = generate(one)
    done, got = run_bounded(lambda: generate(two, executor="ray", actors=2), 600)
    assert done and (got["kept"], got["rejected"]) == (expected["kept"], expected["rejected"])
    assert got["this_run"]["seeds_processed"] == len(SEEDS) and got["this_run"]["shards_run"] == 4
    assert records(two) == records(one) and records(rejected_path(two)) == records(rejected_path(one))
    assert len({r["index"] for r in provenance(two.with_name(two.name + ".shards") / "provenance.jsonl")}) == 4

    # the driver died after the actors finished: the shards are there, the output files are not
    before = records(two)
    for path in (two, rejected_path(two), summary_path(two)):
        path.unlink(missing_ok=True)  # no rejected file when nothing was rejected
    again = generate(two, executor="ray", actors=2)
    assert again["this_run"]["shards_run"] == 0 and again["this_run"]["seeds_processed"] == len(SEEDS)
    assert records(two) == before
    assert generate(two, executor="ray", actors=2)["this_run"]["seeds_processed"] == 0 and records(two) == before

    def filter_(out: Path, source: Path, **kwargs) -> dict:
        cfg = FilterConfig(input=str(source), out=str(out), llm="fake:", chunk_size=2)
        return run_filter(cfg, show_progress_bar=False, **kwargs)

    kept_one, kept_two = tmp_path / "k1.jsonl", tmp_path / "k2.jsonl"
    report = filter_(kept_one, one)
    done, report_two = run_bounded(lambda: filter_(kept_two, two, executor="ray", actors=2), 600)
    assert done and report_two["dropped_by_reason"] == report["dropped_by_reason"]
    assert records(scores_path(kept_two)) == records(scores_path(kept_one))
    assert records(kept_two) == records(kept_one) and records(dropped_path(kept_two)) == records(dropped_path(kept_one))

    # --scoring cosine: each actor loads the embedder; the same cosine scores as one process
    def cosine(out: Path, **kwargs) -> list[dict]:
        cfg = FilterConfig(input=str(one), out=str(out), llm=None, scoring="cosine", embedder="all-MiniLM-L6-v2",
                           chunk_size=2, min_positive_overlap=0.0, min_negative_overlap=0.0)
        run_filter(cfg, show_progress_bar=False, **kwargs)
        return records(scores_path(out))

    local = cosine(tmp_path / "c1.jsonl")
    done, on_ray = run_bounded(lambda: cosine(tmp_path / "c2.jsonl", executor="ray", actors=2), 600)
    assert done and [r["id"] for r in on_ray] == [r["id"] for r in local]
    graded = [(a["scores"], b["scores"]) for a, b in zip(local, on_ray) if a["scores"]]
    assert len(graded) >= 4 and len({s["positive"] for s, _ in graded}) >= 4
    for a, b in graded:
        assert b == pytest.approx(a, abs=1e-3)


RAY_RECIPE = """[run]
name = "ray-run"
stages = ["generate", "filter"]
{run}
[generate]
recipe = "nli"
llm = "fake:"
seeds = "{seeds}"
chunk_size = 2

[filter]
llm = "fake:"
chunk_size = 2
"""


@needs_ray
def test_a_recipe_run_on_ray_writes_what_the_local_run_writes_and_may_resume_locally(ray_env, tmp_path):
    """[run] executor = "ray" (or `llmcse run --executor ray`): generate and filter run as Ray actors; the
    run folder's files are the local run's, the shards are the steps' own (their stamps list them), and the
    executor is not part of a stamp: the same run folder plans as done under the local executor."""
    from llmcse.api import run

    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(SEEDS) + "\n", encoding="utf-8")
    recipe = tmp_path / "r.toml"
    recipe.write_text(RAY_RECIPE.format(run='executor = "ray"\nactors = 2\n', seeds=seeds), encoding="utf-8")
    local = run(recipe, out=tmp_path / "local", executor="local")  # the keyword overrides the recipe's [run]
    done, on_ray = run_bounded(lambda: run(recipe, out=tmp_path / "ray"), 600)
    assert done and [a for _, a, _ in on_ray.plan] == ["run", "run"]
    for name in ("generated.jsonl", "kept.jsonl", "kept.dropped.jsonl", "kept.scores.jsonl"):
        assert records(on_ray.run_dir / name) == records(local.run_dir / name), name
    assert not (local.run_dir / "generated.jsonl.shards").exists()
    for step, shards in (("generate", "generated.jsonl.shards"), ("filter", "kept.jsonl.shards")):
        assert (on_ray.run_dir / shards / "manifest.json").is_file()
        stamp = json.loads((on_ray.run_dir / ".stages" / f"{step}.json").read_text(encoding="utf-8"))
        assert shards in stamp["outputs"], stamp
    again = run(recipe, out=tmp_path / "ray", executor="local", dry_run=True)
    assert [a for _, a, _ in again.plan] == ["skip", "skip"]


@needs_ray
def test_expand_and_embed_on_ray_equal_one_process(ray_env, tmp_path, monkeypatch, capsys):
    from llmcse.cli import main
    from llmcse.synth.expand import ExpandConfig, run_expand

    def expand(out: Path, **kwargs) -> dict:
        cfg = ExpandConfig(corpus=str(CORPUS), out=str(out), llm="fake:", queries=2, keywords=2, max_doc_tokens=64,
                           chunk_size=1, shard_size=1)
        return run_expand(cfg, show_progress_bar=False, **kwargs)

    expand(tmp_path / "one.jsonl")
    done, summary = run_bounded(lambda: expand(tmp_path / "two.jsonl", executor="ray", actors=2), 600)
    assert done and summary["this_run"]["documents"] == 4 and summary["documents"] == 4
    assert records(tmp_path / "two.jsonl") == records(tmp_path / "one.jsonl")

    import llmcse.embed.sharded as sharded

    monkeypatch.setattr(sharded, "SHARD_UNIT", 3)  # 10 texts: 4 shards
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(SEEDS + ["Short one.", "Another short text about lakes."]) + "\n", encoding="utf-8")
    common = ["-q", "embed", "--model", "all-MiniLM-L6-v2", "--input", str(texts)]
    assert main([*common, "--output", str(tmp_path / "one.npy")]) == 0
    done, rc = run_bounded(lambda: main([*common, "--output", str(tmp_path / "two.npy"), "--executor", "ray",
                                         "--actors", "2"]), 600)
    assert done and rc == 0
    assert np.allclose(np.load(tmp_path / "two.npy"), np.load(tmp_path / "one.npy"), atol=1e-5)
    assert len(provenance(tmp_path / "two.npy.shards" / "provenance.jsonl")) == 4


@needs_ray
def test_a_model_an_actor_cannot_load_stops_the_job_with_one_line_naming_the_shard(ray_env, tmp_path):
    """A user error in an actor (here its model is missing) is not retried forever: the first shard
    reports it, and the job stops with its message."""
    import functools

    from llmcse.retrieval.index import IndexShardWorker

    factory = functools.partial(IndexShardWorker, str(tmp_path / "no-such-model"), "1,1,1")
    tasks = [{"index": i, "path": str(tmp_path / f"{i}.npy"), "doc_ids": [], "docs": {}, "expansions": {}}
             for i in range(2)]
    with pytest.raises(LlmcseError) as error:
        run_bounded(lambda: executor.run_shards(factory, tasks, executor="ray", actors=1, desc="index shards"), 600)
    message = str(error.value)
    assert message.startswith("index shards: shard ") and "no-such-model': no such file or folder" in message
    assert "rerun to continue" in message and len(message.splitlines()) == 1
    assert not list(tmp_path.glob("*.npy"))


# ------------------------------------------------------------------ two nodes on 127.0.0.1


def _ray_cli() -> str:
    local = Path(sys.executable).with_name("ray")
    return str(local) if local.exists() else shutil.which("ray")


@pytest.fixture(scope="module")
def cluster(ray_env):
    """A head node and a worker node (one CPU each) on 127.0.0.1, joined by this process as the driver.

    Yields (address, worker node's ``ray start --block`` process, worker node id)."""
    import os

    executor.shutdown()  # a local-mode instance of the tests above
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    logs = ray_env / "logs"
    logs.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = None
    with open(logs / "head.log", "w") as head_log, open(logs / "worker.log", "w") as worker_log:
        try:
            subprocess.run([_ray_cli(), "start", "--head", "--num-cpus=1", f"--port={port}",
                            "--node-ip-address=127.0.0.1", f"--temp-dir={ray_env}", "--include-dashboard=false",
                            "--disable-usage-stats"], check=True, env=env, timeout=300, stdout=head_log,
                           stderr=subprocess.STDOUT)
            # --block: the node's processes are this one's children, so the test can kill exactly them
            worker = subprocess.Popen([_ray_cli(), "start", f"--address={address}", "--num-cpus=1",
                                       "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block"],
                                      env=env, stdout=worker_log, stderr=subprocess.STDOUT)
            yield from _joined(address, worker, logs)
        finally:
            executor.shutdown()
            if worker is not None and worker.poll() is None:
                _kill(_descendants([__import__("psutil").Process(worker.pid)]))
            _kill(_ray_processes(ray_env))


def _joined(address: str, worker, logs: Path):
    """Connect as the driver; wait for both nodes; yield (address, worker process, worker node id)."""
    ray = executor.connect(address)
    deadline = time.time() + 300
    while len([n for n in ray.nodes() if n["Alive"]]) < 2:
        assert time.time() < deadline and worker.poll() is None, (logs / "worker.log").read_text()[-2000:]
        time.sleep(2)
    worker_node = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "node:__internal_head__" not in n["Resources"])
    yield address, worker, worker_node


@needs_ray
def test_two_nodes_share_index_and_generate_and_match_one_process(cluster, tmp_path):
    from llmcse.retrieval.index import build_index
    from llmcse.synth.generate import GenerateConfig, rejected_path, run_generate

    address, _, worker_node = cluster
    build_index("all-MiniLM-L6-v2", CORPUS, tmp_path / "one", shard_size=1)
    done, _ = run_bounded(lambda: build_index("all-MiniLM-L6-v2", CORPUS, tmp_path / "two", shard_size=1,
                                              executor="ray", ray_address=address, actors=2), 600)
    assert done
    rows = provenance(tmp_path / "two" / "provenance.jsonl")
    assert sorted(r["index"] for r in rows) == [0, 1, 2, 3] and len({r["node"] for r in rows}) == 2
    assert worker_node in {r["node"] for r in rows}
    assert np.allclose(np.load(tmp_path / "two" / "vectors.npy"), np.load(tmp_path / "one" / "vectors.npy"), atol=1e-5)

    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(SEEDS) + "\n", encoding="utf-8")
    cfg = dict(recipe="sts3", seeds=str(seeds), llm="fake:", chunk_size=1)
    run_generate(GenerateConfig(out=str(tmp_path / "g1.jsonl"), **cfg), show_progress_bar=False)
    done, summary = run_bounded(lambda: run_generate(GenerateConfig(out=str(tmp_path / "g2.jsonl"), **cfg),
                                                     show_progress_bar=False, executor="ray", ray_address=address,
                                                     actors=2), 600)
    assert done and summary["this_run"]["nodes"] == 2
    rows = provenance(tmp_path / "g2.jsonl.shards" / "provenance.jsonl")
    assert sorted(r["index"] for r in rows) == list(range(len(SEEDS))) and len({r["node"] for r in rows}) == 2
    assert records(tmp_path / "g2.jsonl") == records(tmp_path / "g1.jsonl")
    assert records(rejected_path(tmp_path / "g2.jsonl")) == records(rejected_path(tmp_path / "g1.jsonl"))


@needs_ray
def test_killing_the_worker_node_mid_job_loses_and_duplicates_nothing(cluster, tmp_path):
    """The worker node dies (SIGKILL to its raylet and actor) after finishing a shard; Ray runs its
    shard again on the head, and the output equals the single-process run's. Runs last: it takes
    the worker node away."""
    import psutil

    from llmcse.synth.generate import GenerateConfig, rejected_path, run_generate

    address, worker, worker_node = cluster
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(SEEDS) + "\n", encoding="utf-8")
    cfg = dict(recipe="nli", seeds=str(seeds), chunk_size=1, llm="fake:delay=0.4")  # 0.4 s per prompt: time to kill
    run_generate(GenerateConfig(out=str(tmp_path / "one.jsonl"), **cfg), show_progress_bar=False)
    out = tmp_path / "two.jsonl"
    log = out.with_name(out.name + ".shards") / "provenance.jsonl"
    box = {}

    def job():
        box["summary"] = run_generate(GenerateConfig(out=str(out), **cfg),
                                      show_progress_bar=False, executor="ray", ray_address=address, actors=2)

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    deadline = time.time() + 300
    while not (log.exists() and any(r["node"] == worker_node for r in provenance(log))):
        assert time.time() < deadline and thread.is_alive(), "the worker node never finished a shard"
        time.sleep(0.2)
    killed = _descendants([psutil.Process(worker.pid)])
    _kill(killed)  # the node's raylet, agents and actor: as a power cut, nothing shuts down cleanly
    thread.join(600)
    assert not thread.is_alive(), "the job did not finish after the worker node died"
    summary = box["summary"]
    rows = provenance(log)
    assert sorted(r["index"] for r in rows) == list(range(len(SEEDS)))  # every shard once
    assert any(r["node"] != worker_node for r in rows)  # the head took over
    got = records(out)
    assert len({r["seed"] for r in got}) == len(got)  # nothing twice
    assert got == records(tmp_path / "one.jsonl") and summary["seeds_done"] == len(SEEDS)
    assert records(rejected_path(out)) == records(rejected_path(tmp_path / "one.jsonl"))
