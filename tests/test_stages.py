"""The stage registry (issue 24): one definition per stage, from which the CLI, the recipe runner and
the Python API are built. Every command is a registered stage; every flag's default is its config
field's default; --set works on every stage command; recipes keep their stamps and their flags."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from llmcse.cli import build_parser, main
from llmcse.stages import STAGES, Flag

CONFIG_STAGES = [name for name, stage in STAGES.items() if stage.config is not None]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: --help, usage errors
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_cli_subcommand_is_a_registered_stage_and_every_stage_a_subcommand():
    commands = _subcommands(build_parser())
    assert set(commands) == set(STAGES) | {a for _, s in STAGES.items() for a in s.aliases}
    assert commands["sweep"] is commands["sweep-expansions"]  # the pipeline's name works too


@pytest.mark.parametrize("name", list(STAGES))
def test_help_of_every_subcommand_works(name, capsys):
    code, out, _ = _run([name, "--help"], capsys)
    assert code == 0 and out.startswith(f"usage: llmcse {name}")
    assert "-q, --quiet" in out  # -q / -v after the subcommand too


def test_top_level_help_documents_the_exit_codes(capsys):
    code, out, _ = _run(["--help"], capsys)
    assert code == 0 and "exit codes: 0 done, 2 usage or input error" in out and "1 internal error" in out


# every option each command had before the registry (llmcse 0.1.0 cli.py): none may go missing
FLAGS_BEFORE = {
    "data list": "--data-dir --json",
    "embed": "--batch-size --device --dtype --field --input --max-seq-length --model --no-normalize --output --pooling "
             "--prompt-name",
    "eval": "--batch-size --data-dir --device --dry-run --dtype --expansion-weights --expansions --max-seq-length --model "
            "--multirep --output-dir --pooling --seed --tasks --transfer-max-examples",
    "expand": "--chunk-size --concurrency --corpus --dtype --keyword-max-new-tokens --keywords --llm --llm-batch-size "
              "--max-doc-tokens --max-new-tokens --max-retries --n --out --prompts --queries --request-timeout --seed "
              "--shard --shard-size --temperature --tokenizer --workers",
    "filter": "--concurrency --dtype --in --llm --llm-batch-size --max-retries --no-llm --out --quantile "
              "--request-timeout --scoring --t-neg --t-pos",
    "filter-expansions": "--batch-size --corpus --device --dtype --in --model --no-keyword-check --out --top-k",
    "generate": "--chunk-size --concurrency --dry-run --dtype --llm --llm-batch-size --max-attempts --max-new-tokens "
                "--max-retries --n --out --prompts --recipe --request-timeout --seed --seeds --temperature --top-p",
    "icl-search": "--base --candidates --data-dir --device --dtype --eval-task --max-pairs --max-seq-length --out "
                  "--template",
    "index": "--batch-size --corpus --device --expansion-weights --expansions --model --out --shard --shard-size "
             "--workers",
    "prompteol": "--base --device --dry-run --dtype --icl --keep-double-quotes --keep-question-mark --max-seq-length "
                 "--no-final-period --no-normalize --no-straight-quotes --no-strip --no-verify --out --template",
    "rfd": "--data --data-dir --device --dtype --eval-task --max-eval-sentences --max-pairs --model --model-dir "
           "--output-dir",
    "run": "--data-dir --dry-run --out --set",
    "search": "--device -k",
    "self-instruct-pairs": "--corpus --expansions --kept --max-doc-tokens --no-demos --no-keywords --no-queries --out "
                           "--prompts --tokenizer",
    "serve-llm": "--api-key --dtype --host --llm --max-batch --max-body-bytes --max-prompt-tokens --max-tokens "
                 "--max-wait-ms --model-name --port --request-timeout",
    "sweep-expansions": "--bm25 --data-dir --device --dtype --expansions --model --multirep --output-dir --task "
                        "--tune-fraction --weights",
    "train": "--base --data --data-dir --dry-run --out --recipe --set",
    "tune-generator": "--base --batch-size --data --device --dtype --epochs --gradient-accumulation --logging-steps "
                      "--lora-r --lr --max-length --max-steps --out --save-steps --seed",
}


def test_every_flag_of_before_the_registry_is_still_there():
    commands = _subcommands(build_parser())
    commands["data list"] = _subcommands(commands["data"])["list"]
    for command, flags in FLAGS_BEFORE.items():
        have = {s for a in commands[command]._actions for s in a.option_strings}
        assert set(flags.split()) <= have, (command, sorted(set(flags.split()) - have))


@pytest.mark.parametrize("name", CONFIG_STAGES)
def test_each_flag_default_is_the_config_fields_default(name):
    """A default is stated once, in the config dataclass: the flag shows and uses that value."""
    stage = STAGES.get(name)
    parser = _subcommands(build_parser())[name]
    defaults = stage.defaults()
    flags = {a.dest: a for a in parser._actions if a.dest in defaults}
    assert flags, name
    for field, action in flags.items():
        if action.required or defaults[field] is dataclasses.MISSING:
            continue
        assert action.default == defaults[field], (name, field, action.default, defaults[field])
    # every field is a flag, but those the stage declares itself (--expansions NAME=FILE) or hides
    shown = {f.name for f in stage.fields() if not stage.flags.get(f.name, Flag()).skip}
    assert shown <= set(flags), sorted(shown - set(flags))


def test_recipe_sections_are_the_stage_configs_not_copies():
    from llmcse import pipeline

    for step in pipeline.STEPS.values():
        stage = STAGES.get(step.stage)
        assert pipeline.SECTIONS[stage.section_name()] is stage.config
    assert not [n for n in vars(pipeline) if n.endswith("Section") and n != "RunSection"]


# what each stage's dry run needs besides defaults, and one setting to change with --set
SET_CASES = {
    "generate": (["--seeds", "s.txt", "--out", "o.jsonl", "--llm", "fake:"], "temperature=0.3", "temperature", 0.3),
    "filter": (["--in", "g.jsonl", "--out", "k.jsonl"], "llm.batch_size=8", "batch_size", 8),
    "train": (["--recipe", "unsup-simcse", "--data", "d.txt", "--out", "m"], "train.max_steps=7", "max_steps", 7),
    "eval": (["--model", "all-MiniLM-L6-v2"], "tasks=stsb,sickr", "tasks", "stsb,sickr"),
    "expand": (["--corpus", "c.jsonl", "--out", "e.jsonl", "--llm", "fake:"], "queries=0", "queries", 0),
    "filter-expansions": (["--corpus", "c.jsonl", "--in", "e.jsonl", "--out", "f.jsonl"], "keyword_check=false",
                          "keyword_check", False),
    "self-instruct-pairs": (["--corpus", "c.jsonl", "--expansions", "e.jsonl", "--out", "p.jsonl"], "max_doc_tokens=64",
                            "max_doc_tokens", 64),
    "record-pairs": (["--records", "r.jsonl", "--out", "p.jsonl"], "sample=20", "sample", 20),
    "tune-generator": (["--data", "p.jsonl", "--out", "g"], "lora_alpha=8", "lora_alpha", 8),
    "sweep-expansions": (["--task", "toy12", "--expansions", "raw=e.jsonl", "--output-dir", "s"], "weights=1,1,0;mean",
                         "weights", ["1,1,0", "mean"]),
    "index": (["--corpus", "c.jsonl", "--out", "idx"], "shard_size=500", "shard_size", 500),
    "embed": (["--model", "all-MiniLM-L6-v2", "--input", "t.txt", "--output", "e.npy"], "normalize=no", "normalize",
              False),
    "search": (["idx", "a query"], "k=3", "k", 3),
    "rfd": (["--model", "all-MiniLM-L6-v2", "--data", "d.jsonl", "--output-dir", "r"], "max_pairs=50", "max_pairs", 50),
    "icl-search": (["--base", "SmolLM2-135M-Instruct"], "max_pairs=20", "max_pairs", 20),
    "export-mteb": (["r/results.json", "--out", "m"], "revision=v2", "revision", "v2"),
}


def test_the_set_cases_cover_every_stage_command():
    assert set(SET_CASES) == set(CONFIG_STAGES)


@pytest.mark.parametrize("name", CONFIG_STAGES)
def test_set_works_for_every_stage_and_wins_over_the_default(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args, assignment, field, value = SET_CASES[name]
    code, out, err = _run([name, *args, "--set", assignment, "--dry-run"], capsys)
    assert code == 0, err
    config = json.loads(out)
    assert config[field] == value and STAGES.get(name).defaults()[field] != value
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # a dry run writes nothing


@pytest.mark.parametrize("name", CONFIG_STAGES)
def test_an_unknown_set_key_is_exit_2_with_did_you_mean(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args, assignment, field, _ = SET_CASES[name]
    typo = field[:-1] + "x" if len(field) > 3 else field + "x"
    code, _, err = _run([name, *args, "--set", f"{typo}=1", "--dry-run"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"unknown key {STAGES.get(name).section_name()}.{typo}. Did you mean {field!r}?" in err, err


def test_set_values_are_checked_like_recipe_values(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["generate", "--seeds", "s.txt", "--out", "o.jsonl", "--llm", "fake:", "--dry-run"]
    assert _run(base + ["--set", "temperature=-1"], capsys)[2].strip() == \
        "llmcse: error: --set generate.temperature = -1.0: expected a number >= 0"
    assert _run(base + ["--set", "n=many"], capsys)[2].strip() == "llmcse: error: --set generate.n: expected int, got 'many'"
    assert _run(base + ["--set", "dtype=fp8"], capsys)[2].strip() == \
        "llmcse: error: --set generate.dtype = 'fp8': expected one of 'auto', 'float32', 'bfloat16'"
    code, _, err = _run(base + ["--set", "temperature"], capsys)
    assert code == 2 and "--set expects KEY=VALUE" in err


def test_a_flag_the_user_gives_wins_over_the_training_recipes_deviation(capsys):
    common = ["train", "--recipe", "unsup-simcse", "--data", "d.txt", "--out", "m", "--dry-run"]
    assert json.loads(_run(common, capsys)[1])["lr"] == 3e-5  # the recipe's deviation
    assert json.loads(_run(common + ["--lr", "5e-5"], capsys)[1])["lr"] == 5e-5  # == the field default, yet given
    assert json.loads(_run(common + ["--set", "lr=1e-4"], capsys)[1])["lr"] == 1e-4


def test_verbosity_flags_work_before_and_after_the_subcommand():
    parser = build_parser()
    assert parser.parse_args(["eval", "--model", "m", "-q"]).quiet is True
    assert parser.parse_args(["-q", "eval", "--model", "m"]).quiet is True  # not reset by the subcommand
    assert parser.parse_args(["-v", "eval", "--model", "m"]).verbose == 1
    assert parser.parse_args(["eval", "--model", "m", "-vv"]).verbose == 2
    assert parser.parse_args(["data", "list", "-q"]).quiet is True


def test_an_internal_error_is_not_turned_into_a_usage_error(monkeypatch, tmp_path):
    """Exit 2 is for the user's input; a bug propagates (the console script then exits 1 with the traceback)."""
    stage = STAGES.get("search")

    def broken(cfg):
        raise RuntimeError("a bug")

    monkeypatch.setattr(STAGES, "_entries", {**STAGES._entries, "search": dataclasses.replace(stage, run=broken)})
    with pytest.raises(RuntimeError, match="a bug"):
        main(["-q", "search", str(tmp_path), "query"])


