"""Synthesis: output checks, templates, generation with a fake LLM (garbage included), resume after kill -9, filter."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from llmcse.errors import DataFormatError, LlmcseError
from llmcse.llm import FakeLLM, load_llm
from llmcse.llm.base import fake_rewrite
from llmcse.synth.checks import check_output, clean_output
from llmcse.synth.filter import FilterConfig, decide, run_filter, word_overlap
from llmcse.synth.generate import GenerateConfig, rejected_path, run_generate, summary_path
from llmcse.synth.prompts import load_template

SEEDS = [
    "A man is riding a horse along the beach at sunset.",
    "The city council voted to build a new library downtown.",
    "Three children are playing football in the park.",
    "The scientist published her results in a major journal.",
    "A small boat sailed across the calm blue lake.",  # "-ed": fake_rewrite's reversed intermediate keeps a verb
    "The company reported higher profits than expected this year.",
]


def write_seeds(path: Path, seeds=SEEDS) -> Path:
    path.write_text("\n".join([*seeds, seeds[0], "Notes", "<onlyinclude></onlyinclude> a b c"]) + "\n", encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ------------------------------------------------------------------ checks


@pytest.mark.parametrize("raw, expected", [
    ('Paraphrase: "A man rides a horse."\nmore text', "A man rides a horse."),
    ("   \n  Answer - The sky is blue. ", "The sky is blue."),
    ("", ""),
])
def test_clean_output_takes_the_first_line_without_labels_or_quotes(raw, expected):
    assert clean_output(raw) == expected


def test_each_kind_of_bad_output_gets_its_reason_code():
    seed = "A man is riding a horse along the beach."
    demos = {"A woman is playing a piano on stage."}
    assert check_output("", seed) == "empty"
    assert check_output("a man is riding a horse along the beach", seed) == "copy_of_seed"
    assert check_output("word " * 200, seed) == "too_long"
    assert check_output("A woman is playing a piano on stage.", seed, demo_texts=demos) == "copied_demo"
    assert check_output("A woman is playing a piano by the sea.", seed, demo_texts=demos) == "copied_demo"  # 3-gram leak
    assert check_output("Paraphrase: the man", seed, instruction="Paraphrase: {seed}") == "echoed_instruction"
    assert check_output("Человек едет на лошади по пляжу.", seed) == "wrong_language"
    assert check_output("bad \x00 bytes here", seed) == "wrong_language"
    assert check_output("A rider crosses the sand.", seed, other_fields=("a rider crosses the sand",)) == "same_as_other_field"
    assert check_output("Someone rides a horse on the sand and the sun goes down over the", seed) == "unfinished"
    tuesday = {"The committee approved the new budget on Tuesday."}
    assert check_output("On Tuesday, a man rides a horse by the sea.", seed, demo_texts=tuesday) == "copied_demo"
    assert check_output("On Tuesday a man rode along the beach.", "On Tuesday a man rode a horse.",
                        demo_texts=tuesday) is None  # the seed itself says Tuesday
    assert check_output("Someone rides a horse on the sand.", seed, demo_texts=demos) is None
    assert check_output("Someone rides a horse", "A heading without a full stop") is None  # seed ends no sentence


def test_shipped_templates_load_and_bad_templates_fail_clearly(tmp_path):
    nli, sts3 = load_template("nli"), load_template("sts3")
    assert list(nli.fields) == ["positive", "negative"]
    assert list(sts3.fields) == ["positive", "intermediate", "negative"]
    msgs = sts3.fields["negative"].messages("The cat sleeps.", sts3.system)
    assert msgs[0]["role"] == "system" and msgs[-1] == {"role": "user", "content": "Change one fact to make it false: The cat sleeps."}
    assert [m["role"] for m in msgs[1:-1]] == ["user", "assistant"] * 2
    bad = tmp_path / "bad.toml"
    bad.write_text('id = "x"\nversion = 1\nrecipe = "nli"\ncolour = "red"\n[fields]\n', encoding="utf-8")
    with pytest.raises(LlmcseError, match=r"unknown key\(s\) \['colour'\]"):
        load_template(str(bad))
    with pytest.raises(LlmcseError, match="prompt template 'nope' not found; shipped: expand, nli, sts3"):
        load_template("nope")


# ------------------------------------------------------------------ generation


def test_generate_writes_one_record_per_unique_usable_seed_with_provenance(tmp_path):
    out = tmp_path / "gen.jsonl"
    summary = run_generate(GenerateConfig(recipe="sts3", seeds=str(write_seeds(tmp_path / "s.txt")), out=str(out),
                                          llm="fake:"), llm=FakeLLM(), show_progress_bar=False)
    records = read_jsonl(out)
    assert [r["seed"] for r in records] == SEEDS  # duplicate, too-short and markup seeds skipped
    assert summary["seeds_skipped"] == {"seed_duplicate": 1, "seed_too_short": 1, "seed_markup": 1}
    r = records[0]
    assert {"positive", "intermediate", "negative"} <= set(r) and r["positive"] != r["seed"]
    assert (r["generator"], r["prompt_id"], r["prompt_version"]) == ("fake:", "sts3-chat", 1)
    assert r["attempts"] == {"positive": 1, "intermediate": 1, "negative": 1}
    assert summary_path(out).is_file()


def test_garbage_llm_output_never_crashes_and_every_rejection_is_counted(tmp_path):
    garbage = ["", "   ", "x" * 5000, "caf\udcff\udcfe broken \x00 bytes", "Paraphrase: {seed}", None, "Paraphrase:"]

    def responder(text, i):
        return garbage[i % len(garbage)]

    out = tmp_path / "gen.jsonl"
    summary = run_generate(GenerateConfig(recipe="nli", seeds=str(write_seeds(tmp_path / "s.txt")), out=str(out),
                                          max_attempts=2), llm=FakeLLM(responder=responder), show_progress_bar=False)
    assert summary["kept"] == 0 and summary["rejected"] == len(SEEDS)
    reasons = summary["field_rejections_by_reason"]
    assert set(reasons) <= {"empty", "too_long", "wrong_language", "echoed_instruction", "copy_of_seed", "copied_demo"}
    assert sum(reasons.values()) == len(SEEDS) * 2 * 2  # every attempt of every field was rejected and counted
    rejected = read_jsonl(rejected_path(out))
    assert all(set(r["reason"]) == {"positive", "negative"} for r in rejected)


def test_a_rejected_field_is_retried_with_a_new_sample(tmp_path):
    calls = Counter()

    def responder(text, i):
        calls[text] += 1
        seed = text.split(": ", 1)[1]
        return seed if calls[text] == 1 else fake_rewrite(text)

    out = tmp_path / "gen.jsonl"
    run_generate(GenerateConfig(recipe="nli", seeds=str(write_seeds(tmp_path / "s.txt")), out=str(out)),
                 llm=FakeLLM(responder=responder), show_progress_bar=False)
    records = read_jsonl(out)
    assert len(records) == len(SEEDS)
    assert records[0]["attempts"] == {"positive": 2, "negative": 2}
    assert records[0]["rejections"] == {"copy_of_seed": 2}


def test_rerun_after_completion_adds_nothing(tmp_path):
    cfg = GenerateConfig(recipe="nli", seeds=str(write_seeds(tmp_path / "s.txt")), out=str(tmp_path / "g.jsonl"))
    run_generate(cfg, llm=FakeLLM(), show_progress_bar=False)
    summary = run_generate(cfg, llm=FakeLLM(), show_progress_bar=False)
    assert summary["this_run"]["seeds_processed"] == 0
    assert len(read_jsonl(tmp_path / "g.jsonl")) == len(SEEDS)


def test_kill_9_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path):
    """Issue #4 acceptance: a real SIGKILL while records are being written, then a rerun."""
    seeds = [f"Sentence number {i} talks about a different topic each time." for i in range(120)]
    seed_file = tmp_path / "seeds.txt"
    seed_file.write_text("\n".join(seeds) + "\n", encoding="utf-8")
    out = tmp_path / "gen.jsonl"
    cmd = [sys.executable, "-m", "llmcse.cli", "-q", "generate", "--recipe", "nli", "--seeds", str(seed_file),
           "--llm", "fake:delay=0.01", "--out", str(out), "--chunk-size", "4"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.read_text(encoding="utf-8").count("\n") < 12):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = out.read_text(encoding="utf-8").count("\n")
    assert 12 <= partial < len(seeds), "the kill must land mid-run"
    # simulate the worst case too: a torn last line
    with open(out, "a", encoding="utf-8") as f:
        f.write('{"id": "torn", "seed": "half a rec')
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = read_jsonl(out)
    assert sorted(r["seed"] for r in records) == sorted(seeds)  # 0 lost
    assert len({r["id"] for r in records}) == len(records) == len(seeds)  # 0 duplicated


