"""MTEB export (issue 24, scope 5): llmcse results.json -> MTEB's task files, model_meta.json and folder layout.

The files are checked against MTEB's schema here without mteb, and loaded with mteb's own classes
(``TaskResult``, ``ResultCache``, ``ModelMeta``) when mteb is installed (``pip install "llmcse[mteb]"``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llmcse.cli import main
from llmcse.errors import LlmcseError
from llmcse.eval.mteb import (
    MTEB_TASKS,
    NO_REVISION,
    default_model_name,
    export_mteb,
    model_meta,
)

REPO = Path(__file__).resolve().parents[1]
# llmcse eval of the bundled all-MiniLM-L6-v2 on sts, transfer, arguana and geometry (committed)
MINILM_RESULTS = REPO / "benchmarks" / "results" / "baselines" / "all-MiniLM-L6-v2" / "results.json"
MINILM_DIR = "sentence-transformers__all-MiniLM-L6-v2"
# MTEB's own published scores of the same model: embeddings-benchmark/results,
# results/sentence-transformers__all-MiniLM-L6-v2/8b3219a92973c328a8e22fadcfa821b5dc75636a/<Task>.json
MTEB_PUBLISHED = {"STS12": 0.72369, "STS13": 0.806032, "STS15": 0.853896, "STS16": 0.789895,
                  "STSBenchmark": 0.820325, "ArguAna": 0.50167}
EXPORTED_FROM_MINILM = {"STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "ArguAna"}


@pytest.fixture()
def minilm_export(tmp_path):
    out = tmp_path / "mteb"
    return out, export_mteb(MINILM_RESULTS, out)


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def results_with(tasks: dict, model: str = "all-MiniLM-L6-v2", **extra) -> dict:
    """A minimal llmcse results dict (the keys the exporter reads)."""
    return {"model": model, "pooling": None, "tasks": tasks, "config": {}, "config_hash": "abc", "date": None,
            "versions": {"llmcse": "0.1.0"}, **extra}


# ----------------------------------------------------------------------------- without mteb


def test_minilm_baseline_exports_the_mteb_tasks_in_mtebs_layout(minilm_export):
    out, export = minilm_export
    folder = out / "results" / MINILM_DIR / NO_REVISION
    assert export.model_dir == folder
    assert {p.stem for p in export.written} == EXPORTED_FROM_MINILM
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{t}.json" for t in EXPORTED_FROM_MINILM]
                                                             + ["model_meta.json"])


def test_skipped_tasks_say_why(minilm_export):
    _, export = minilm_export
    assert set(export.skipped) == {"sick", "mr", "cr", "subj", "mpqa", "sst2", "trec", "mrpc", "geometry"}
    assert "9,927" in export.skipped["sick"]
    assert "SentEval" in export.skipped["mrpc"]
    assert "not an MTEB task" in export.skipped["geometry"]


def test_scores_are_on_mtebs_0_1_scale_with_mtebs_keys_and_split(minilm_export):
    out, _ = minilm_export
    llmcse = read(MINILM_RESULTS)["tasks"]
    folder = out / "results" / MINILM_DIR / NO_REVISION
    sts12 = read(folder / "STS12.json")
    assert sts12["task_name"] == "STS12"
    assert sts12["dataset_revision"] == MTEB_TASKS["sts12"].revision
    [scores] = sts12["scores"]["test"]
    assert scores["main_score"] == round(llmcse["sts12"]["main_score"] / 100, 6)
    assert scores["cosine_spearman"] == scores["main_score"]
    assert scores["cosine_pearson"] == round(llmcse["sts12"]["cosine_pearson"] / 100, 6)
    assert scores["hf_subset"] == "default" and scores["languages"] == ["eng-Latn"]
    [arguana] = read(folder / "ArguAna.json")["scores"]["test"]
    assert arguana["ndcg_at_10"] == arguana["main_score"] == round(llmcse["arguana"]["ndcg_at_10"] / 100, 6)
    assert set(arguana) >= {"recall_at_100", "map_at_10", "mrr_at_10"}
    assert sts12["llmcse"]["task"] == "sts12" and sts12["llmcse"]["source"] == str(MINILM_RESULTS)


def test_exported_minilm_scores_match_mtebs_published_ones(minilm_export):
    out, _ = minilm_export
    folder = out / "results" / MINILM_DIR / NO_REVISION
    for task, published in MTEB_PUBLISHED.items():
        ours = read(folder / f"{task}.json")["scores"]["test"][0]["main_score"]
        assert ours == pytest.approx(published, abs=1e-4), task  # measured: within 4e-5 on every task


def test_files_satisfy_mtebs_task_result_checks_without_mteb(minilm_export):
    """The checks of mteb's TaskResult._validate_scores_dict and its required fields, by hand."""
    out, export = minilm_export
    for path in export.written:
        data = read(path)
        assert {"dataset_revision", "task_name", "mteb_version", "scores", "evaluation_time"} <= set(data)
        assert isinstance(data["evaluation_time"], float)
        for split, entries in data["scores"].items():
            assert split == MTEB_TASKS[data["llmcse"]["task"]].split
            for entry in entries:
                assert isinstance(entry["main_score"], float) and 0 <= entry["main_score"] <= 1
                assert isinstance(entry["hf_subset"], str) and isinstance(entry["languages"], list)
    meta = read(out / "results" / MINILM_DIR / NO_REVISION / "model_meta.json")
    assert meta["name"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["revision"] == NO_REVISION
    assert meta["similarity_fn_name"] == "cosine"


def test_a_non_default_split_a_null_score_and_mismatched_identical_id_handling_are_skipped(tmp_path):
    results = results_with({
        "stsb:dev": {"main_score": 85.0, "split": "dev", "cosine_spearman": 85.0},
        "sts12": {"main_score": None, "split": "test", "cosine_spearman": None, "warning": "all gold scores equal"},
        "nfcorpus": {"main_score": 30.0, "split": "test", "ndcg_at_10": 30.0, "ignored_identical_ids": 2},
        "arguana": {"main_score": 50.0, "split": "test", "ndcg_at_10": 50.0, "ignored_identical_ids": 1298},
    })
    export = export_mteb(results, tmp_path)
    assert [p.name for p in export.written] == ["ArguAna.json"]  # MTEB drops identical ids for ArguAna too
    assert "split 'test'" in export.skipped["stsb:dev"]
    assert "null" in export.skipped["sts12"] and "all gold scores equal" in export.skipped["sts12"]
    assert "MTEB keeps them for NFCorpus" in export.skipped["nfcorpus"]


@pytest.mark.parametrize(("model", "extra", "expected"), [
    ("all-MiniLM-L6-v2", {}, "sentence-transformers/all-MiniLM-L6-v2"),
    ("BAAI/bge-small-en-v1.5", {}, "BAAI/bge-small-en-v1.5"),
    ("prompteol:SmolLM2-135M-Instruct", {}, "local/SmolLM2-135M-Instruct-prompteol"),
    ("SmolLM2-135M-Instruct", {"pooling": "last"}, "local/SmolLM2-135M-Instruct-last"),
    ("all-MiniLM-L6-v2", {"config": {"expansions": "x.jsonl"}}, "local/all-MiniLM-L6-v2-expanded"),
    ("bm25", {}, "local/bm25"),
])
def test_default_model_name_is_the_hub_id_only_for_the_plain_hub_model(model, extra, expected):
    assert default_model_name(results_with({}, model=model, **extra)) == expected


def test_a_local_model_folder_is_named_local_slash_folder(tmp_path):
    folder = tmp_path / "runs" / "minilm-nli"
    folder.mkdir(parents=True)
    assert default_model_name(results_with({}, model=str(folder))) == "local/minilm-nli"


def test_bad_model_name_or_revision_is_one_clear_error(tmp_path):
    with pytest.raises(LlmcseError, match="organization/model_name"):
        export_mteb(MINILM_RESULTS, tmp_path, model_name="minilm")
    with pytest.raises(LlmcseError, match="plain folder name"):
        export_mteb(MINILM_RESULTS, tmp_path, revision="../elsewhere")
    assert not (tmp_path / "results").exists()


def test_a_file_llmcse_did_not_write_is_never_replaced(tmp_path):
    folder = tmp_path / "results" / MINILM_DIR / NO_REVISION
    folder.mkdir(parents=True)
    foreign = '{"task_name": "STS12", "scores": {}}'  # e.g. from a real mteb run
    (folder / "STS12.json").write_text(foreign)
    with pytest.raises(LlmcseError, match="was not written by llmcse"):
        export_mteb(MINILM_RESULTS, tmp_path)
    assert (folder / "STS12.json").read_text() == foreign
    assert sorted(p.name for p in folder.iterdir()) == ["STS12.json"]  # nothing else written either


def test_a_foreign_model_meta_is_never_replaced(tmp_path):
    folder = tmp_path / "results" / MINILM_DIR / NO_REVISION
    folder.mkdir(parents=True)
    (folder / "model_meta.json").write_text('{"name": "sentence-transformers/all-MiniLM-L6-v2"}')
    with pytest.raises(LlmcseError, match="model_meta.json exists"):
        export_mteb(MINILM_RESULTS, tmp_path)


def test_exporting_again_replaces_llmcses_own_files(tmp_path):
    first = export_mteb(MINILM_RESULTS, tmp_path)
    again = export_mteb(MINILM_RESULTS, tmp_path)
    assert [read(p) for p in first.written] == [read(p) for p in again.written]


def test_export_mteb_command_writes_and_explains(tmp_path, capsys):
    assert main(["export-mteb", str(MINILM_RESULTS.parent), "--out", str(tmp_path), "--model-name", "me/minilm",
                 "--revision", "v1"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "results" / "me__minilm" / "v1" / "STSBenchmark.json").is_file()
    assert "skipped sick:" in out and "mteb.ResultCache(" in out


def test_export_mteb_command_names_a_missing_results_file(tmp_path, capsys):
    assert main(["export-mteb", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nope.json: file not found" in err and len(err.strip().splitlines()) == 1


def test_export_mteb_command_refuses_a_file_that_is_not_llmcse_results(tmp_path, capsys):
    bad = tmp_path / "results.json"
    bad.write_text('{"hello": 1}')
    assert main(["export-mteb", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not an llmcse results file" in capsys.readouterr().err


def test_eval_format_mteb_without_output_dir_fails_before_evaluating(capsys):
    assert main(["eval", "--model", "no/such-model", "--tasks", "stsb", "--format", "mteb"]) == 2
    assert "--format mteb" in capsys.readouterr().err


def test_eval_format_mteb_writes_mteb_files_beside_results_json(tiny_data_dir, tmp_path):
    shutil.copy(tiny_data_dir / "sts" / "toysts_test.tsv", tiny_data_dir / "sts" / "stsb_test.tsv")  # a tiny "stsb"
    out_dir = tmp_path / "run"
    assert main(["-q", "eval", "--model", "all-MiniLM-L6-v2", "--tasks", "stsb,toysts", "--data-dir",
                 str(tiny_data_dir), "--output-dir", str(out_dir), "--device", "cpu", "--format", "mteb"]) == 0
    llmcse = read(out_dir / "results.json")["tasks"]["stsb"]
    stsb = read(out_dir / "mteb" / "results" / MINILM_DIR / NO_REVISION / "STSBenchmark.json")
    assert stsb["scores"]["test"][0]["main_score"] == round(llmcse["main_score"] / 100, 6)
    assert stsb["llmcse"]["source"] == str(out_dir / "results.json")
    assert sorted(p.name for p in stsb_folder(out_dir).iterdir()) == ["STSBenchmark.json", "model_meta.json"]


def stsb_folder(out_dir: Path) -> Path:
    return out_dir / "mteb" / "results" / MINILM_DIR / NO_REVISION


def test_model_meta_has_exactly_the_fields_mteb_writes():
    meta = model_meta("me/model", "v1", results_with({}))
    assert list(meta)[:3] == ["loader_kwargs", "name", "revision"]
    assert meta["framework"] == ["Sentence Transformers", "PyTorch"] and meta["model_type"] == ["dense"]
    assert model_meta("local/bm25", NO_REVISION, results_with({}, model="bm25"))["similarity_fn_name"] is None


# ----------------------------------------------------------------------------- with mteb's own classes


@pytest.fixture(scope="module")
def mteb():
    return pytest.importorskip("mteb", reason='mteb is not installed (pip install "llmcse[mteb]")')


def test_mteb_result_cache_loads_the_export(mteb, minilm_export):
    out, export = minilm_export
    loaded = mteb.ResultCache(out).load_results(include_remote=False, require_model_meta=True)
    [model] = loaded.model_results
    assert (model.model_name, model.model_revision) == ("sentence-transformers/all-MiniLM-L6-v2", NO_REVISION)
    scores = {r.task_name: r.get_score() for r in model.task_results}
    assert set(scores) == EXPORTED_FROM_MINILM
    for task, published in MTEB_PUBLISHED.items():
        assert scores[task] == pytest.approx(published, abs=1e-4)


def test_mteb_task_result_validates_each_file_against_its_task(mteb, minilm_export):
    _, export = minilm_export
    for path in export.written:
        result = mteb.TaskResult.from_disk(path)
        filtered = result.validate_and_filter_scores()  # mteb's own task metadata: splits and subsets
        assert filtered.scores == result.scores, path.name
        assert result.main_score == read(path)["scores"][result.eval_splits[0]][0]["main_score"]


def test_llmcse_task_table_matches_mtebs_task_metadata(mteb):
    for task in MTEB_TASKS.values():
        meta = mteb.get_task(task.name).metadata
        assert meta.revision == task.revision, task.name
        assert task.split in meta.eval_splits, task.name
        assert meta.main_score == ("cosine_spearman" if task.kind == "sts" else "ndcg_at_10"), task.name
        assert meta.eval_langs == ["eng-Latn"], task.name
        if task.kind == "retrieval":
            assert type(mteb.get_task(task.name)).ignore_identical_ids == task.ignore_identical_ids, task.name


def test_model_meta_validates_as_mtebs_model_meta(mteb):
    from mteb.models.model_meta import ModelMeta

    meta = model_meta("me/model", "v1", results_with({}))
    assert set(meta) == set(ModelMeta.create_empty().to_dict())
    validated = ModelMeta.model_validate_json_resolved(json.dumps(meta))  # how ResultCache reads model_meta.json
    assert (validated.name, validated.revision, validated.similarity_fn_name) == ("me/model", "v1", "cosine")
    assert validated.model_name_as_path() == "me__model"


# ----------------------------------------------------------------------------- mteb running offline


@pytest.mark.slow
def test_mteb_scores_a_saved_model_on_local_stsb_test_like_llmcse_eval(mteb, tmp_path, shared_data_dir, minilm):
    """mteb cannot download tasks here (no hub), but a task object takes local data: mteb's own
    STSBenchmark with the shared stsb_test.tsv injected, scored by mteb's evaluator."""
    from datasets import Dataset, DatasetDict
    from sentence_transformers import SentenceTransformer

    from llmcse.data.loaders import load_sts
    from llmcse.eval.run import EvalConfig, run_evaluation

    folder = tmp_path / "saved-model"
    minilm.save(str(folder))  # a saved sentence-transformers folder, as llmcse train writes
    pairs = load_sts(shared_data_dir / "sts" / "stsb_test.tsv")
    task = mteb.get_task("STSBenchmark")
    task.dataset = DatasetDict({"test": Dataset.from_dict({"sentence1": [p.sentence1 for p in pairs],
                                                           "sentence2": [p.sentence2 for p in pairs],
                                                           "score": [p.score for p in pairs]})})
    task.data_loaded = True  # mteb's load_data would go to the hub
    cache = mteb.ResultCache(tmp_path / "mteb")
    by_mteb = mteb.evaluate(SentenceTransformer(str(folder), device="cpu"), task, cache=cache,
                            overwrite_strategy="always", encode_kwargs={"batch_size": 64}, show_progress_bar=False)
    mteb_score = by_mteb.task_results[0].get_score()

    results = run_evaluation(EvalConfig(model=str(folder), tasks="stsb", data_dir=str(shared_data_dir), device="cpu"),
                             tmp_path / "llmcse")
    assert mteb_score == pytest.approx(results["tasks"]["stsb"]["main_score"] / 100, abs=0.01)  # measured: 0.8203246731 both

    export_mteb(tmp_path / "llmcse", tmp_path / "mteb", model_name="local/saved-model")
    loaded = cache.load_results(tasks=["STSBenchmark"], include_remote=False, require_model_meta=False)
    scores = {m.model_name: m.task_results[0].get_score() for m in loaded.model_results}
    assert scores["local/saved-model"] == pytest.approx(mteb_score, abs=0.01)
    assert len(scores) == 2  # mteb's own run and the llmcse export, side by side in one cache