def test_report_sections_follow_the_registry():
    from llmcse.eval.report import DEFAULT_SECTIONS

    assert tuple(s.report for _, s in STAGES.items() if s.report) == DEFAULT_SECTIONS


def test_index_declares_the_files_the_library_writes():
    from llmcse.retrieval.index import INDEX_FILES

    assert STAGES.get("index").output_dirs["out"] == INDEX_FILES


# --- recipes ---------------------------------------------------------------------------------------

SENTENCE = """[run]
name = "hashes"

[generate]
recipe = "sts3"
llm = "fake:"
seeds = "/seeds.txt"
n = 24
temperature = 0.7

[filter]
llm = ""
quantile = 0.25

[train]
recipe = "ngcse"
max_steps = 2
lr = 3e-5

[eval]
tasks = "sts"
batch_size = 32
"""
RETRIEVAL = """[run]
name = "hashes-r"

[expand]
llm = "hf:SmolLM2-135M-Instruct"
queries = 2
n = 10

[filter_expansions]
top_k = 5

[self_instruct]
demos = false

[tune_generator]
max_steps = 3
lora_r = 4

[sweep]
task = "toy12"
weights = ["1,1,0", "mean"]
multirep = ["sent"]
"""
# stage hashes of these recipes as the pipeline computed them before the stage registry (run folder
# /run, data dir /): a run folder made then keeps its stamps. (A new field in a library config counts
# once set: list it in pipeline.ADDED_SINCE_STAMPS, as train.loss is; else these numbers change.)
HASHES_BEFORE = {
    SENTENCE: {"generate": "c0e65dcd1730", "filter": "85703c246815", "train": "0abaece37019", "eval": "814c787d0504"},
    RETRIEVAL: {"expand": "5fd184d5467e", "filter-expansions": "2c18546f7a88", "self-instruct-pairs": "f0ce48fcc0f6",
                "tune-generator": "9749ba0a1b15", "expand-r1": "3faf53b0c3fb", "filter-expansions-r1": "2510dc2554df",
                "sweep": "ab5d39ebcb79"},
}


