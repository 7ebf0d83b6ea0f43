"""Issue 20, case 10: ``llmcse eval`` on bad input gives one line and exit 2 (nothing written), or a
documented warning; never a traceback, never minutes of hub retries, never invalid JSON."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import pytest

from llmcse.cli import main


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run ``llmcse`` in-process; argparse errors (SystemExit) count as their exit code."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a hash of its bytes: "nothing written" is an equal snapshot."""
    return {str(p.relative_to(root)): (hashlib.md5(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def strict_json(path: Path) -> dict:
    """Parse as a strict reader would: bare NaN/Infinity are errors."""
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}: not JSON")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def eval_args(data_dir: Path, *extra: str, model: str = "all-MiniLM-L6-v2") -> list[str]:
    return ["-q", "eval", "--model", model, "--device", "cpu", "--data-dir", str(data_dir), *extra]


# --------------------------------------------------------------------------- bad model, batch size, output dir

# (model spec, text the one-line error must contain); {tmp} is the test's folder
BAD_MODELS = [
    ("/no/such/model", "model '/no/such/model': no such file or folder"),
    ("./no-such-model", "model './no-such-model': no such file or folder"),
    ("runs/typo-model", "model 'runs/typo-model': no such file or folder"),  # runs/ exists here: a local path
    ("a/b/c", "model 'a/b/c': no such file or folder"),  # hub ids have at most one '/'
    ("not a model!", "neither an existing file or folder nor a Hugging Face hub id"),
    ("nobody-xyz/no-such-model", "not in the Hugging Face cache, and the hub is offline (HF_HUB_OFFLINE is set)"),
]


@pytest.mark.parametrize("model,message", BAD_MODELS, ids=[m for m, _ in BAD_MODELS])
def test_unknown_model_is_one_line_error_without_hub_retries(model, message, tiny_data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = snapshot(tmp_path)
    t0 = time.perf_counter()
    code, out, err = run_cli(eval_args(tiny_data_dir, "--tasks", "toysts", "--output-dir", "out", model=model), capsys)
    seconds = time.perf_counter() - t0
    assert code == 2
    assert err.startswith("llmcse: error: ") and err.count("\n") == 1 and message in err
    assert seconds < 10, f"took {seconds:.0f} s: the model spec must be refused before any loading or hub call"
    assert snapshot(tmp_path) == before


# (argument, value, message): argparse's own one-line usage error, exit 2
BAD_NUMBERS = [
    ("--batch-size", "0", "argument --batch-size: must be >= 1, got 0"),
    ("--batch-size", "-5", "argument --batch-size: must be >= 1, got -5"),
    ("--batch-size", "many", "argument --batch-size: expected an integer, got 'many'"),
    ("--max-seq-length", "0", "argument --max-seq-length: must be >= 1, got 0"),
    ("--transfer-max-examples", "0", "argument --transfer-max-examples: must be >= 1, got 0"),
]


@pytest.mark.parametrize("option,value,message", BAD_NUMBERS, ids=[f"{o}={v}" for o, v, _ in BAD_NUMBERS])
def test_bad_numbers_are_usage_errors(option, value, message, tiny_data_dir, tmp_path, capsys):
    before = snapshot(tmp_path)
    code, _, err = run_cli(eval_args(tiny_data_dir, "--tasks", "toysts", "--output-dir", str(tmp_path / "out"),
                                     option, value), capsys)
    assert code == 2
    assert err.strip().splitlines()[-1] == f"llmcse eval: error: {message}"
    assert snapshot(tmp_path) == before


def test_batch_size_is_checked_in_the_library_too(tiny_data_dir):
    from llmcse.errors import LlmcseError
    from llmcse.eval.run import EvalConfig, run_evaluations

    with pytest.raises(LlmcseError, match="batch size must be >= 1, got 0"):
        run_evaluations(EvalConfig(model="all-MiniLM-L6-v2", tasks="toysts", data_dir=str(tiny_data_dir), batch_size=0))


@pytest.mark.parametrize("layout", ["file", "parent_is_file", "results_json_is_a_folder"])
def test_unusable_output_dir_is_refused_before_the_model_loads(layout, tiny_data_dir, tmp_path, monkeypatch, capsys):
    import llmcse.embed.models

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(llmcse.embed.models, "load_embedder", no_loading)
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("my notes\n", encoding="utf-8")
    output_dir, message = {
        "file": (work / "notes.txt", f"--output-dir {str(work / 'notes.txt')!r} is a file, not a folder"),
        "parent_is_file": (work / "notes.txt" / "out", f"{work / 'notes.txt'} is a file, not a folder"),
        "results_json_is_a_folder": (work / "out", f"{work / 'out' / 'results.json'} is a folder"),
    }[layout]
    if layout == "results_json_is_a_folder":
        (work / "out" / "results.json").mkdir(parents=True)
    before = snapshot(work)
    code, _, err = run_cli(eval_args(tiny_data_dir, "--tasks", "toysts", "--output-dir", str(output_dir)), capsys)
    assert code == 2
    assert err.count("\n") == 1 and message in err
    assert snapshot(work) == before


# --------------------------------------------------------------------------- the same task name in two folders


def test_task_name_in_sts_and_beir_is_ambiguous_until_qualified(tiny_data_dir, tmp_path, capsys):
    shutil.copy(tiny_data_dir / "sts" / "toysts_test.tsv", tiny_data_dir / "sts" / "toyretrieval.tsv")
    out_dir = tmp_path / "out"
    code, _, err = run_cli(eval_args(tiny_data_dir, "--tasks", "toyretrieval", "--output-dir", str(out_dir)), capsys)
    assert code == 2 and err.count("\n") == 1
    assert "task name 'toyretrieval' is ambiguous" in err
    assert str(tiny_data_dir / "sts" / "toyretrieval.tsv") in err and str(tiny_data_dir / "beir" / "toyretrieval") in err
    assert "say which: sts/toyretrieval, beir/toyretrieval" in err
    assert not out_dir.exists()

    # qualified names pick one each, and are the result keys; `data list` shows both
    code, _, _ = run_cli(eval_args(tiny_data_dir, "--tasks", "sts/toyretrieval,beir/toyretrieval,sts/toysts",
                                   "--output-dir", str(out_dir)), capsys)
    assert code == 0
    tasks = strict_json(out_dir / "results.json")["tasks"]
    assert set(tasks) == {"sts/toyretrieval", "beir/toyretrieval", "toysts"}
    assert tasks["sts/toyretrieval"]["main_metric"] == "cosine_spearman"
    assert tasks["sts/toyretrieval"]["main_score"] == pytest.approx(tasks["toysts"]["main_score"])
    assert tasks["beir/toyretrieval"]["main_score"] == pytest.approx(100.0)
    code, out, _ = run_cli(["data", "list", "--data-dir", str(tiny_data_dir)], capsys)
    assert code == 0 and "sts/toyretrieval" in out and "beir/toyretrieval" in out


# --------------------------------------------------------------------------- gold scores: inf/nan, all equal

NON_FINITE = ["inf", "-inf", "Infinity", "nan"]


@pytest.mark.parametrize("score", NON_FINITE)
def test_non_finite_gold_score_is_a_file_line_error(score, tiny_data_dir, tmp_path, capsys):
    bad = tiny_data_dir / "sts" / "bad.tsv"
    bad.write_text("sentence1\tsentence2\tscore\nA dog runs.\tA dog is running.\t4.5\n"
                   f"A cat sleeps.\tThe stock fell.\t{score}\n", encoding="utf-8")
    out_dir = tmp_path / "out"
    code, _, err = run_cli(eval_args(tiny_data_dir, "--tasks", "bad", "--output-dir", str(out_dir)), capsys)
    assert code == 2
    assert err == f"llmcse: error: {bad}:3: score {score!r} is not a finite number\n"
    assert not out_dir.exists()


def test_all_equal_gold_scores_write_null_and_warn(tiny_data_dir, tmp_path, capsys, caplog):
    flat = tiny_data_dir / "sts" / "flat.tsv"
    rows = [("A dog runs.", "A dog is running."), ("A cat sleeps.", "The stock fell."), ("It rains.", "Water falls.")]
    flat.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t3.0\n" for a, b in rows), encoding="utf-8")
    out_dir = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        code, out, _ = run_cli(eval_args(tiny_data_dir, "--tasks", "flat,toysts", "--output-dir", str(out_dir)), capsys)
    assert code == 0
    results = strict_json(out_dir / "results.json")  # was: bare NaN, which strict readers reject
    flat_result = results["tasks"]["flat"]
    assert flat_result["main_score"] is None and flat_result["cosine_spearman"] is None
    assert flat_result["warning"] == f"all 3 gold scores are equal (3) in {flat}: Spearman is undefined; the score is null"
    assert results["tasks"]["toysts"]["main_score"] > 50  # the other task is untouched
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("flat: all 3 gold scores are equal" in w for w in warnings)
    assert any("non-finite value(s) written as null at tasks.flat.main_score" in w for w in warnings)


def test_json_writer_never_writes_bare_nan(tmp_path):
    import numpy as np

    from llmcse.utils.io import atomic_write_json

    atomic_write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.5, np.float64("inf")], "c": {"d": -float("inf")}})
    assert strict_json(tmp_path / "x.json") == {"a": None, "b": [1.5, None], "c": {"d": None}}


