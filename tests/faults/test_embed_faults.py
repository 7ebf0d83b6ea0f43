"""Issue 20, case 12: `llmcse embed` refuses a JSONL text that is not a string (it used to embed
null, 42 and ["x"] as "None", "42" and "['x']") with file:line, and refuses an output it cannot
write before it loads the model, not after encoding everything; no file is written either way."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmcse.cli import main
from fault_helpers import cli, snapshot


@pytest.fixture()
def no_model(monkeypatch):
    """Loading a model fails the test: the refusals below must come before it."""
    import llmcse.embed.models

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input/output checks")

    monkeypatch.setattr(llmcse.embed.models, "load_embedder", refuse)


@pytest.mark.parametrize("row, expected", [
    ({"text": None}, "'text' is null, expected a string"),
    ({"text": 42}, "'text' is 42 (a JSON number), expected a string"),
    ({"text": ["x"]}, "'text' is [\"x\"] (a JSON array), expected a string"),
    ({"text": {"en": "hi"}}, "'text' is {\"en\": \"hi\"} (a JSON object), expected a string"),
    ({"text": True}, "'text' is true (a JSON boolean), expected a string"),
    ({"title": 7, "text": "a fine text"}, "'title' is 7 (a JSON number), expected a string"),
    ({"body": 3.5}, "'body' is 3.5 (a JSON number), expected a string"),
])
def test_case12_jsonl_text_that_is_not_a_string_is_refused_with_file_and_line(tmp_path, capsys, no_model, row, expected):
    data = tmp_path / "texts.jsonl"
    data.write_text(json.dumps({"text": "a good first line", "body": "fine"}) + "\n" + json.dumps(row) + "\n")
    out = tmp_path / "emb.npy"
    before = snapshot(tmp_path)
    field = ["--field", "body"] if "body" in row else []
    rc, err = cli(["-q", "embed", "--model", "all-MiniLM-L6-v2", "--input", str(data), "--output", str(out), *field], capsys)
    assert rc == 2 and err.strip() == f"llmcse: error: {data}:2: {expected}"
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name, expected", [
    ("emb.csv", "unsupported output type '.csv'; use .npy or .parquet"),
    ("emb", "unsupported output type '(none)'"),
    ("folder.npy", "is a folder; --output names the file to write"),
])
def test_case12_an_output_embed_cannot_write_is_refused_before_the_model_loads(tmp_path, capsys, no_model, name, expected):
    data = tmp_path / "texts.txt"
    data.write_text("one sentence\nanother sentence\n")
    (tmp_path / "folder.npy").mkdir()
    before = snapshot(tmp_path)
    rc, err = cli(["-q", "embed", "--model", "all-MiniLM-L6-v2", "--input", str(data), "--output", str(tmp_path / name)], capsys)
    assert rc == 2 and expected in err and str(tmp_path / name) in err and len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_case12_string_texts_and_titles_still_embed(tmp_path, capsys):
    data = tmp_path / "texts.jsonl"
    data.write_text(json.dumps({"_id": "a", "title": None, "text": "volcanoes erupt lava"}) + "\n"
                    + json.dumps({"_id": "b", "title": "Bread", "text": "baked from flour"}) + "\n")
    out = tmp_path / "emb.npy"
    assert main(["-q", "embed", "--model", "all-MiniLM-L6-v2", "--input", str(data), "--output", str(out)]) == 0
    assert np.load(out).shape == (2, 384)