def _hashes(recipe: Path, overrides: list[str] = ()) -> dict[str, str]:
    from llmcse import pipeline

    config, keys = pipeline.load_pipeline(recipe, list(overrides))
    config["run"] = dataclasses.replace(config["run"], data_dir="/")
    steps = pipeline.wire(config, keys, Path("/run"))
    return {job.name: pipeline.stage_hash(job) for job in pipeline.jobs(steps, Path("/run"), config["run"].stages)}


@pytest.mark.parametrize("text", [SENTENCE, RETRIEVAL], ids=["sentence", "retrieval"])
def test_stage_hashes_are_those_of_before_the_registry(text, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text, encoding="utf-8")
    assert _hashes(recipe) == HASHES_BEFORE[text]


def test_llm_backend_table_sets_the_backend_and_counts_only_once_set(tmp_path):
    from llmcse import pipeline

    recipe = tmp_path / "r.toml"
    recipe.write_text(SENTENCE.replace('llm = "fake:"\n', "") + '\n[generate.llm]\nspec = "fake:"\nbatch_size = 32\n',
                      encoding="utf-8")
    config, _ = pipeline.load_pipeline(recipe)
    assert (config["generate"].llm, config["generate"].batch_size, config["generate"].dtype) == ("fake:", 32, "auto")
    assert _hashes(recipe) == HASHES_BEFORE[SENTENCE]  # the table and the old key are the same recipe
    changed = _hashes(recipe, ["generate.llm.batch_size=8"])
    assert changed["generate"] != HASHES_BEFORE[SENTENCE]["generate"] and changed["filter"] == \
        HASHES_BEFORE[SENTENCE]["filter"]
    assert _hashes(recipe, ["generate.llm.concurrency=2", "generate.llm.request_timeout=5"]) == HASHES_BEFORE[SENTENCE]


