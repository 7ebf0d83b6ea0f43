"""The Python API (issue 24): ``llmcse.generate(...)`` & co. run the same stage code as the CLI, take
the stage's config fields as keywords, return typed results, and ``import llmcse`` stays light."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import llmcse
from llmcse.cli import main
from llmcse.errors import LlmcseError

REPO = Path(__file__).resolve().parents[1]
SEEDS = [f"The council of town number {i} voted for a new library today." for i in range(6)]


def test_import_llmcse_and_its_functions_load_no_torch():
    code = ("import sys, llmcse; assert 'torch' not in sys.modules; "
            "llmcse.generate, llmcse.evaluate, llmcse.run; "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _readme_example() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python API\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_api_example_runs_and_prints_what_it_says(tmp_path, shared_data_dir):
    code = _readme_example()
    env = {**os.environ, "LLMCSE_DATA": str(shared_data_dir), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    printed = out.stdout.strip().splitlines()[-1]
    expected = re.search(r"print\(.*\)\s+# (.+)", code).group(1)  # the comment says what it prints
    assert printed == expected == "8 8 82.03"
    assert len((tmp_path / "api-demo" / "generated.jsonl").read_text().splitlines()) == 8


@pytest.fixture()
def seeds(tmp_path) -> Path:
    path = tmp_path / "seeds.txt"
    path.write_text("\n".join(SEEDS) + "\n", encoding="utf-8")
    return path


def _records(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "created"} for line in path.read_text().splitlines()]


def test_the_api_and_the_cli_write_the_same_records(seeds, tmp_path):
    result = llmcse.generate(seeds=str(seeds), out=str(tmp_path / "api.jsonl"), llm="fake:", n=4, temperature=0.5)
    assert main(["-q", "generate", "--seeds", str(seeds), "--out", str(tmp_path / "cli.jsonl"), "--llm", "fake:",
                 "--n", "4", "--temperature", "0.5"]) == 0
    assert (result.out, result.kept, result.rejected) == (tmp_path / "api.jsonl", 4, 0)
    assert _records(tmp_path / "api.jsonl") == _records(tmp_path / "cli.jsonl")
    assert result.summary["kept"] == 4 and result.summary["config"]["temperature"] == 0.5


def test_evaluate_returns_results_with_the_scores_of_results_json(tiny_data_dir, tmp_path):
    results = llmcse.evaluate(model="all-MiniLM-L6-v2", tasks="toysts,toyretrieval", data_dir=str(tiny_data_dir),
                              device="cpu", output_dir=str(tmp_path / "out"))
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert isinstance(results, llmcse.Results) and results.model == "all-MiniLM-L6-v2"
    assert results["toysts"] == saved["tasks"]["toysts"]["main_score"]
    assert results["toyretrieval"] == pytest.approx(100.0)


def test_keywords_are_the_config_fields_with_their_defaults():
    params = inspect.signature(llmcse.generate).parameters
    assert params["temperature"].default == 0.8 and params["batch_size"].default == 32
    assert inspect.signature(llmcse.evaluate).parameters["model"].default is inspect.Parameter.empty  # required
    assert "temperature: 0 is greedy" in llmcse.generate.__doc__


def test_bad_input_raises_the_clis_one_line_errors(seeds, tmp_path):
    with pytest.raises(LlmcseError, match=r"^seeds .*missing.txt: file not found$"):
        llmcse.generate(seeds=str(tmp_path / "missing.txt"), out=str(tmp_path / "g.jsonl"), llm="fake:")
    with pytest.raises(LlmcseError, match=r"^generate.temperature = -1.0: expected a number >= 0$"):
        llmcse.generate(seeds=str(seeds), out=str(tmp_path / "g.jsonl"), llm="fake:", temperature=-1)
    with pytest.raises(LlmcseError, match=r"unknown key generate.temprature. Did you mean 'temperature'\?"):
        llmcse.generate(seeds=str(seeds), out=str(tmp_path / "g.jsonl"), temprature=0.5)
    with pytest.raises(LlmcseError, match="eval needs model"):
        llmcse.evaluate(tasks="stsb")
    with pytest.raises(LlmcseError, match="is also an input"):
        llmcse.filter(input=str(seeds), out=str(seeds), llm=None)
    assert not (tmp_path / "g.jsonl").exists()


def test_run_plans_a_recipe(tmp_path, tiny_data_dir, seeds):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[generate]\nllm = "fake:"\nseeds = "{seeds}"\n[train]\nrecipe = "synth-nli"\n', encoding="utf-8")
    plan = llmcse.run(recipe, out=tmp_path / "run", set=["train.lr=1e-4"], data_dir=str(tiny_data_dir), dry_run=True)
    assert [(name, action) for name, action, _ in plan.plan] == [
        ("generate", "run"), ("filter", "run"), ("train", "run"), ("eval", "run")]
    assert plan.run_dir == tmp_path / "run" and not (tmp_path / "run").exists()
