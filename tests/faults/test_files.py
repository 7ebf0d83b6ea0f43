"""Issue 20, data loss: user files survive every `llmcse run --out`, no output overwrites an input,
a missing input is an error, and an output is only continued by the job that made it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcse.cli import main
from fault_helpers import snapshot

SENTENCE_RECIPE = """
[run]
name = "tiny"
{stages}

[generate]
recipe = "nli"
llm = "fake:"
seeds = "{seeds}"
n = 12
chunk_size = 4

[filter]
llm = ""                      # cheap checks only
max_positive_overlap = 1.01   # the fake LLM reverses words: full overlap is expected here

[train]
recipe = "synth-nli"
max_steps = 2
batch_size = 4
eval_steps = 2
eval_task = "toysts:dev"

[eval]
tasks = "toysts"
"""


def _seeds(folder: Path) -> Path:
    seeds = folder / "seeds.txt"
    seeds.write_text("\n".join(f"The council of town number {i} voted for a new library today." for i in range(20)) + "\n")
    return seeds


def _recipe(folder: Path, stages: str = "", name: str = "tiny") -> Path:
    path = folder / "r.toml"
    text = SENTENCE_RECIPE.format(stages=stages, seeds=_seeds(folder)).replace('name = "tiny"', f'name = "{name}"')
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def user_dir(tmp_path):
    """A folder of the user's own work, with names a stage would once have globbed away (model.*)."""
    home = tmp_path / "work"
    (home / "model").mkdir(parents=True)
    (home / "model" / "weights.bin").write_bytes(b"\x00\x01 my weights")
    (home / "model.py").write_text("print('my model code')\n")
    (home / "model.txt").write_text("notes on my model\n")
    (home / "generated.jsonl").write_text('{"mine": true}\n')
    (home / "kept.report.json").write_text("{}\n")
    (home / "eval").mkdir()
    (home / "eval" / "before_after.md").write_text("my table\n")
    return home


# --- case 1: llmcse run never deletes what it did not write ------------------------------------------------------

@pytest.mark.parametrize("attempt", ["--out dir", "--out .", "--out file", 'name = ".."', 'name = "../../x"',
                                     "name = absolute"])