# ------------------------------------------------------------------ filter


def _generated(tmp_path: Path, recipe="nli") -> Path:
    out = tmp_path / "gen.jsonl"
    rows = [
        {"id": "a", "recipe": recipe, "seed": "A man rides a horse on the beach.", "positive": "A man is riding a horse by the sea.",
         "intermediate": "A man rides.", "negative": "A man rides a camel on the beach."},
        {"id": "b", "recipe": recipe, "seed": "A man rides a horse on the beach.", "positive": "A man rides a horse on the beach!",
         "intermediate": "A man rides.", "negative": "A woman rides a horse."},
        {"id": "c", "recipe": recipe, "seed": "The council voted for a new library.", "positive": "Penguins live in Antarctica.",
         "intermediate": "A vote.", "negative": "The council voted against a new library."},
    ]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return out


def test_word_overlap_is_jaccard_of_word_sets():
    assert word_overlap("a b c", "b c d") == pytest.approx(2 / 4)


def test_multicsr_thresholds_decide_as_the_paper_says():
    cfg = FilterConfig()
    assert decide({}, {"positive": 4.0, "negative": 1.0}, cfg) is None
    assert decide({}, {"positive": 2.5, "negative": 1.0}, cfg) == "positive_score_low"
    assert decide({}, {"positive": 4.5, "negative": 3.5}, cfg) == "negative_score_high"
    assert decide({}, {"positive": 3.0, "negative": 3.0}, cfg) == "positive_not_above_negative"
    assert decide({}, {"positive": 4.0, "intermediate": 4.5, "negative": 1.0}, cfg) == "levels_out_of_order"
    assert decide({}, {"positive": None, "negative": 1.0}, cfg) == "score_unparseable"


