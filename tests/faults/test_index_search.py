"""Issue 20, cases 7 and 13: `llmcse index` swaps a finished index in whole (a killed rebuild
leaves the old index or none, never a mix), records the model's identity and refuses a model
that changed; `llmcse search` and `llmcse filter-expansions` turn damaged indexes and bad
numbers into one-line errors (exit 2) that name the file or value, and change no file."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmcse.cli import main
from llmcse.errors import LlmcseError
from llmcse.retrieval import index as ix
from llmcse.retrieval.index import build_index, search_index
from fault_helpers import cli, snapshot

TESTS = Path(__file__).resolve().parents[1]
OLD_CORPUS = TESTS / "data" / "data_dir" / "beir" / "toyretrieval" / "corpus.jsonl"  # d1..d4
NEW_TOPICS = ["chess openings for beginners", "brewing espresso coffee at home", "bitcoin mining rigs", "marathon training plan"]
QUERIES = ["espresso", "volcano lava"]


def hits(index: Path) -> list[list[tuple[str, float]]]:
    return [[(h["_id"], h["score"]) for h in row] for row in search_index(index, QUERIES, k=4)]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, list]:
    """An index of the old corpus (4 documents, 2 shards) and its search results."""
    idx = tmp_path_factory.mktemp("built") / "idx"
    build_index("all-MiniLM-L6-v2", OLD_CORPUS, idx, shard_size=2)
    return idx, hits(idx)


@pytest.fixture()
def work(tmp_path, built) -> tuple[Path, Path, list]:
    """(a copy of the old index, a new corpus of other documents, the old index's results)."""
    idx = tmp_path / "idx"
    shutil.copytree(built[0], idx)
    corpus = tmp_path / "new.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"n{i}", "title": t, "text": t}) + "\n" for i, t in enumerate(NEW_TOPICS)))
    return idx, corpus, built[1]


class Killed(BaseException):
    """Stands in for the kill: not an Exception, so nothing on the way up may swallow it."""


def _kill_while_embedding(monkeypatch):
    calls = []
    real = ix.atomic_save_npy

    def save(path, array):  # the first shard of the rebuild is written, then the process dies
        if calls:
            raise Killed
        calls.append(path)
        real(path, array)

    monkeypatch.setattr(ix, "atomic_save_npy", save)


def _kill_while_assembling(monkeypatch):
    real = ix.atomic_write_text

    def write(path, text):  # the new vectors.npy is on disk, docs.jsonl is not
        if Path(path).name == "docs.jsonl":
            raise Killed
        real(path, text)

    monkeypatch.setattr(ix, "atomic_write_text", write)


def _kill_between_renames(monkeypatch):
    calls = []
    real = ix._rename

    def rename(src, dst):  # the old index has been moved aside, the new one not yet moved in
        calls.append(src)
        if len(calls) == 2:
            raise Killed
        real(src, dst)

    monkeypatch.setattr(ix, "_rename", rename)


@pytest.mark.parametrize("kill", [_kill_while_embedding, _kill_while_assembling, _kill_between_renames],
                         ids=["embedding", "assembling", "swapping"])
def test_case7_killed_rebuild_on_another_corpus_serves_the_old_index_never_a_mix(work, monkeypatch, kill):
    idx, new_corpus, old_hits = work
    kill(monkeypatch)
    with pytest.raises(Killed):
        build_index("all-MiniLM-L6-v2", new_corpus, idx, shard_size=2)
    monkeypatch.undo()
    # the old index, whole: same documents, same scores, its own index.json
    assert json.loads((idx / "index.json").read_text())["corpus"] == str(OLD_CORPUS)
    assert hits(idx) == old_hits
    assert [p.name for p in idx.parent.iterdir() if ".llmcse-" in p.name] == []  # nothing left beside it
    # the rerun finishes the job: only the new corpus is served, shards and manifest carried over
    meta = build_index("all-MiniLM-L6-v2", new_corpus, idx, shard_size=2)
    assert meta["corpus"] == str(new_corpus) and meta["documents"] == 4
    new_hits = hits(idx)
    assert {d for row in new_hits for d, _ in row} == {"n0", "n1", "n2", "n3"} and new_hits[0][0][0] == "n1"
    assert sorted(p.name for p in idx.iterdir()) == ["docs.jsonl", "index.json", "manifest.json", "shards", "vectors.npy"]
    assert json.loads((idx / "manifest.json").read_text())["identity"]["corpus_md5"] == meta["corpus_md5"]


def _dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_case7_a_build_killed_mid_swap_is_refused_by_search_and_undone_by_the_next_build(work, capsys):
    """kill -9 between the two renames: no index at the path; search says so; the next build puts
    the old one back first (a dead process's leftovers only), then swaps the new one in."""
    idx, new_corpus, old_hits = work
    owner = f"{socket.gethostname()}-{_dead_pid()}"
    old, new = ix._sibling(idx, ix.OLD, owner), ix._sibling(idx, ix.NEW, owner)
    idx.rename(old)
    new.mkdir()
    shutil.copy(old / "vectors.npy", new / "vectors.npy")  # a half-assembled new folder
    rc, err = cli(["-q", "search", str(idx), "espresso"], capsys)
    assert rc == 2 and "interrupted" in err and str(old) in err and len(err.strip().splitlines()) == 1
    alive = ix._sibling(idx, ix.NEW, f"{socket.gethostname()}-{os.getppid()}")
    alive.mkdir()  # a build still running (in a live process): left alone
    (alive / "index.json").write_text("{}")
    build_index("all-MiniLM-L6-v2", new_corpus, idx, shard_size=2)
    assert not old.exists() and not new.exists() and (alive / "index.json").exists()
    assert {d for row in hits(idx) for d, _ in row} == {"n0", "n1", "n2", "n3"}


@pytest.mark.slow
def test_case7_kill_9_mid_swap_in_a_real_process(work):
    """The same as above with a real kill (os._exit: no exception handler, no cleanup runs)."""
    idx, new_corpus, old_hits = work
    script = ("import os, sys; from llmcse.retrieval import index as ix\n"
              "real, n = ix._rename, []\n"
              "def rename(a, b):\n"
              "    n.append(a)\n"
              "    if len(n) == 2: os._exit(137)\n"
              "    real(a, b)\n"
              "ix._rename = rename\n"
              "ix.build_index('all-MiniLM-L6-v2', sys.argv[1], sys.argv[2], shard_size=2)\n")
    done = subprocess.run([sys.executable, "-c", script, str(new_corpus), str(idx)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 137, done.stderr[-2000:]
    assert not idx.exists() and len([p for p in idx.parent.iterdir() if ".llmcse-old-" in p.name]) == 1
    with pytest.raises(LlmcseError, match="interrupted"):
        search_index(idx, ["espresso"])
    ix.recover_interrupted_swap(idx)  # what the next llmcse index does first
    assert hits(idx) == old_hits


@pytest.mark.parametrize("make", ["user files", "a file"])
def test_case7_index_refuses_an_out_that_is_not_an_llmcse_index(tmp_path, capsys, make):
    target = tmp_path / "out"
    if make == "user files":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
        (target / "vectors.npy").write_text("not an index")
    else:
        target.write_text("mine")
    before = snapshot(tmp_path)
    rc, err = cli(["index", "--corpus", str(OLD_CORPUS), "--out", str(target), "--workers", "2"], capsys)
    assert rc == 2 and f"--out {target}" in err and len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_case7_index_records_the_model_identity_and_search_refuses_a_changed_model(tmp_path, capsys):
    from llmcse.utils.modelspec import resolve_model_path

    bundled = Path(resolve_model_path("all-MiniLM-L6-v2"))
    model = tmp_path / "model"  # a copy (links to the big files) that can be "retrained" in place
    for f in bundled.rglob("*"):
        if f.is_file():
            (model / f.relative_to(bundled)).parent.mkdir(parents=True, exist_ok=True)
            if f.name.endswith(".json"):
                shutil.copy(f, model / f.relative_to(bundled))
            else:
                (model / f.relative_to(bundled)).symlink_to(f)
    idx = tmp_path / "idx"
    assert main(["-q", "index", "--model", str(model), "--corpus", str(OLD_CORPUS), "--out", str(idx)]) == 0
    meta = json.loads((idx / "index.json").read_text())
    assert meta["model_path"] == str(model.resolve()) and meta["dim"] == 384
    assert meta["model_fingerprint"] == ix.model_identity("all-MiniLM-L6-v2")["fingerprint"]  # same files, same identity
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "layer_norm_eps": 1e-6}))  # the model changed in place
    before = snapshot(tmp_path)
    rc, err = cli(["-q", "search", str(idx), "volcano"], capsys)
    assert rc == 2 and "changed" in err and meta["model_fingerprint"] in err and str(idx) in err
    assert snapshot(tmp_path) == before
    # a rebuild does not reuse shards embedded by the old weights
    first = (idx / "shards" / "00000.npy").stat().st_mtime_ns
    assert main(["-q", "index", "--model", str(model), "--corpus", str(OLD_CORPUS), "--out", str(idx)]) == 0
    assert (idx / "shards" / "00000.npy").stat().st_mtime_ns != first
    assert cli(["-q", "search", str(idx), "volcano"], capsys)[0] == 0


