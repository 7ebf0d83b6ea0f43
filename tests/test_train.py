"""Training recipes on the stock Trainer: a short real run saves a plain sentence-transformers folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmcse.cli import main
from llmcse.errors import DataFormatError
from llmcse.train.data import read_rows


def test_recipe_defaults_and_set_overrides_resolve(capsys):
    assert main(["train", "--recipe", "multicsr", "--data", "x.tsv", "--out", "o", "--set", "max_steps=5",
                 "--set", "lr=1e-4", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["false_negative_threshold"], cfg["max_steps"], cfg["lr"]) == (0.95, 5, 1e-4)
    assert main(["train", "--recipe", "sup-simcse", "--data", "x", "--out", "o", "--set", "epoch=2", "--dry-run"]) == 2
    assert "Did you mean 'epochs'" in capsys.readouterr().err


def test_generated_records_missing_a_field_name_file_and_line(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"seed": "a", "positive": "b", "intermediate": "c", "negative": "d", "id": "x"}\n')
    assert read_rows(good, "sts3") == [("a", "b", "c", "d")]  # provenance fields are not columns
    path = tmp_path / "gen.jsonl"
    path.write_text('{"seed": "a", "positive": "b", "intermediate": "c", "negative": "d"}\n{"seed": "a", "positive": "b"}\n')
    with pytest.raises(DataFormatError, match=r"gen.jsonl:2: record lacks \['intermediate', 'negative'\]"):
        read_rows(path, "sts3")


def test_short_sup_simcse_run_saves_a_model_that_plain_sentence_transformers_loads(tmp_path, shared_data_dir,
                                                                                  tiny_data_dir):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "model"
    assert main(["-q", "train", "--recipe", "sup-simcse", "--data", str(shared_data_dir / "nli" / "triplets.tsv"),
                 "--out", str(out), "--set", "max_steps=2", "--set", "batch_size=8", "--set", "eval_steps=1",
                 "--set", "max_examples=64", "--set", "eval_task=toysts:dev", "--data-dir", str(tiny_data_dir)]) == 0
    summary = json.loads((out / "llmcse_training.json").read_text())
    assert summary["steps"] == 2 and summary["global_batch"] == 8
    assert summary["eval_task"] == "toysts:dev" and summary["dev_spearman_after"] > 50  # still a working encoder
    assert [e for e in summary["log_history"] if "eval_dev_spearman_cosine" in e]  # dev evaluated during training
    model = SentenceTransformer(str(out), device="cpu")
    vectors = model.encode(["A man plays a guitar.", "A man is playing guitar."], normalize_embeddings=True)
    assert float(np.dot(vectors[0], vectors[1])) > 0.8


def test_model_selection_on_a_test_split_is_refused(tiny_data_dir):
    from llmcse.errors import LlmcseError
    from llmcse.train.run import dev_evaluator

    with pytest.raises(LlmcseError, match="needs an STS dev split"):
        dev_evaluator("toysts", str(tiny_data_dir))  # default split of toysts is test