def test_filter_runs_cheap_checks_then_llm_scores_and_reports_reasons(tmp_path):
    scores = {"A man is riding a horse by the sea.": "4", "A man rides a camel on the beach.": "2"}
    calls = []

    def scorer(text, i):
        calls.append(text)
        sentence2 = text.rsplit("Sentence 2: ", 1)[1]
        return scores.get(sentence2, "five?")

    out = tmp_path / "kept.jsonl"
    cfg = FilterConfig(input=str(_generated(tmp_path)), out=str(out), scoring="rating")
    report = run_filter(cfg, llm=FakeLLM(responder=scorer))
    assert report["dropped_by_reason"] == {"positive_near_copy": 1, "positive_off_topic": 1}
    kept = read_jsonl(out)
    assert [r["id"] for r in kept] == ["a"]
    assert kept[0]["scores"] == {"positive": 4.0, "negative": 2.0}
    assert kept[0]["filter"] == {"kept": True, "reason": None, "stage": "llm", "scorer": "fake:", "scoring": "rating",
                                 "scoring_method": "greedy"}  # a back end without probabilities: one answer
    assert [r["id"] for r in read_jsonl(tmp_path / "kept.dropped.jsonl")] == ["b", "c"]
    assert len(calls) == 2  # only record a reached the LLM: one call per field
    # rerun: scores come from <out>.scores.jsonl, nothing is scored twice, outputs are rewritten the same
    again = run_filter(cfg, llm=FakeLLM(responder=scorer))
    assert again["total"] == 3 and len(calls) == 2 and read_jsonl(out) == kept
    # tighter thresholds re-decide from the stored scores without asking the LLM again
    strict = run_filter(FilterConfig(input=cfg.input, out=cfg.out, scoring="rating", t_pos=4.5), llm=FakeLLM(responder=scorer))
    assert strict["kept"] == 0 and strict["dropped_by_reason"]["positive_score_low"] == 1 and len(calls) == 2
    # other overlap settings: the two records the checks cut before scoring are scored now, not left cut
    loose = run_filter(FilterConfig(input=cfg.input, out=cfg.out, scoring="rating", min_positive_overlap=0.0,
                                    max_positive_overlap=1.01), llm=FakeLLM(responder=scorer))
    assert loose["dropped_by_reason"] == {"score_unparseable": 2} and len(calls) == 6  # their answers: "five?"
    again = run_filter(cfg, llm=FakeLLM(responder=scorer))  # and back: the checks decide again, nothing rescored
    assert again["dropped_by_reason"] == {"positive_near_copy": 1, "positive_off_topic": 1} and len(calls) == 6


