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


def test_issue_23_rows_train_the_budgets_steps_and_the_500_seen_triplets(training, tmp_path, monkeypatch, tiny_data_dir):
    """A repeat row gets the epochs that make the same 80 steps as every 2,560-row run; the 500-triplet row
    trains on exactly the triplets.tsv lines the record-pairs report lists, in its order."""
    import math

    monkeypatch.setattr(training, "RUNS", tmp_path)
    monkeypatch.setenv("LLMCSE_DATA", str(tiny_data_dir))
    report = tmp_path / "seen.report.json"
    report.write_text(json.dumps({"sources": ["triplets.tsv:4", "triplets.tsv:2"]}), encoding="utf-8")
    monkeypatch.setattr(training, "GENERATED", tmp_path)
    monkeypatch.setitem(training.ROWS, "sup-simcse-500", ("sup-simcse", "seen:seen.report.json"))
    lines = ["sent0\tsent1\thard_neg"] + [f"premise {i}\tentailed {i}\tcontradicted {i}" for i in range(5)]
    (tiny_data_dir / "nli").mkdir()
    (tiny_data_dir / "nli" / "triplets.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = training.data_path("seen:seen.report.json")
    assert path.read_text(encoding="utf-8").splitlines() == [lines[0], lines[3], lines[1]]
    assert training.data_rows("sup-simcse-500") == 2 and training.has_enough_rows("sup-simcse-500", 2560)
    for rows in (500, 1267, 1503):  # steps per epoch x epochs = the budget's 80 steps
        monkeypatch.setattr(training, "data_rows", lambda row, n=rows: n)
        epochs = training.epochs_for("synth-nli-judged", 2560)
        assert math.ceil(epochs * math.ceil(rows / training.BATCH) - 1e-9) == 2560 // training.BATCH
    assert training.epochs_for("synth-nli", 2560) == 1  # not a repeat row: never repeated


def test_the_mix_row_holds_the_seen_human_triplets_and_the_first_n_generated_records(training, tmp_path, monkeypatch,
                                                                                      tiny_data_dir):
    monkeypatch.setattr(training, "RUNS", tmp_path)
    monkeypatch.setattr(training, "GENERATED", tmp_path)
    monkeypatch.setenv("LLMCSE_DATA", str(tiny_data_dir))
    (tmp_path / "seen.report.json").write_text(json.dumps({"sources": ["triplets.tsv:3"]}), encoding="utf-8")
    (tiny_data_dir / "nli").mkdir()
    (tiny_data_dir / "nli" / "triplets.tsv").write_text(
        "sent0\tsent1\thard_neg\nh0\te0\tc0\nh1\te1\tc1\n", encoding="utf-8")
    records = [{"seed": f"seed {i}", "positive": f"pos\t{i}", "negative": f"neg {i}"} for i in range(4)]
    (tmp_path / "gen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    path = training.data_path("mix:seen.report.json+gen.jsonl:2")
    from llmcse.data.loaders import load_triplets

    rows = sorted(tuple(t) for t in load_triplets(path))
    assert rows == [("h1", "e1", "c1"), ("seed 0", "pos 0", "neg 0"), ("seed 1", "pos 1", "neg 1")]  # tab inside: one space
    with pytest.raises(SystemExit, match="has 4 records; the mix needs 5"):
        training.data_path("mix:seen.report.json+gen.jsonl:5")