# --------------------------------------------------------------------------- qrels that point nowhere


def test_qrels_all_pointing_to_missing_documents_warn_loudly(tiny_data_dir, tmp_path, capsys, caplog):
    qrels = tiny_data_dir / "beir" / "toyretrieval" / "qrels" / "test.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\tgone1\t1\nq2\tgone2\t1\nq3\tgone3\t1\n", encoding="utf-8")
    out_dir = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        code, _, _ = run_cli(eval_args(tiny_data_dir, "--tasks", "toyretrieval", "--output-dir", str(out_dir)), capsys)
    assert code == 0
    result = strict_json(out_dir / "results.json")["tasks"]["toyretrieval"]
    assert result["main_score"] == 0 and result["qrels_unknown_doc"] == 3
    assert result["warning"].startswith("none of the 3 judged queries has a relevant document in corpus.jsonl "
                                        "(3 qrels point to missing documents): the score is 0 by construction")
    assert any(r.levelno == logging.WARNING and "none of the 3 judged queries" in r.getMessage() for r in caplog.records)


def test_a_few_missing_documents_stay_an_info_line(tiny_data_dir, tmp_path, capsys, caplog):
    qrels = tiny_data_dir / "beir" / "toyretrieval" / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text(encoding="utf-8") + "q1\tgone\t1\n", encoding="utf-8")
    out_dir = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        code, _, _ = run_cli(eval_args(tiny_data_dir, "--tasks", "toyretrieval", "--output-dir", str(out_dir)), capsys)
    assert code == 0
    result = strict_json(out_dir / "results.json")["tasks"]["toyretrieval"]
    assert "warning" not in result and result["qrels_unknown_doc"] == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "judged queries" in r.getMessage()]