def test_yesno_scoring_and_quantile_thresholds_for_a_weak_scorer(tmp_path):
    """5 x P(Yes) from a back end with next-token probabilities; quantiles adapt to a compressed scale."""
    rows = [{"id": str(i), "recipe": "nli", "seed": f"The council voted for library number {i} today.",
             "positive": f"Today the council backed library number {i}.",
             "negative": f"The council voted against library number {i} today."} for i in range(8)]
    path = tmp_path / "gen.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    class NarrowScorer(FakeLLM):
        """P(Yes) between 0.40 and 0.55: useless for fixed thresholds, still informative in order."""
        def choice_probabilities(self, prompts, choices):
            assert choices == ["Yes", "No"] and "mean the same thing" in prompts[0][-1]["content"]
            out = []
            for p in prompts:
                text = p[-1]["content"]
                i = int(text.split("number ")[2][0])
                p_yes = (0.50 + 0.005 * i) if "backed" in text else (0.40 + 0.01 * i)
                out.append([p_yes, 1 - p_yes])
            return out

    fixed = run_filter(FilterConfig(input=str(path), out=str(tmp_path / "fixed.jsonl")), llm=NarrowScorer())
    assert fixed["kept"] == 0 and fixed["dropped_by_reason"] == {"positive_score_low": 8}
    assert read_jsonl(tmp_path / "fixed.dropped.jsonl")[0]["scores"] == {"positive": 2.5, "negative": 2.0}
    q = run_filter(FilterConfig(input=str(path), out=str(tmp_path / "q.jsonl"), quantile=0.25), llm=NarrowScorer())
    # t_pos = 25% quantile of positives (i >= 2 pass), t_neg = 75% quantile of negatives (i <= 5 pass)
    assert q["thresholds"]["from"] == "quantile 0.25"
    assert sorted(r["id"] for r in read_jsonl(tmp_path / "q.jsonl")) == ["2", "3", "4", "5"]
    assert q["dropped_by_reason"] == {"positive_score_low": 2, "negative_score_high": 2}


PARAPHRASES = [  # (seed, a true paraphrase, a drifted "positive", a contradiction)
    ("A man is playing a guitar on the stage.", "On the stage a man plays his guitar.",
     "A man is selling a guitar in a shop.", "A man is not playing a guitar on the stage."),
    ("The council voted for a new library in the town.", "The town council approved a new library.",
     "The council voted for new parking in the town.", "The council voted against a new library in the town."),
    ("A woman slices an onion in the kitchen.", "In the kitchen a woman is cutting an onion.",
     "A woman grows onions in her garden.", "A woman slices nothing in the kitchen."),
    ("Heavy rain flooded the streets of the old city.", "The old city's streets were flooded by heavy rain.",
     "Heavy traffic filled the streets of the new city.", "No rain fell on the streets of the old city."),
]


def _paraphrase_records(tmp_path: Path) -> Path:
    rows = []
    for i, (seed, para, drift, contra) in enumerate(PARAPHRASES):
        rows.append({"id": f"good{i}", "recipe": "nli", "seed": seed, "positive": para, "negative": contra})
        rows.append({"id": f"drift{i}", "recipe": "nli", "seed": seed, "positive": drift, "negative": contra})
    path = tmp_path / "gen.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_cosine_scoring_grades_pairs_with_the_embedder_and_loads_no_llm(tmp_path, minilm):
    """--scoring cosine: 5 x cosine under the embedder (checked against the embedder itself), true
    paraphrases scored above drifted "positives", and the LLM never loaded (its spec is bogus here)."""
    path = _paraphrase_records(tmp_path)
    cfg = FilterConfig(input=str(path), out=str(tmp_path / "kept.jsonl"), llm="hf:/no/such/model", scoring="cosine",
                       embedder="all-MiniLM-L6-v2", quantile=0.25, min_positive_overlap=0.0)
    report = run_filter(cfg)
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "kept.jsonl") + read_jsonl(tmp_path / "kept.dropped.jsonl")}
    for i, (seed, para, drift, contra) in enumerate(PARAPHRASES):
        e = minilm.encode([seed, para, drift, contra], normalize_embeddings=True)
        assert rows[f"good{i}"]["scores"]["positive"] == pytest.approx(5 * float(e[0] @ e[1]), abs=1e-3)
        assert rows[f"drift{i}"]["scores"]["negative"] == pytest.approx(5 * float(e[0] @ e[3]), abs=1e-3)
        assert rows[f"good{i}"]["scores"]["positive"] > rows[f"drift{i}"]["scores"]["positive"]
    assert report["scoring_method"] == "cosine" and rows["good0"]["filter"]["scorer"] == "all-MiniLM-L6-v2"
    # positives: every paraphrase (4.5-4.9) above every drift (2.7-3.4); t_pos = their 25% quantile drops the
    # two worst drifts. Negatives: cosine cannot see a negation, so the contradiction closest to its seed
    # (seed 1: 4.26) is over t_neg and takes its good record with it: why yesno+cosine exists.
    assert {r: rows[r]["filter"]["reason"] for r in ("good1", "drift0", "drift3")} == {
        "good1": "negative_score_high", "drift0": "positive_score_low", "drift3": "positive_score_low"}
    assert {"good0", "good2", "good3"} <= {r["id"] for r in read_jsonl(tmp_path / "kept.jsonl")}


