"""Issue 20, case 14: a recipe value of the wrong type or out of range is one line naming
section.key, the value and what is expected (exit 2), before anything runs or is written."""

from __future__ import annotations

import pytest

from llmcse.cli import main


@pytest.mark.parametrize("toml, message", [
    ("[run]\nstages = 5", "r.toml: run.stages: expected a list, got 5"),
    ("[run]\nstages = [\"train\", 3]", "r.toml: run.stages[1]: expected a string, got 3"),
    ("[generate]\ntemperature = -2", "r.toml: generate.temperature = -2.0: expected a number >= 0"),
    ("[generate]\ntemperature = \"hot\"", "r.toml: generate.temperature: expected a number, got 'hot'"),
    ("[generate]\ntop_p = 0", "r.toml: generate.top_p = 0.0: expected a number in (0, 1]"),
    ("[generate]\nn = -2", "r.toml: generate.n = -2: expected an integer >= 1"),
    ("[generate]\nchunk_size = 0", "r.toml: generate.chunk_size = 0: expected an integer >= 1"),
    ("[filter]\nscoring = \"stars\"", "r.toml: filter.scoring = 'stars': expected one of 'yesno', 'rating'"),
    ("[filter]\nt_pos = 7", "r.toml: filter.t_pos = 7.0: expected a number in [0, 5]"),
    ("[train]\nlr = inf", "r.toml: train.lr: expected a finite number, got inf"),
    ("[train]\nlr = 0", "r.toml: train.lr = 0.0: expected a number > 0"),
    ("[train]\nmax_steps = 2.5", "r.toml: train.max_steps: expected int, got 2.5"),
    ("[train]\nbatch_size = true", "r.toml: train.batch_size: expected int, got True"),
    ("[train]\nwarmup_ratio = 1.5", "r.toml: train.warmup_ratio = 1.5: expected a number in [0, 1]"),
    ("[eval]\nbatch_size = 0", "r.toml: eval.batch_size = 0: expected an integer >= 1"),
    ("[expand]\ntemperature = -1", "r.toml: expand.temperature = -1.0: expected a number >= 0"),
    ("[filter_expansions]\ntop_k = -3", "r.toml: filter_expansions.top_k = -3: expected an integer >= 0"),
    ("[sweep]\nweights = [1, 2]", "r.toml: sweep.weights[0]: expected a string, got 1"),
    ("[sweep]\ntune_fraction = 1", "r.toml: sweep.tune_fraction = 1.0: expected a number in (0, 1)"),
    ("generate = 5", "r.toml: generate = 5: expected a [generate] section"),
    ("[run]\nname = \"../x\"", "r.toml: run.name = '../x': expected a plain folder name"),
])
def test_case14_bad_recipe_types_and_ranges_are_one_line_errors(toml, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.toml").write_text(toml + "\n", encoding="utf-8")
    for extra in (["--dry-run"], []):
        assert main(["-q", "run", "r.toml", "--out", "run", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"llmcse: error: {message}"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.toml"]  # nothing was written


def test_case14_set_overrides_are_checked_the_same_way(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.toml").write_text("[generate]\ntemperature = 0.7\n", encoding="utf-8")
    assert main(["-q", "run", "r.toml", "--out", "run", "--dry-run", "--set", "generate.temperature=-2"]) == 2
    assert capsys.readouterr().err.strip() == "llmcse: error: --set generate.temperature = -2.0: expected a number >= 0"
    assert main(["-q", "run", "r.toml", "--out", "run", "--dry-run", "--set", "train.epochs=nan"]) == 2
    assert capsys.readouterr().err.strip() == "llmcse: error: --set train.epochs: expected a finite number, got 'nan'"
