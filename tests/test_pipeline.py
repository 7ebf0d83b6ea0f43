"""llmcse run: stages in one folder, skipped when unchanged, rerun from the first changed one."""

from __future__ import annotations

import json

import pytest

from llmcse.cli import main

RECIPE = """
[run]
name = "tiny"

[generate]
recipe = "nli"
llm = "fake:"
n = 24
chunk_size = 8

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


@pytest.fixture()
def recipe(tmp_path, tiny_data_dir):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(f"The council of town number {i} voted for a new library today." for i in range(30)) + "\n")
    path = tmp_path / "tiny.toml"
    path.write_text(RECIPE.replace('[generate]\n', f'[generate]\nseeds = "{seeds}"\n'), encoding="utf-8")
    return path


def _plan(capsys):
    lines = capsys.readouterr().out.splitlines()
    return {line.split()[0]: line.split()[1] for line in lines if line.startswith("  ") and len(line.split()) > 1
            and line.split()[1] in ("run", "skip", "resume")}


def test_run_skips_unchanged_stages_and_reruns_from_the_changed_one(recipe, tmp_path, tiny_data_dir, capsys):
    run_dir = tmp_path / "run"
    common = ["-q", "run", str(recipe), "--out", str(run_dir), "--data-dir", str(tiny_data_dir)]
    assert main(common) == 0
    out = capsys.readouterr().out
    assert "| toysts | " in out  # the before/after table
    assert len((run_dir / "generated.jsonl").read_text().splitlines()) == 24
    assert (run_dir / "model" / "config_sentence_transformers.json").exists()
    base = json.loads((run_dir / "eval" / "base" / "results.json").read_text())
    assert base["model"] == "all-MiniLM-L6-v2"
    report = (run_dir / "report.md").read_text()
    for section in ("## Generated data", "## Filtering", "## Training", "## Evaluation", "| toysts |"):
        assert section in report
    page = (run_dir / "report.html").read_text()
    assert "<table>" in page and page.count("data:image/png;base64,iVBOR") == 1  # the training plot, embedded

    assert main(common + ["--dry-run"]) == 0
    assert _plan(capsys) == {"generate": "skip", "filter": "skip", "train": "skip", "eval": "skip"}

    assert main(common + ["--set", "train.lr=1e-4", "--dry-run"]) == 0
    assert _plan(capsys) == {"generate": "skip", "filter": "skip", "train": "run", "eval": "run"}

    assert main(common + ["--set", "filter.min_negative_overlap=0.05"]) == 0
    assert _plan(capsys) == {"generate": "skip", "filter": "run", "train": "run", "eval": "run"}
    assert json.loads((run_dir / "config.json").read_text())["config"]["filter"]["min_negative_overlap"] == 0.05


def test_an_interrupted_stage_resumes_when_its_config_is_unchanged(recipe, tmp_path, tiny_data_dir, capsys):
    from llmcse.utils.io import atomic_write_json

    run_dir = tmp_path / "run"
    common = ["-q", "run", str(recipe), "--out", str(run_dir), "--data-dir", str(tiny_data_dir)]
    assert main(common) == 0
    capsys.readouterr()
    stamp = run_dir / ".stages" / "train.json"
    atomic_write_json(stamp, {**json.loads(stamp.read_text()), "finished": False})  # as if killed mid-training
    assert main(common + ["--dry-run"]) == 0
    assert _plan(capsys) == {"generate": "skip", "filter": "skip", "train": "resume", "eval": "run"}


RETRIEVAL_RECIPE = """
[run]
name = "retrieval"

[expand]
llm = "fake:"
queries = 2
keywords = 2
chunk_size = 4
max_doc_tokens = 32

[filter_expansions]
top_k = 3

[sweep]
task = "toy12"
weights = ["1,1,0", "mean"]
tune_fraction = 0.5
"""


def test_retrieval_recipe_expands_filters_sweeps_and_reports(tmp_path, topics_data_dir, capsys):
    recipe = tmp_path / "retrieval.toml"
    recipe.write_text(RETRIEVAL_RECIPE, encoding="utf-8")
    run_dir = tmp_path / "run"
    common = ["-q", "run", str(recipe), "--out", str(run_dir), "--data-dir", str(topics_data_dir)]
    assert main(common) == 0
    printed = capsys.readouterr().out
    assert "| plain " in printed and "(chosen on tune)" in printed
    assert len((run_dir / "expansions.jsonl").read_text().splitlines()) == 12
    settings = [r["setting"] for r in json.loads((run_dir / "sweep" / "sweep.json").read_text())["settings"]]
    assert settings == ["plain", "raw 1,1,0", "raw mean", "filtered 1,1,0", "filtered mean"]
    report = (run_dir / "report.md").read_text()
    for section in ("## Synthetic queries and keywords", "Round-trip filter", "## Retrieval", "| plain "):
        assert section in report
    assert main(common + ["--set", "sweep.weights=1,0,1", "--dry-run"]) == 0
    assert _plan(capsys) == {"expand": "skip", "filter-expansions": "skip", "sweep": "run"}


def test_a_recipe_can_train_on_given_data_without_generation(tmp_path, tiny_data_dir, shared_data_dir, capsys):
    lines = (shared_data_dir / "nli" / "triplets.tsv").read_text(encoding="utf-8").splitlines()[:41]
    (tiny_data_dir / "nli").mkdir()
    (tiny_data_dir / "nli" / "triplets.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    recipe = tmp_path / "sup.toml"
    recipe.write_text(RECIPE.split("[generate]")[0].replace('name = "tiny"', 'name = "sup"\nstages = ["train", "eval"]')
                      + '[train]\nrecipe = "sup-simcse"\ndata = "{data_dir}/nli/triplets.tsv"\nmax_steps = 2\n'
                        'batch_size = 4\neval_steps = 2\neval_task = "toysts:dev"\n\n[eval]\ntasks = "toysts"\n')
    run_dir = tmp_path / "run"
    assert main(["-q", "run", str(recipe), "--out", str(run_dir), "--data-dir", str(tiny_data_dir)]) == 0
    assert _plan(capsys) == {"train": "run", "eval": "run"}
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert config["train"]["data"] == str(tiny_data_dir / "nli" / "triplets.tsv") and config["run"]["stages"] == ["train", "eval"]
    assert (run_dir / "eval" / "before_after.md").exists() and not (run_dir / "generated.jsonl").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text('[run]\nstages = ["generate", "sweep"]\n')
    assert main(["-q", "run", str(bad), "--out", str(tmp_path / "bad")]) == 2
    assert "mix sentence and retrieval stages" in capsys.readouterr().err


@pytest.mark.parametrize("name, stages", [
    ("quickstart", ["generate", "filter", "train", "eval"]), ("ngcse", ["generate", "train", "eval"]),
    ("multicsr", ["generate", "filter", "train", "eval"]), ("prompteol-lora", ["train", "eval"]),
    ("retrieval-expansion", ["expand", "filter-expansions", "sweep"])])
def test_shipped_recipes_resolve_and_plan(name, stages, tmp_path, shared_data_dir, capsys):
    from pathlib import Path

    recipe = Path(__file__).resolve().parent.parent / "recipes" / f"{name}.toml"
    assert main(["run", str(recipe), "--dry-run", "--out", str(tmp_path / name), "--data-dir", str(shared_data_dir)]) == 0
    assert list(_plan(capsys)) == stages