@pytest.mark.parametrize("toml, message", [
    ('[generate.llm]\nspec = "fake:"\nbatchsize = 8', "r.toml: unknown key generate.llm.batchsize. Did you mean "
                                                      "'batch_size'? Valid keys in [generate.llm]: spec, batch_size"),
    ('[generate.llm]\nbatch_size = 0', "r.toml: generate.batch_size = 0: expected an integer >= 1"),
    ('[expand.llm]\ndtype = "fp8"', "r.toml: expand.dtype = 'fp8': expected one of 'auto', 'float32', 'bfloat16'"),
    ('[filter.llm]\nconcurrency = "many"', "r.toml: filter.concurrency: expected int, got 'many'"),
    ('[eval.llm]\nbatch_size = 8', "unknown key eval.llm."),  # eval runs no LLM
    ('[generate]\nout = "mine.jsonl"', "r.toml: generate.out is set by the run"),
    ('[eval]\nmodel = "all-MiniLM-L6-v2"', "r.toml: eval.model is set by the run"),
])
def test_bad_backend_tables_and_run_files_in_a_recipe_are_one_line_errors(toml, message, tmp_path, monkeypatch,
                                                                           capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.toml").write_text(toml + "\n", encoding="utf-8")
    code, _, err = _run(["-q", "run", "r.toml", "--out", "run", "--dry-run"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"llmcse: error: {message}") or message in err, err


def test_the_run_keeps_its_own_default_for_eval_tasks(tmp_path):
    from llmcse import pipeline

    recipe = tmp_path / "r.toml"
    recipe.write_text("[train]\ndata = \"x.tsv\"\n", encoding="utf-8")
    config, _ = pipeline.load_pipeline(recipe)
    assert config["eval"].tasks == "stsb" and STAGES.get("eval").defaults()["tasks"] == "sts"