def test_yesno_plus_cosine_ranks_both_judges_and_reuses_stored_yesno_scores(tmp_path):
    """The combination is 5 x the mean percentile rank of the two judges over this run's scores; a run
    that already stored yes/no scores for the same LLM adds only the cosine part (no LLM calls)."""
    from scipy.stats import rankdata

    path = _paraphrase_records(tmp_path)
    calls = []

    class Judge(FakeLLM):
        """P(Yes) high for the drifted positives: a judge that is wrong where the embedder is right."""
        def choice_probabilities(self, prompts, choices):
            calls.append(len(prompts))
            texts = [p[-1]["content"].rsplit("Sentence 2: ", 1)[1] for p in prompts]
            return [[p, 1 - p] for p in (0.2 + 0.1 * len(t) / 60 for t in texts)]

    out = tmp_path / "kept.jsonl"
    base = dict(input=str(path), out=str(out), llm="fake:", quantile=0.25, min_positive_overlap=0.0)
    yes = run_filter(FilterConfig(**base), llm=Judge())
    assert yes["scoring_method"] == "logprobs" and sum(calls) == 16
    both = run_filter(FilterConfig(**base, scoring="yesno+cosine", embedder="all-MiniLM-L6-v2"), llm=Judge())
    assert sum(calls) == 16  # yes/no rows reused from <out>.scores.jsonl
    records = read_jsonl(out) + read_jsonl(tmp_path / "kept.dropped.jsonl")
    parts = {c: [r["score_components"][c][f] for r in records for f in ("positive", "negative")]
             for c in ("yesno", "cosine")}
    expected = 5 * (rankdata(parts["yesno"]) / 16 + rankdata(parts["cosine"]) / 16) / 2
    got = [r["scores"][f] for r in records for f in ("positive", "negative")]
    assert got == pytest.approx(expected, abs=1e-3)
    assert both["scoring_method"] == "logprobs+cosine"
    assert records[0]["filter"]["scorer"] == "fake:+all-MiniLM-L6-v2" and records[0]["filter"]["scoring"] == "yesno+cosine"


@pytest.mark.parametrize("settings, message", [
    ({"scoring": "cosine"}, "scoring 'cosine' needs an embedder: --embedder MODEL"),
    ({"scoring": "yesno+cosine", "embedder": "all-MiniLM-L6-v2", "llm": None}, "needs an LLM for its 'yesno' part"),
    ({"scoring": "cos"}, "unknown scoring 'cos'"),
])
def test_filter_scoring_settings_that_cannot_work_are_one_clear_error(tmp_path, settings, message):
    with pytest.raises(LlmcseError, match=re.escape(message)):
        run_filter(FilterConfig(input=str(_paraphrase_records(tmp_path)), out=str(tmp_path / "k.jsonl"), **settings))


def test_filter_names_the_line_of_a_record_missing_a_field(tmp_path):
    path = tmp_path / "gen.jsonl"
    path.write_text('{"id": "a", "recipe": "nli", "seed": "s", "positive": "p", "negative": "n"}\n'
                    '{"id": "b", "recipe": "nli", "seed": "s", "positive": "p"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"gen.jsonl:2: record lacks a non-empty 'negative'"):
        run_filter(FilterConfig(input=str(path), out=str(tmp_path / "k.jsonl"), llm=None))


def test_unknown_llm_spec_is_a_clear_error():
    with pytest.raises(LlmcseError, match="unknown LLM spec 'gpt4'"):
        load_llm("gpt4")
    with pytest.raises(LlmcseError, match="needs a model name"):
        load_llm("openai:http://127.0.0.1:1/v1")
