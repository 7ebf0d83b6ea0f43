"""Issue 20, case 11: ``llmcse generate`` with bad arguments, a bad ``--llm`` spec or an empty seed
file gives one line and exit 2 before anything is loaded or written; never a traceback, and no
silently dropped seeds."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest

from llmcse.cli import main

SEEDS = ["A man is riding a horse on the beach.", "The council voted to build a new library.",
         "Scientists found water ice on the moon.", "A child is flying a red kite in the park."]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (hashlib.md5(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    (tmp_path / "seeds.txt").write_text("\n".join(SEEDS) + "\n", encoding="utf-8")
    return tmp_path


def generate_args(work: Path, *extra: str, llm: str = "fake:") -> list[str]:
    return ["-q", "generate", "--recipe", "nli", "--seeds", str(work / "seeds.txt"), "--out", str(work / "out" / "g.jsonl"),
            "--llm", llm, *extra]


# (option, value, argparse's message): usage error, exit 2, nothing written
BAD_OPTIONS = [
    ("--temperature", "-1", "argument --temperature: must be >= 0, got -1"),
    ("--temperature", "nan", "argument --temperature: expected a finite number, got 'nan'"),
    ("--top-p", "0", "argument --top-p: must be in (0, 1], got 0"),
    ("--top-p", "1.5", "argument --top-p: must be in (0, 1], got 1.5"),
    ("--max-attempts", "0", "argument --max-attempts: must be >= 1, got 0"),
    ("--chunk-size", "0", "argument --chunk-size: must be >= 1, got 0"),
    ("--chunk-size", "2.5", "argument --chunk-size: expected an integer, got '2.5'"),
    ("--n", "-2", "argument --n: must be >= 1, got -2"),
    ("--n", "0", "argument --n: must be >= 1, got 0"),
    ("--max-new-tokens", "0", "argument --max-new-tokens: must be >= 1, got 0"),
]


@pytest.mark.parametrize("option,value,message", BAD_OPTIONS, ids=[f"{o}={v}" for o, v, _ in BAD_OPTIONS])
def test_bad_numeric_option_is_a_usage_error(option, value, message, work, capsys):
    before = snapshot(work)
    code, _, err = run_cli(generate_args(work, option, value), capsys)
    assert code == 2
    assert err.strip().splitlines()[-1] == f"llmcse generate: error: {message}"
    assert "Traceback" not in err
    assert snapshot(work) == before


# (--llm spec, text of the one-line error)
BAD_SPECS = [
    ("hf:/no/such", "LLM spec 'hf:/no/such': model '/no/such': no such file or folder"),
    ("hf:./no-such-model", "LLM spec 'hf:./no-such-model': model './no-such-model': no such file or folder"),
    ("hf:/no/such.gguf", "LLM spec 'hf:/no/such.gguf': GGUF file '/no/such.gguf' not found"),
    ("hf:", "LLM spec 'hf:' needs a model"),
    ("fake:delay=abc", "LLM spec 'fake:delay=abc': delay must be a number >= 0, got 'abc'"),
    ("fake:delay=-1", "LLM spec 'fake:delay=-1': delay must be a number >= 0, got '-1'"),
    ("fake:speed=3", "LLM spec 'fake:speed=3': unknown option 'speed=3'; fake: takes delay="),
    ("openai:http://127.0.0.1:9/v1", "needs a model name: openai:<base-url>#<model>"),
    ("gpt4", "unknown LLM spec 'gpt4'"),
]


@pytest.mark.parametrize("spec,message", BAD_SPECS, ids=[s for s, _ in BAD_SPECS])
def test_bad_llm_spec_is_one_line_error_before_anything_loads(spec, message, work, capsys):
    before = snapshot(work)
    code, _, err = run_cli(generate_args(work, llm=spec), capsys)
    assert code == 2
    assert err.startswith("llmcse: error: ") and err.count("\n") == 1 and message in err
    assert snapshot(work) == before


def test_bad_spec_is_refused_on_dry_run_too(work, capsys):
    code, out, err = run_cli(generate_args(work, "--dry-run", llm="fake:delay=abc"), capsys)
    assert code == 2 and out == "" and "delay must be a number" in err


def test_load_llm_parses_fake_options(work):
    from llmcse.errors import LlmcseError
    from llmcse.llm import load_llm

    assert load_llm("fake:delay=0.25").delay == 0.25
    assert load_llm("fake:").delay == 0.0
    with pytest.raises(LlmcseError, match="delay must be a number >= 0, got 'abc'"):
        load_llm("fake:delay=abc")


@pytest.mark.parametrize("content,why", [
    ("", "the file has no text lines"),
    ("\n\n   \n", "the file has no text lines"),
    ("too short\nalso short\n", "seed_too_short 2"),
])
def test_seed_file_without_usable_seeds_is_an_error_naming_it(content, why, work, capsys):
    seeds = work / "seeds.txt"
    seeds.write_text(content, encoding="utf-8")
    before = snapshot(work)
    code, out, err = run_cli(generate_args(work), capsys)
    assert code == 2
    assert err == f"llmcse: error: {seeds}: no usable seeds ({why}); a seed needs 4-64 words of text\n"
    assert "kept" not in out
    assert snapshot(work) == before  # no output folder, no empty output files


def test_n_below_one_is_refused_by_the_library_too(work):
    from llmcse.errors import LlmcseError
    from llmcse.llm.base import FakeLLM
    from llmcse.synth.generate import GenerateConfig, run_generate

    cfg = GenerateConfig(seeds=str(work / "seeds.txt"), out=str(work / "out" / "g.jsonl"), n=-2)
    with pytest.raises(LlmcseError, match="n must be >= 1"):
        run_generate(cfg, llm=FakeLLM(), show_progress_bar=False)
    assert not (work / "out").exists()


def test_good_arguments_still_generate(work, capsys):
    code, out, err = run_cli(generate_args(work, "--n", "3", "--temperature", "0", "--top-p", "1", "--chunk-size", "2",
                                           llm="fake:delay=0"), capsys)
    assert code == 0, err
    assert "3 kept, 0 rejected of 3 seeds" in out


VALIDATORS = [
    ("positive_int", "3", 3), ("positive_int", "0", "must be >= 1, got 0"),
    ("non_negative_int", "0", 0), ("non_negative_int", "-1", "must be >= 0, got -1"),
    ("positive_float", "0.5", 0.5), ("positive_float", "0", "must be > 0, got 0"),
    ("non_negative_float", "0", 0.0), ("non_negative_float", "inf", "expected a finite number, got 'inf'"),
    ("probability", "1", 1.0), ("probability", "0", "must be in (0, 1], got 0"),
    ("unit_interval", "0", 0.0), ("unit_interval", "1.01", "must be in [0, 1], got 1.01"),
]


@pytest.mark.parametrize("name,text,expected", VALIDATORS, ids=[f"{n}({t})" for n, t, _ in VALIDATORS])
def test_validators(name, text, expected):
    from llmcse.utils import validate

    validator = getattr(validate, name)
    if isinstance(expected, str):
        with pytest.raises(argparse.ArgumentTypeError, match=expected.replace("(", r"\(").replace(")", r"\)")
                           .replace("[", r"\[").replace("]", r"\]")):
            validator(text)
    else:
        assert validator(text) == expected and type(validator(text)) is type(expected)


def test_check_runs_a_validator_on_values_from_toml():
    from llmcse.utils.validate import check, positive_int, probability

    assert check(positive_int, 4, "generate.n") == 4
    with pytest.raises(ValueError, match=r"generate.top_p: must be in \(0, 1\], got 0"):
        check(probability, 0, "generate.top_p")
    with pytest.raises(ValueError, match="generate.n: expected a number, got True"):
        check(positive_int, True, "generate.n")