def _corrupt_json(idx):
    (idx / "index.json").write_text('{"model": "all-MiniLM-L6-v2", "documents": 4,')
    return "index.json:1", ["-q", "search", str(idx), "volcano"]


def _not_an_object(idx):
    (idx / "index.json").write_text("[1, 2]\n")
    return "index.json: missing or invalid model, documents, dim", ["-q", "search", str(idx), "volcano"]


def _missing_vectors(idx):
    (idx / "vectors.npy").unlink()
    return "vectors.npy: file not found", ["-q", "search", str(idx), "volcano"]


def _truncated_vectors(idx):
    data = (idx / "vectors.npy").read_bytes()
    (idx / "vectors.npy").write_bytes(data[: len(data) // 2])
    return "vectors.npy: unreadable .npy (truncated", ["-q", "search", str(idx), "volcano"]


def _short_docs(idx):
    lines = (idx / "docs.jsonl").read_text().splitlines(keepends=True)
    (idx / "docs.jsonl").write_text("".join(lines[:2]))
    return "docs.jsonl: 2 rows, but the index holds 4 vectors", ["-q", "search", str(idx), "volcano"]


def _other_dimension(idx):
    np.save(idx / "vectors.npy", np.ones((4, 8), dtype=np.float32))
    meta = json.loads((idx / "index.json").read_text())
    (idx / "index.json").write_text(json.dumps({**meta, "dim": 8}))
    return "holds 8-dim vectors but all-MiniLM-L6-v2 gives 384-dim", ["-q", "search", str(idx), "volcano"]


def _k_zero(idx):
    return "argument -k: must be >= 1, got 0", ["-q", "search", str(idx), "volcano", "-k", "0"]


def _no_index(idx):
    shutil.rmtree(idx)
    idx.mkdir()
    return "is not an llmcse index (no index.json)", ["-q", "search", str(idx), "volcano"]


@pytest.mark.parametrize("damage", [_corrupt_json, _not_an_object, _missing_vectors, _truncated_vectors, _short_docs,
                                    _other_dimension, _k_zero, _no_index])
def test_case13_search_on_a_damaged_index_or_bad_k_is_one_line_naming_the_file(built, tmp_path, capsys, damage):
    idx = tmp_path / "idx"
    shutil.copytree(built[0], idx)
    expected, argv = damage(idx)
    before = snapshot(tmp_path)
    rc, err = cli(argv, capsys)
    assert rc == 2, err
    assert expected in err, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(("llmcse: error: ", "llmcse search: error: "))
    if not argv[-1] == "0":
        assert len(err.strip().splitlines()) == 1 and str(idx) in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("top_k, rc, expected", [("-3", 2, "argument --top-k: must be >= 0, got -3"),
                                                 ("x", 2, "argument --top-k: expected an integer, got 'x'"),
                                                 ("0", 0, "")])
def test_case13_filter_expansions_rejects_a_negative_top_k_and_0_still_skips_the_round_trip(tmp_path, capsys, top_k, rc, expected):
    exp = tmp_path / "exp.jsonl"
    exp.write_text(json.dumps({"_id": "d1", "queries": ["what do volcanoes erupt", "football"], "keywords": []}) + "\n")
    out = tmp_path / "rt.jsonl"
    before = snapshot(tmp_path)
    got, err = cli(["-q", "filter-expansions", "--corpus", str(OLD_CORPUS), "--in", str(exp), "--out", str(out),
                    "--top-k", top_k], capsys)
    assert got == rc and expected in err
    if rc:
        assert snapshot(tmp_path) == before
    else:  # 0: no round trip, both queries kept
        assert json.loads(out.read_text())["queries"] == ["what do volcanoes erupt", "football"]
        assert json.loads((tmp_path / "rt.report.json").read_text())["top_k"] == 0
    from llmcse.synth.expansion_filter import run_round_trip_filter

    with pytest.raises(LlmcseError, match="top_k must be an integer >= 0"):  # recipes reach it without argparse
        run_round_trip_filter(OLD_CORPUS, exp, tmp_path / "x.jsonl", top_k=-1)
