"""Multi-representation retrieval: a document as its sentences (and synthetic queries), max-scored."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmcse.data.records import Doc, Query


@pytest.mark.parametrize("text, expected", [
    ("Statins lower LDL cholesterol in most adults. Side effects, e.g. muscle pain, are rare in trials.",
     ["Statins lower LDL cholesterol in most adults.", "Side effects, e.g. muscle pain, are rare in trials."]),
    # abbreviations before a capital or a digit do not end a sentence
    ("As reported by Smith et al. 2019 there was no harm. Dr. Lee saw 40 patients for two years (Fig. 2).",
     ["As reported by Smith et al. 2019 there was no harm.", "Dr. Lee saw 40 patients for two years (Fig. 2)."]),
    # a piece under 6 words joins the next one; a short last one joins the one before
    ("Background. Vitamin D deficiency is common in older adults! Is it? Yes.",
     ["Background. Vitamin D deficiency is common in older adults! Is it? Yes."]),
    ('He said "Stop here." Then everyone went home after the long meeting.',
     ['He said "Stop here." Then everyone went home after the long meeting.']),
    ("No end mark at all", ["No end mark at all"]),
    ("", []),
])
def test_sentence_splitter(text, expected):
    from llmcse.retrieval.multirep import split_sentences

    assert split_sentences(text) == expected


def test_passages_pack_sentences_up_to_a_word_budget():
    from llmcse.retrieval.multirep import pack_passages

    sentences = ["one two three four", "five six seven", "eight nine ten eleven twelve", "a b c d e f g h i j k"]
    assert pack_passages(sentences, 8) == ["one two three four five six seven", "eight nine ten eleven twelve",
                                           "a b c d e f g h i j k"]


@pytest.mark.parametrize("text, units, mix", [("sent", ("sent",), 0.0), ("sent+doc+queries:0.3", ("sent", "doc", "queries"), 0.3),
                                               (" pass+doc ", ("pass", "doc"), 0.0)])
def test_spec_parses(text, units, mix):
    from llmcse.retrieval.multirep import MultiRepSpec

    spec = MultiRepSpec.parse(text)
    assert (spec.units, spec.mix) == (units, mix) and MultiRepSpec.parse(spec.label()) == spec


@pytest.mark.parametrize("text, message", [("words", "units joined by '+'"), ("", "units joined by '+'"),
                                           ("sent:x", "must be a number"), ("sent:1.5", "must be in [0, 1]"),
                                           ("sent+pass", "choose sent or pass")])
def test_bad_spec_is_a_clear_error(text, message):
    from llmcse.errors import LlmcseError
    from llmcse.retrieval.multirep import MultiRepSpec

    with pytest.raises(LlmcseError, match=message.replace("[", r"\[").replace("+", r"\+")):
        MultiRepSpec.parse(text)


def test_a_document_scores_the_max_over_its_units_and_the_mix_adds_the_whole_document(encoder):
    from llmcse.retrieval.multirep import MultiRepSearcher

    corpus = {"a": Doc("a", "Volcanoes erupt hot lava and ash clouds. The town council approved a new parking budget.", "Geo"),
              "b": Doc("b", "Photosynthesis turns sunlight into sugar in green leaves.", ""),
              "c": Doc("c", "", "Only a title here")}
    queries = {"q": Query("q", "lava eruption")}
    expansions = {"b": {"queries": ["how do plants make sugar", "how do plants make sugar"], "keywords": []}}

    def cos(a, b):
        return float(encoder.encode([a], prompt_name="query")[0] @ encoder.encode([b], prompt_name="document")[0])

    run = MultiRepSearcher(encoder, "sent").search(corpus, queries, top_k=3)["q"]
    units_a = ["Geo Volcanoes erupt hot lava and ash clouds.", "Geo The town council approved a new parking budget."]
    assert run["a"] == pytest.approx(max(cos("lava eruption", u) for u in units_a), abs=1e-5)
    assert run["c"] == pytest.approx(cos("lava eruption", "Only a title here"), abs=1e-5)  # no text: the title is its unit
    assert list(run)[0] == "a" and run["a"] > cos("lava eruption", corpus["a"].default_text())  # the max beats the mixture
    searcher = MultiRepSearcher(encoder, "sent+doc+queries:0.25", expansions)
    mixed = searcher.search(corpus, queries, top_k=3)["q"]
    q_vec = encoder.encode(["lava eruption"], prompt_name="query")[0]
    synthetic = encoder.encode(["how do plants make sugar"], prompt_name="query")[0]
    best_b = max(cos("lava eruption", corpus["b"].text), float(q_vec @ synthetic))
    assert mixed["b"] == pytest.approx(0.75 * best_b + 0.25 * cos("lava eruption", corpus["b"].text), abs=1e-5)
    # a: 2 sentences + itself; b: its one sentence (= itself, kept once) + its query (twice, kept once); c: its title
    assert searcher.last_units == 3 + 2 + 1
    assert set(mixed) == {"a", "b", "c"} and np.isfinite(list(mixed.values())).all()


def test_queries_as_units_need_expansions(encoder):
    from llmcse.errors import LlmcseError
    from llmcse.retrieval.multirep import MultiRepSearcher

    with pytest.raises(LlmcseError, match="give expansions"):
        MultiRepSearcher(encoder, "sent+queries")


# toylong: 12 long documents, each one topic sentence among 6 office-memo sentences, plus 12 short
# decoys loosely about each topic; query i (conftest.TOPICS[i]) judges document d<i> only. One
# vector per document dilutes the topic sentence, so a decoy can outrank it; its own sentence cannot.
TOPIC_SENTENCES = [
    "Lava poured from the volcano during the eruption.", "The team won the football world cup final.",
    "Plants use photosynthesis to turn light into sugar.", "The stock market crash wiped out savings.",
    "She played a piano sonata by Beethoven.", "The Mars rover drilled into red rock.",
    "Brewing coffee needs water just off the boil.", "He chose a sharp chess opening with the white pieces.",
    "Tiny frogs live in the wet rain forest.", "Bitcoin mining uses huge amounts of electricity.",
    "Marathon training means long slow runs each week.", "Medieval castles had thick stone walls and moats."]
MEMO = ["The committee reviewed the quarterly budget report in detail.",
        "Parking permits are renewed every January at the town office.",
        "The printer on the second floor is out of toner again.", "Minutes of the last meeting were approved without changes.",
        "Staff are reminded to submit expense claims by Friday.", "The cafeteria will close early on public holidays."]
DECOYS = ["Mountains and rocks in geology.", "A sports game with a ball.", "Green leaves of a tree.", "Money and banks.",
          "Classical music concert.", "Space travel to planets.", "A morning drink.", "A board game.", "Animals in nature.",
          "Digital money online.", "Running shoes.", "Old history of kings."]
# synthetic queries as a generator writes them: one about the topic sentence, two about the memo
TOPIC_QUERIES = [
    "why does a mountain spew molten rock", "who lifted the trophy in the final", "how do leaves make food from light",
    "why did share prices fall so fast", "which Beethoven piece did she perform", "what did the robot find on the red planet",
    "how hot should water be for a good cup", "best first moves as white", "where do small amphibians live",
    "how much power does crypto need", "how to prepare for a long race", "how were old fortresses defended"]
MEMO_QUERIES = ["when is the budget report due", "where to renew parking permits", "is the printer fixed",
                "were the minutes approved", "deadline for expense claims", "cafeteria holiday hours"]


@pytest.fixture()
def long_docs_data_dir(topics_data_dir):
    from conftest import TOPICS

    beir = topics_data_dir / "beir" / "toylong"
    (beir / "qrels").mkdir(parents=True)
    docs = []
    for i, sentence in enumerate(TOPIC_SENTENCES):
        memo = MEMO[i % 6:] + MEMO[:i % 6]
        docs.append({"_id": f"d{i}", "title": "", "text": " ".join(memo[:3] + [sentence] + memo[3:])})
    docs += [{"_id": f"x{i}", "title": "", "text": t} for i, t in enumerate(DECOYS)]
    (beir / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": t}) + "\n" for i, t in enumerate(TOPICS)))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(12)))
    return topics_data_dir


def test_sentences_beat_one_vector_per_document_with_or_without_synthetic_queries(tmp_path, long_docs_data_dir, capsys):
    """The issue's comparison on a task built for it: one (RB-averaged) vector per document vs the
    max over its sentences (and its synthetic queries, each its own vector)."""
    from llmcse.cli import main

    exp = tmp_path / "exp.jsonl"
    exp.write_text("".join(json.dumps({"_id": f"d{i}", "queries": [q, MEMO_QUERIES[i % 6], MEMO_QUERIES[(i + 1) % 6]],
                                       "keywords": []}) + "\n" for i, q in enumerate(TOPIC_QUERIES)))
    out = tmp_path / "sweep"
    assert main(["-q", "sweep-expansions", "--task", "toylong", "--expansions", f"exp={exp}", "--weights", "1,1,0",
                 "--weights", "mean", "--multirep", "sent", "--multirep", "sent+queries", "--multirep", "sent:0.5",
                 "--output-dir", str(out), "--data-dir", str(long_docs_data_dir)]) == 0
    result = json.loads((out / "sweep.json").read_text())
    ndcg = {r["setting"]: r["all"]["ndcg_at_10"] for r in result["settings"]}
    assert list(ndcg) == ["plain", "exp 1,1,0", "exp mean", "multirep sent", "exp multirep sent+queries",
                          "multirep sent:0.5"]
    # measured with the bundled all-MiniLM-L6-v2 (fp32): 80.46 / 81.55 / 69.56 vs 100 / 100 / 96.92
    assert ndcg["plain"] == pytest.approx(80.46, abs=0.05)
    assert ndcg["exp 1,1,0"] < 85 and ndcg["exp mean"] < ndcg["plain"]  # averaging in memo queries dilutes too
    assert ndcg["multirep sent"] == ndcg["exp multirep sent+queries"] == pytest.approx(100.0)
    assert ndcg["plain"] < ndcg["multirep sent:0.5"] < 100.0  # the whole-document cosine pulls back toward plain
    tune = {r["setting"]: r["tune"]["ndcg_at_10"] for r in result["settings"]}
    assert result["chosen"] == "multirep sent" and tune["multirep sent"] == max(tune.values())  # first of the ties
    printed = capsys.readouterr().out
    assert "| multirep sent **(chosen on tune)** |" in printed


def test_eval_takes_a_multirep_spec_and_refuses_queries_without_expansions(tmp_path, topics_data_dir, capsys):
    from conftest import TOPICS

    from llmcse.cli import main

    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"_id": f"d{i}", "queries": [t], "keywords": []}) + "\n" for i, t in enumerate(TOPICS)))
    args = ["-q", "eval", "--model", "all-MiniLM-L6-v2", "--tasks", "toy12", "--data-dir", str(topics_data_dir)]
    assert main(args + ["--multirep", "sent+queries"]) == 2
    assert "synthetic queries as units need --expansions" in capsys.readouterr().err
    assert main(args + ["--multirep", "sent+queries", "--expansions", str(good), "--output-dir", str(tmp_path / "e")]) == 0
    results = json.loads((tmp_path / "e" / "results.json").read_text())
    assert results["tasks"]["toy12"]["main_score"] == pytest.approx(100.0)  # each topic's own query is a unit
    assert results["config"]["multirep"] == "sent+queries"
