"""The ``llmcse`` command: data list, eval with results.json, embed, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from llmcse.cli import main


def test_data_list_shows_found_tasks_sizes_and_missing_standard_ones(tiny_data_dir, capsys):
    assert main(["data", "list", "--data-dir", str(tiny_data_dir)]) == 0
    out = capsys.readouterr().out
    assert "toysts" in out and "dev 4, test 8" in out
    assert "toyretrieval" in out and "docs 4, queries 3, qrels:test 3" in out
    assert "missing standard sets: sts12" in out


def test_eval_writes_results_json_with_main_scores_and_provenance(tiny_data_dir, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code = main(["-q", "eval", "--model", "all-MiniLM-L6-v2", "--tasks", "toysts,toysts:dev,toyretrieval",
                 "--data-dir", str(tiny_data_dir), "--output-dir", str(out_dir), "--device", "cpu"])
    assert code == 0
    results = json.loads((out_dir / "results.json").read_text())
    assert results["model"] == "all-MiniLM-L6-v2"
    assert set(results["tasks"]) == {"toysts", "toysts:dev", "toyretrieval"}
    assert results["tasks"]["toysts"]["main_metric"] == "cosine_spearman"
    assert results["tasks"]["toysts:dev"]["split"] == "dev"
    assert results["tasks"]["toyretrieval"]["main_score"] == pytest.approx(100.0)
    assert set(results["data_files"]) == {"sts/toysts_test.tsv", "sts/toysts_dev.tsv", "beir/toyretrieval/corpus.jsonl",
                                          "beir/toyretrieval/queries.jsonl", "beir/toyretrieval/qrels/test.tsv"}
    assert {"torch", "transformers", "sentence-transformers", "llmcse"} <= set(results["versions"])
    assert len(results["config_hash"]) == 12
    assert (out_dir / "results.md").read_text().startswith("# Results: all-MiniLM-L6-v2")
    assert "toysts" in capsys.readouterr().out


def test_same_model_twice_gives_the_same_numbers(tiny_data_dir):
    from llmcse.eval.run import EvalConfig, run_evaluation

    cfg = EvalConfig(model="all-MiniLM-L6-v2", tasks="toysts,toysent", data_dir=str(tiny_data_dir), device="cpu",
                     show_progress_bar=False)
    first, second = run_evaluation(cfg), run_evaluation(cfg)
    for key in first["tasks"]:
        assert first["tasks"][key]["main_score"] == second["tasks"][key]["main_score"]
    assert first["config_hash"] == second["config_hash"]


def test_malformed_file_exits_2_with_one_line_naming_file_and_line(tiny_data_dir, capsys):
    bad = tiny_data_dir / "sts" / "broken.tsv"
    bad.write_text("sentence1\tsentence2\tscore\nA.\tB.\tlots\n", encoding="utf-8")
    code = main(["eval", "--model", "all-MiniLM-L6-v2", "--tasks", "broken", "--data-dir", str(tiny_data_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == f"llmcse: error: {bad}:2: score 'lots' is not a number"


def test_pooling_flag_is_refused_for_a_model_with_saved_pooling(tiny_data_dir, capsys):
    code = main(["eval", "--model", "all-MiniLM-L6-v2", "--pooling", "cls", "--tasks", "toysts",
                 "--data-dir", str(tiny_data_dir)])
    assert code == 2
    assert "--pooling is only for raw transformer checkpoints" in capsys.readouterr().err


def test_bm25_refuses_non_retrieval_tasks(tiny_data_dir, capsys):
    assert main(["eval", "--model", "bm25", "--tasks", "toysts", "--data-dir", str(tiny_data_dir)]) == 2
    assert "only runs retrieval tasks" in capsys.readouterr().err


def test_embed_writes_npy_in_input_order_and_parquet_with_ids(tmp_path, minilm):
    src = tmp_path / "in.txt"
    src.write_text("A man plays guitar.\n\nThe cat sleeps.\n", encoding="utf-8")
    assert main(["-q", "embed", "--model", "all-MiniLM-L6-v2", "--input", str(src), "--output", str(tmp_path / "e.npy"),
                 "--device", "cpu"]) == 0
    matrix = np.load(tmp_path / "e.npy")
    expected = minilm.encode(["A man plays guitar.", "The cat sleeps."], normalize_embeddings=True)
    assert matrix.shape == (2, 384)
    np.testing.assert_allclose(matrix, expected, atol=1e-5)

    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text('{"_id": "a", "text": "first"}\n{"_id": "b", "title": "T", "text": "second"}\n', encoding="utf-8")
    assert main(["-q", "embed", "--model", "all-MiniLM-L6-v2", "--input", str(jsonl), "--output",
                 str(tmp_path / "e.parquet"), "--device", "cpu"]) == 0
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "e.parquet").to_pydict()
    assert table["id"] == ["a", "b"] and table["text"] == ["first", "T second"]
    assert len(table["embedding"][0]) == 384


def test_embed_reports_a_jsonl_row_without_the_field(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "ok"}\n{"body": "no text"}\n', encoding="utf-8")
    assert main(["embed", "--model", "all-MiniLM-L6-v2", "--input", str(src), "--output", str(tmp_path / "e.npy")]) == 2
    assert f"{src}:2: no field 'text'" in capsys.readouterr().err


def test_console_script_help_runs():
    out = subprocess.run([sys.executable, "-m", "llmcse.cli", "eval", "--help"], capture_output=True, text=True, check=True)
    assert "llmcse eval --model all-MiniLM-L6-v2 --tasks sts" in out.stdout


def test_importing_llmcse_loads_no_heavy_or_optional_library():
    code = ("import sys, llmcse, llmcse.cli, llmcse.data.tasks; llmcse.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'faiss', 'bm25s') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
