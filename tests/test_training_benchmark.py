"""benchmarks/training.py's eval split: every task once, halves of about equal size, averages over the whole."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from llmcse.eval.run import GROUPS

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "training.py"


@pytest.fixture(scope="module")
def training():
    spec = importlib.util.spec_from_file_location("training_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_split_tasks_runs_every_task_once_in_groups_of_about_equal_size(training):
    groups = training.split_tasks(2)
    tasks = [*GROUPS["sts"], *GROUPS["transfer"]]
    assert sorted(t for g in groups for t in g) == sorted(tasks)
    sizes = [sum(training.TASK_SIZES.get(t, 1000) for t in g) for g in groups]
    assert max(sizes) / min(sizes) < 1.1, sizes
    assert training.split_tasks(1) == [sorted(tasks, key=lambda t: -training.TASK_SIZES.get(t, 1000))]


def test_combined_parts_average_each_group_over_all_its_tasks(training, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "REPO", tmp_path)
    sts = list(GROUPS["sts"])
    halves = [sts[:3], sts[3:]]
    parts = []
    for i, half in enumerate(halves):
        part = tmp_path / f"part{i}" / "results.json"
        part.parent.mkdir()
        # a part's own averages cover no complete group: they must not leak into the result
        part.write_text(json.dumps({"tasks": {t: {"main_score": 10.0 * (sts.index(t) + 1)} for t in half},
                                    "averages": {"sts": -1.0}, "dtype": "bfloat16"}))
        parts.append(part)
    training.combine_results(parts, tmp_path / "eval" / "results.json")
    combined = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert combined["averages"] == {"sts": pytest.approx(10.0 * (len(sts) + 1) / 2)}
    assert set(combined["tasks"]) == set(sts) and combined["combined_from"] == ["part0/results.json", "part1/results.json"]
