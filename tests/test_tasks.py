"""Task discovery by convention and the one data-dir setting."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmcse.data.paths import ENV_VAR, resolve_data_dir
from llmcse.data.tasks import STS_TASKS, TaskCatalog
from llmcse.errors import MissingDataError, UnknownNameError


def test_shared_data_dir_has_every_standard_task(shared_data_dir):
    catalog = TaskCatalog(shared_data_dir)
    assert catalog.missing_standard() == []
    assert [s.name for s, _ in catalog.select("sts")] == STS_TASKS
    assert all(split == "test" for _, split in catalog.select("sts"))
    assert catalog.get("stsb").files.keys() == {"train", "dev", "test"}
    assert catalog.get("mr").default_split == "all"  # no official split: cross-validated


def test_user_sts_file_and_beir_folder_are_picked_up_without_code_change(tiny_data_dir):
    catalog = TaskCatalog(tiny_data_dir)
    assert {"toysts", "toyretrieval", "toysent"} <= {s.name for s in catalog}
    # drop in one more of each kind
    (tiny_data_dir / "sts" / "mynews.tsv").write_text(
        "sentence1\tsentence2\tscore\nA b.\tA c.\t1.0\nD e.\tF g.\t2.0\nH i.\tJ k.\t3.0\n", encoding="utf-8"
    )
    shutil.copytree(tiny_data_dir / "beir" / "toyretrieval", tiny_data_dir / "beir" / "mycorpus")
    catalog = TaskCatalog(tiny_data_dir)
    mynews, mycorpus = catalog.get("mynews"), catalog.get("mycorpus")
    assert (mynews.kind, mynews.default_split) == ("sts", "test")
    assert (mycorpus.kind, mycorpus.main_metric, list(mycorpus.files)) == ("retrieval", "ndcg_at_10", ["test"])


def test_split_files_form_one_task_and_a_split_can_be_selected(tiny_data_dir):
    catalog = TaskCatalog(tiny_data_dir)
    assert catalog.get("toysts").files.keys() == {"test", "dev"}
    assert [(s.name, split) for s, split in catalog.select("toysts:dev,toysts")] == [("toysts", "dev"), ("toysts", "test")]
    with pytest.raises(UnknownNameError, match="has no split 'train'"):
        catalog.select("toysts:train")


def test_unknown_task_suggests_the_closest_name(shared_data_dir):
    with pytest.raises(UnknownNameError, match="Did you mean 'stsb'"):
        TaskCatalog(shared_data_dir).select("stsbb")


def test_paper_names_are_aliases(shared_data_dir):
    catalog = TaskCatalog(shared_data_dir)
    assert catalog.get("STSBenchmark").name == "stsb"
    assert catalog.get("SICK-R").name == "sick"


def test_incomplete_group_says_what_is_missing_and_where(tiny_data_dir):
    with pytest.raises(MissingDataError, match=r"task group 'sts' needs sts12.*not found under"):
        TaskCatalog(tiny_data_dir).select("sts")


def test_data_dir_flag_beats_env_var_beats_default(tmp_path, monkeypatch):
    flag_dir, env_dir = tmp_path / "flag", tmp_path / "env"
    flag_dir.mkdir()
    env_dir.mkdir()
    monkeypatch.setenv(ENV_VAR, str(env_dir))
    assert resolve_data_dir(flag_dir) == flag_dir.resolve()
    assert resolve_data_dir() == env_dir.resolve()
    monkeypatch.delenv(ENV_VAR)
    default = resolve_data_dir()
    assert default.name == "data" and default.parent.name == "shared"


def test_missing_data_dir_error_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(MissingDataError, match=r"nowhere.*from \$LLMCSE_DATA"):
        resolve_data_dir()
    with pytest.raises(MissingDataError, match="from --data-dir"):
        resolve_data_dir(tmp_path / "also-nowhere")


def test_default_lookup_lists_every_candidate_when_nothing_is_found(tmp_path, monkeypatch):
    import llmcse.data.paths as paths

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(paths, "default_data_dir_candidates", lambda: [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(MissingDataError) as e:
        resolve_data_dir()
    assert str(tmp_path / "a") in str(e.value) and str(tmp_path / "b") in str(e.value)
    assert "--data-dir" in str(e.value) and ENV_VAR in str(e.value)