def test_case1_run_refuses_a_folder_it_did_not_make_and_leaves_it_byte_for_byte(attempt, user_dir, tmp_path,
                                                                                 tiny_data_dir, monkeypatch, capsys):
    (user_dir / "sub" / "deeper").mkdir(parents=True)  # for ../../x: runs/../../x from sub/deeper is work/x
    before = snapshot(user_dir)
    cwd, args = user_dir, []
    if attempt == "--out dir":
        recipe, args = _recipe(tmp_path), ["--out", str(user_dir)]
    elif attempt == "--out .":
        recipe, args = _recipe(tmp_path), ["--out", "."]
    elif attempt == "--out file":
        recipe, args = _recipe(tmp_path), ["--out", "model.txt"]
    elif attempt == 'name = ".."':
        recipe = _recipe(tmp_path, name="..")
    elif attempt == 'name = "../../x"':
        recipe, cwd = _recipe(tmp_path, name="../../x"), user_dir / "sub" / "deeper"
    else:
        recipe = _recipe(tmp_path, name=str(user_dir))
    monkeypatch.chdir(cwd)
    for extra in ([], ["--dry-run"]):
        assert main(["-q", "run", str(recipe), *args, "--data-dir", str(tiny_data_dir), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        if attempt == "--out file":
            assert err == "llmcse: error: run folder model.txt is a file; choose a folder with --out"
        elif attempt.startswith("--out"):
            assert "is not empty and was not made by llmcse run" in err and str(user_dir) in err
        else:
            assert "run.name = " in err and "expected a plain folder name" in err
        assert snapshot(user_dir) == before


def test_case1_rerun_in_its_own_folder_skips_reruns_and_deletes_only_what_a_stage_recorded(tmp_path, tiny_data_dir,
                                                                                           capsys):
    recipe = _recipe(tmp_path, stages='stages = ["generate", "filter"]')
    run_dir = tmp_path / "run"
    common = ["-q", "run", str(recipe), "--out", str(run_dir), "--data-dir", str(tiny_data_dir)]
    assert main(common) == 0
    marker = json.loads((run_dir / ".llmcse-run.json").read_text())
    assert marker["made_by"] == "llmcse run" and marker["llmcse_version"]
    stamp = json.loads((run_dir / ".stages" / "filter.json").read_text())
    assert stamp["finished"] and stamp["outputs"] == ["kept.dropped.jsonl", "kept.jsonl", "kept.report.json",
                                                   "kept.scores.jsonl"]
    assert json.loads((run_dir / ".stages" / "generate.json").read_text())["outputs"] == [
        "generated.identity.json", "generated.jsonl", "generated.summary.json"]
    # files a user put into the run folder, named like the stages' outputs
    (run_dir / "kept.mine.txt").write_text("mine\n")
    (run_dir / "generated.notes.md").write_text("mine\n")
    capsys.readouterr()

    assert main(common) == 0  # unchanged: both stages skipped
    assert "skip" in capsys.readouterr().out
    assert main(common + ["--set", "filter.min_negative_overlap=0.05"]) == 0  # filter reruns from scratch
    assert (run_dir / "kept.mine.txt").read_text() == "mine\n" and (run_dir / "generated.notes.md").read_text() == "mine\n"
    assert json.loads((run_dir / "kept.report.json").read_text())["config"]["min_negative_overlap"] == 0.05


def test_case1_a_run_folder_of_an_earlier_llmcse_is_adopted(tmp_path, tiny_data_dir, capsys):
    recipe = _recipe(tmp_path, stages='stages = ["generate", "filter"]')
    run_dir = tmp_path / "run"
    common = ["-q", "run", str(recipe), "--out", str(run_dir), "--data-dir", str(tiny_data_dir)]
    assert main(common) == 0
    (run_dir / ".llmcse-run.json").unlink()  # as an earlier llmcse left it: no marker, stamps without outputs
    for stamp in (run_dir / ".stages").glob("*.json"):
        stamp.write_text(json.dumps({k: v for k, v in json.loads(stamp.read_text()).items() if k != "outputs"}))
    (run_dir / "kept.mine.txt").write_text("mine\n")
    capsys.readouterr()
    assert main(common + ["--set", "filter.min_negative_overlap=0.05"]) == 0
    out = capsys.readouterr().out
    assert "generate  skip" in out and "filter    run" in out
    assert (run_dir / ".llmcse-run.json").is_file() and (run_dir / "kept.mine.txt").read_text() == "mine\n"


# --- case 2: no output overwrites an input ------------------------------------------------------------------------

def _generated(folder: Path) -> Path:
    """A generate output with its side files (g.jsonl, g.summary.json, g.identity.json)."""
    out = folder / "g.jsonl"
    assert main(["-q", "generate", "--seeds", str(_seeds(folder)), "--out", str(out), "--llm", "fake:", "--n", "6"]) == 0
    return out


@pytest.mark.parametrize("argv, clash", [
    (["filter", "--in", "g.jsonl", "--out", "g.jsonl", "--no-llm"], "output g.jsonl is also an input"),
    (["filter", "--in", "g.jsonl", "--out", "./sub/../g.jsonl", "--no-llm"], "is also an input"),
    (["filter", "--in", "g.jsonl", "--out", "g.rejected.jsonl", "--no-llm"],
     "output g.rejected.jsonl is a file that belongs to input g.jsonl"),
    (["filter", "--in", "g.jsonl", "--out", "g.summary.json", "--no-llm"], "g.summary.json is a file that belongs to input"),
    (["filter", "--in", "g.dropped.jsonl", "--out", "g.jsonl", "--no-llm"], "output g.jsonl would overwrite g.dropped.jsonl"),
    (["generate", "--seeds", "seeds.txt", "--out", "seeds.txt", "--llm", "fake:"], "output seeds.txt is also an input"),
    (["embed", "--model", "all-MiniLM-L6-v2", "--input", "seeds.txt", "--output", "seeds.txt"], "is also an input"),
    (["expand", "--corpus", "g.jsonl", "--out", "g.jsonl", "--llm", "fake:"], "output g.jsonl is also an input"),
    (["filter-expansions", "--corpus", "seeds.txt", "--in", "g.jsonl", "--out", "g.jsonl"], "is also an input"),
    (["train", "--recipe", "unsup-simcse", "--data", "seeds.txt", "--out", "."], "input seeds.txt is inside output folder ."),
    (["eval", "--model", "all-MiniLM-L6-v2", "--tasks", "toyretrieval", "--expansions", "res/results.json",
      "--output-dir", "res"], "output res/results.json is also an input"),
    (["sweep-expansions", "--task", "toy", "--expansions", "raw=res/sweep.json", "--output-dir", "res"],
     "output res/sweep.json is also an input"),
    (["index", "--corpus", "res/docs.jsonl", "--out", "res"], "output res/docs.jsonl is also an input"),
    (["rfd", "--model", "all-MiniLM-L6-v2", "--data", "res/rfd.json", "--output-dir", "res"], "is also an input"),
])
def test_case2_an_output_that_is_an_input_or_its_side_file_is_refused(argv, clash, tmp_path, monkeypatch, capsys):
    _generated(tmp_path)
    (tmp_path / "g.dropped.jsonl").write_text('{"seed": "a dropped record"}\n')
    (tmp_path / "res").mkdir()
    for name in ("results.json", "sweep.json", "docs.jsonl", "rfd.json"):
        (tmp_path / "res" / name).write_text('{"_id": "d1", "text": "mine"}\n')
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main(["-q", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and clash in err and "choose another output" in err, err
    assert snapshot(tmp_path) == before


# --- case 3: a missing input is an error in every command ---------------------------------------------------------

@pytest.mark.parametrize("argv, missing", [
    (["filter", "--in", "missing.jsonl", "--out", "out/k.jsonl", "--no-llm"], "--in missing.jsonl"),
    (["generate", "--seeds", "missing.txt", "--out", "out/g.jsonl", "--llm", "fake:"], "--seeds missing.txt"),
    (["embed", "--model", "all-MiniLM-L6-v2", "--input", "missing.txt", "--output", "out/e.npy"], "--input missing.txt"),
    (["expand", "--corpus", "missing.jsonl", "--out", "out/x.jsonl", "--llm", "fake:"], "--corpus missing.jsonl"),
    (["filter-expansions", "--corpus", "missing.jsonl", "--in", "x.jsonl", "--out", "out/x.jsonl"], "--corpus missing.jsonl"),
    (["filter-expansions", "--corpus", "x.jsonl", "--in", "missing.jsonl", "--out", "out/x.jsonl"], "--in missing.jsonl"),
    (["sweep-expansions", "--task", "toy12", "--expansions", "raw=missing.jsonl", "--output-dir", "out"],
     "--expansions missing.jsonl"),
    (["eval", "--model", "all-MiniLM-L6-v2", "--tasks", "toysts", "--expansions", "missing.jsonl", "--output-dir", "out"],
     "--expansions missing.jsonl"),
    (["index", "--corpus", "missing.jsonl", "--out", "out"], "--corpus missing.jsonl"),
    (["index", "--corpus", "x.jsonl", "--expansions", "missing.jsonl", "--out", "out"], "--expansions missing.jsonl"),
    (["train", "--recipe", "sup-simcse", "--data", "missing.tsv", "--out", "out"], "--data missing.tsv"),
    (["rfd", "--model", "all-MiniLM-L6-v2", "--data", "missing.jsonl", "--output-dir", "out"], "--data missing.jsonl"),
    (["rfd", "--model-dir", "missing-run", "--data", "x.jsonl", "--output-dir", "out"], "--model-dir missing-run"),
    (["icl-search", "--base", "SmolLM2-135M-Instruct", "--candidates", "missing.tsv", "--out", "out"],
     "--candidates missing.tsv"),
])
def test_case3_a_missing_input_exits_2_naming_it_and_creates_nothing(argv, missing, tmp_path, monkeypatch, capsys):
    (tmp_path / "x.jsonl").write_text('{"_id": "d1", "text": "a document"}\n')
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    assert main(["-q", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"llmcse: error: {missing}: file not found"
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


# --- case 5: an output remembers what made it ---------------------------------------------------------------------

def test_case5_generate_refuses_to_continue_an_output_with_another_recipe_llm_or_sampling(tmp_path, capsys):
    out = _generated(tmp_path)
    identity = json.loads((tmp_path / "g.identity.json").read_text())
    assert identity["recipe"] == "nli" and identity["generator"] == "fake:" and identity["sampling"]["temperature"] == 0.8
    before = snapshot(tmp_path)
    common = ["-q", "generate", "--seeds", str(tmp_path / "seeds.txt"), "--out", str(out), "--n", "6"]
    capsys.readouterr()
    for extra, keys in [(["--recipe", "sts3", "--llm", "fake:"], "prompt_id: 'nli-chat' -> 'sts3-chat'; recipe: 'nli' -> 'sts3'"),
                        (["--llm", "fake:delay=0"], "generator: 'fake:' -> 'fake:delay=0'"),
                        (["--llm", "fake:", "--temperature", "0.3"], "sampling.temperature: 0.8 -> 0.3")]:
        assert main(common + extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{out} was made with other settings ({keys}" in err, err
        assert "use another --out, or delete " in err and str(tmp_path / "g.identity.json") in err
        assert snapshot(tmp_path) == before
    # the same job continues: 4 more seeds
    assert main(common[:-1] + ["10", "--llm", "fake:"]) == 0
    assert len(out.read_text().splitlines()) == 10


def test_case5_an_output_made_before_identity_files_is_checked_by_its_records_then_adopted(tmp_path, capsys):
    out = _generated(tmp_path)
    (tmp_path / "g.identity.json").unlink()
    common = ["-q", "generate", "--seeds", str(tmp_path / "seeds.txt"), "--out", str(out), "--n", "8"]
    assert main(common + ["--recipe", "sts3", "--llm", "fake:"]) == 2
    assert "recipe: 'nli' -> 'sts3'" in capsys.readouterr().err
    assert not (tmp_path / "g.identity.json").exists()
    assert main(common + ["--llm", "fake:"]) == 0
    assert json.loads((tmp_path / "g.identity.json").read_text())["recipe"] == "nli"
    assert len(out.read_text().splitlines()) == 8


def test_case5_expand_refuses_another_llm_or_settings_for_the_same_output(topics_data_dir, tmp_path, capsys):
    corpus = topics_data_dir / "beir" / "toy12" / "corpus.jsonl"
    out = tmp_path / "exp.jsonl"
    common = ["-q", "expand", "--corpus", str(corpus), "--out", str(out), "--queries", "2", "--keywords", "2",
              "--max-doc-tokens", "32"]
    assert main(common + ["--llm", "fake:", "--n", "4"]) == 0
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main(common + ["--llm", "fake:delay=0", "--n", "8"]) == 2
    assert "generator: 'fake:' -> 'fake:delay=0'" in capsys.readouterr().err
    assert main([*common[:6], "--queries", "3", *common[8:], "--llm", "fake:", "--n", "8"]) == 2
    assert "queries: 2 -> 3" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    assert main(common + ["--llm", "fake:", "--n", "8"]) == 0
    assert len(out.read_text().splitlines()) == 8
