"""Issue 22 scope 2: self-instruct as recipe stages (expand -> filter -> pairs -> tune -> expand r1 -> filter r1 -> sweep)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcse.cli import main

REPO = Path(__file__).resolve().parents[2]
ALL_STAGES = ["expand", "filter-expansions", "self-instruct-pairs", "tune-generator", "expand-r1",
              "filter-expansions-r1", "sweep"]

# round 0 by the fake LLM (instant); SmolLM2 is tuned 2 steps and writes round 1 for 3 documents
TINY = """
[run]
name = "si"

[expand]
llm = "fake:"
queries = 1
keywords = 2
chunk_size = 4
max_doc_tokens = 32
max_new_tokens = 8
keyword_max_new_tokens = 8
max_attempts = 1
n = 3

[filter_expansions]
top_k = 12

[tune_generator]
base = "SmolLM2-135M-Instruct"
max_steps = 2
batch_size = 2
lora_r = 2
logging_steps = 1
max_length = 1024

[sweep]
task = "toy12"
weights = ["1,1,0"]
multirep = ["sent", "sent+queries"]
"""


def _plan(text: str) -> dict[str, str]:
    return {line.split()[0]: line.split()[1] for line in text.splitlines()
            if line.startswith("  ") and len(line.split()) > 1 and line.split()[1] in ("run", "skip", "resume")}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_1_shipped_self_instruct_recipe_plans_all_stages_in_order(tmp_path, shared_data_dir, capsys):
    recipe = REPO / "recipes" / "retrieval-self-instruct.toml"
    before = recipe.read_bytes()
    assert main(["run", str(recipe), "--dry-run", "--out", str(tmp_path / "si"), "--data-dir", str(shared_data_dir)]) == 0
    plan = _plan(capsys.readouterr().out)
    assert list(plan) == ALL_STAGES and set(plan.values()) == {"run"}
    assert not (tmp_path / "si").exists() and recipe.read_bytes() == before  # a dry run writes nothing


def test_2_round1_needs_a_model_to_tune_when_round0_is_not_hf(tmp_path, topics_data_dir, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(TINY.replace('base = "SmolLM2-135M-Instruct"\n', ""), encoding="utf-8")
    assert main(["run", str(recipe), "--dry-run", "--out", str(tmp_path / "run"), "--data-dir", str(topics_data_dir)]) == 2
    err = capsys.readouterr().err
    assert "llmcse: error: [tune_generator] base: [expand] llm = 'fake:' is not a local hf: model" in err
    assert not (tmp_path / "run").exists()


def test_3_plain_retrieval_recipes_keep_their_three_stages(tmp_path, topics_data_dir, capsys):
    recipe = tmp_path / "r.toml"  # no [self_instruct] / [tune_generator] section: no round 1
    recipe.write_text(TINY.split("[tune_generator]")[0] + "[sweep]\ntask = \"toy12\"\n", encoding="utf-8")
    assert main(["run", str(recipe), "--dry-run", "--out", str(tmp_path / "run"), "--data-dir", str(topics_data_dir)]) == 0
    assert list(_plan(capsys.readouterr().out)) == ["expand", "filter-expansions", "sweep"]
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("lora_r = 2", "lora_r = 0"), encoding="utf-8")
    assert main(["run", str(bad), "--dry-run", "--out", str(tmp_path / "bad"), "--data-dir", str(topics_data_dir)]) == 2
    assert "tune_generator.lora_r" in capsys.readouterr().err


@pytest.mark.slow  # ~50 s on one CPU thread: SmolLM2 tuned 2 steps, saved (540 MB), expands 3 documents
def test_4_self_instruct_recipe_runs_round1_with_the_tuned_generator_and_resumes(tmp_path, topics_data_dir, capsys):
    recipe = tmp_path / "si.toml"
    recipe.write_text(TINY, encoding="utf-8")
    data_before = _files(topics_data_dir)
    run_dir = tmp_path / "run"
    common = ["-q", "run", str(recipe), "--out", str(run_dir), "--data-dir", str(topics_data_dir)]
    assert main(common) == 0
    plan = _plan(capsys.readouterr().out)
    assert list(plan) == ALL_STAGES and set(plan.values()) == {"run"}
    # round 1 was written by the tuned generator of this run (provenance on every record)
    r1 = [json.loads(line) for line in (run_dir / "expansions.r1.jsonl").read_text().splitlines()]
    assert [r["_id"] for r in r1] == ["d0", "d1", "d2"]
    assert {r["generator"] for r in r1} == {f"hf:{run_dir / 'generator'}"}
    assert {json.loads(line)["generator"] for line in (run_dir / "expansions.jsonl").read_text().splitlines()} == {"fake:"}
    tuned = json.loads((run_dir / "generator" / "tune_generator.json").read_text())
    assert tuned["steps"] == 2 and tuned["base"] == "SmolLM2-135M-Instruct"
    assert tuned["config"]["data"] == str(run_dir / "self_instruct.pairs.jsonl")
    pairs = [json.loads(line) for line in (run_dir / "self_instruct.pairs.jsonl").read_text().splitlines()]
    kept = {json.loads(line)["_id"]: json.loads(line) for line in (run_dir / "expansions.rt.jsonl").read_text().splitlines()}
    assert [p["completion"] for p in pairs if p["field"] == "query"] == [q for d in kept.values() for q in d["queries"]]
    assert (run_dir / "expansions.r1.rt.jsonl").is_file()
    # the sweep has both rounds, the multi-representation rows, and round 1 vs round 0 on the same queries
    sweep = json.loads((run_dir / "sweep" / "sweep.json").read_text())
    settings = [r["setting"] for r in sweep["settings"]]
    assert settings == ["plain", "raw 1,1,0", "filtered 1,1,0", "raw-r1 1,1,0", "filtered-r1 1,1,0", "multirep sent",
                        "raw multirep sent+queries", "filtered multirep sent+queries", "raw-r1 multirep sent+queries",
                        "filtered-r1 multirep sent+queries"]
    rounds = json.loads((run_dir / "sweep" / "rounds.json").read_text())
    assert [c["label"] for c in rounds][:2] == ["raw-r1 1,1,0 vs raw 1,1,0",
                                                "raw-r1 multirep sent+queries vs raw multirep sent+queries"]
    assert all(c["vs_round0"]["queries"] == sweep["queries"]["report"] for c in rounds)
    report = (run_dir / "report.md").read_text()
    for section in ("## Self-instruct tuning", "Round 1 (tuned generator): 3 documents", "## Round 1 vs round 0"):
        assert section in report
    assert _files(topics_data_dir) == data_before  # the data dir is read, never written

    # a rerun skips everything; a tuning change reruns from tune-generator on, nothing before
    assert main(common) == 0
    assert set(_plan(capsys.readouterr().out).values()) == {"skip"}
    assert main(common + ["--set", "tune_generator.max_steps=3", "--dry-run"]) == 0
    assert _plan(capsys.readouterr().out) == {**{s: "skip" for s in ALL_STAGES[:3]}, **{s: "run" for s in ALL_STAGES[3:]}}
