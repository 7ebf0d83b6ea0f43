"""Document expansion: the weighting math on hand-made vectors, loading, and BEIR eval with expansions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmcse.data.loaders import load_expansions
from llmcse.errors import DataFormatError, LlmcseError
from llmcse.retrieval.expansion import ExpansionWeights, combine


def test_weighted_average_of_doc_query_and_keyword_vectors():
    doc = np.array([[2.0, 0.0, 0.0]])  # normalised to e1 first
    queries = [np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])]  # mean (0, .5, .5)
    keywords = [np.array([[0.0, 3.0, 0.0]])]  # normalised to e2
    out = combine(doc, queries, keywords, ExpansionWeights(1.0, 2.0, 1.0))
    expected = np.array([1.0, 2 * 0.5 + 1.0, 2 * 0.5])  # (1, 2, 1)
    assert np.allclose(out[0], expected / np.linalg.norm(expected))
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)


def test_missing_expansions_keep_the_document_and_mean_mode_averages_everything():
    doc = np.array([[1.0, 0.0], [0.0, 1.0]])
    none = [np.zeros((0, 2)), np.zeros((0, 2))]
    assert np.allclose(combine(doc, none, none, ExpansionWeights(1, 1, 1)), doc)  # nothing to add
    queries = [np.array([[0.0, 1.0]]), np.zeros((0, 2))]
    keywords = [np.array([[0.0, 1.0]]), np.zeros((0, 2))]
    out = combine(doc, queries, keywords, ExpansionWeights(mode="mean"))
    expected = np.array([1.0, 2.0]) / 3  # mean of e1, e2, e2
    assert np.allclose(out[0], expected / np.linalg.norm(expected)) and np.allclose(out[1], [0.0, 1.0])
    # w_doc = 0, w_q = 1: the vector is the queries' mean alone
    assert np.allclose(combine(doc, queries, keywords, ExpansionWeights(0, 1, 0))[0], [0.0, 1.0])


def test_weights_parse_and_reject_nonsense():
    assert ExpansionWeights.parse("1,0.5,0.25") == ExpansionWeights(1.0, 0.5, 0.25)
    assert ExpansionWeights.parse("mean").mode == "mean"
    for bad in ("1,2", "a,b,c", "0,0,0", "-1,1,1"):
        with pytest.raises(LlmcseError, match="expansion weights"):
            ExpansionWeights.parse(bad)


def test_bad_expansion_records_name_file_and_line(tmp_path):
    path = tmp_path / "exp.jsonl"
    path.write_text('{"_id": "d1", "queries": ["q"], "keywords": []}\n{"_id": "d2", "queries": "not a list"}\n')
    with pytest.raises(DataFormatError, match=r"exp.jsonl:2: 'queries' must be a list of strings"):
        load_expansions(path)


def test_eval_with_expansions_moves_a_document_toward_its_synthetic_queries(tmp_path, tiny_data_dir):
    """On the toy BEIR set, a wrong expansion (d2 described as a volcano) must change the ranking."""
    from llmcse.cli import main

    path = tmp_path / "exp.jsonl"
    rows = [{"_id": "d2", "queries": ["what comes out of a volcano", "volcano lava and ash"], "keywords": ["volcano"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out_plain, out_exp = tmp_path / "plain", tmp_path / "exp"
    common = ["-q", "eval", "--model", "all-MiniLM-L6-v2", "--tasks", "toyretrieval", "--data-dir", str(tiny_data_dir)]
    assert main([*common, "--output-dir", str(out_plain)]) == 0
    assert main([*common, "--output-dir", str(out_exp), "--expansions", str(path), "--expansion-weights", "0,1,1"]) == 0
    plain = json.loads((out_plain / "results.json").read_text())["tasks"]["toyretrieval"]
    expanded = json.loads((out_exp / "results.json").read_text())["tasks"]["toyretrieval"]
    assert plain["ndcg_at_10"] == pytest.approx(100.0)
    assert expanded["ndcg_at_10"] < plain["ndcg_at_10"]  # d2 now looks like a volcano document
    assert json.loads((out_exp / "results.json").read_text())["config"]["expansions"] == str(path)


def _corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    docs = [{"_id": "d/1 odd id", "title": "Volcano", "text": "Lava and ash come out of a volcano when it erupts."},
            {"_id": "empty", "title": "", "text": "   "},
            {"_id": "huge", "title": "Long", "text": "word " * 3000},
            {"_id": "ünï", "title": "", "text": "Photosynthesis turns sunlight into sugar in plants."}]
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    return path


def _responder(text, i):
    """Varied queries (one per call), one junk answer, and a keyword list with a duplicate."""
    if "keywords" in text.rsplit("\n", 2)[0].lower() and "Document:" in text:
        return "lava, Lava, ash, a very long keyword phrase that goes on and on, volcano."
    return ["", "what is query number %d" % i, "\u0416\u0416\u0416\u0416 \u0416\u0416\u0416"][i % 3] if i % 5 else f"query {i}"


def test_expand_is_resumable_and_handles_empty_huge_and_odd_documents(tmp_path):
    from llmcse.llm.base import FakeLLM
    from llmcse.synth.expand import ExpandConfig, run_expand

    out = tmp_path / "exp.jsonl"
    cfg = ExpandConfig(corpus=str(_corpus(tmp_path)), out=str(out), queries=2, keywords=3, max_doc_tokens=64,
                       chunk_size=2, n=3)
    summary = run_expand(cfg, llm=FakeLLM(responder=_responder), show_progress_bar=False)
    records = {r["_id"]: r for r in load_jsonl(out)}
    assert list(records) == ["d/1 odd id", "empty", "huge"] and summary["documents"] == 3
    assert records["empty"]["queries"] == [] and records["empty"]["rejections"] == {"empty_document": 1}
    assert records["huge"]["truncated"] and records["huge"]["doc_tokens"] >= 3000
    assert records["d/1 odd id"]["keywords"] == ["lava", "ash", "volcano"]
    assert all(len(set(r["queries"])) == len(r["queries"]) <= 2 for r in records.values())
    assert summary["rejections_by_reason"].get("keyword_duplicate") and summary["rejections_by_reason"].get("keyword_too_long")
    assert summary["rejections_by_reason"].get("empty") or summary["rejections_by_reason"].get("wrong_language")
    # resume: the rest of the corpus, nothing done twice
    cfg.n = None
    again = run_expand(cfg, llm=FakeLLM(responder=_responder), show_progress_bar=False)
    ids = [r["_id"] for r in load_jsonl(out)]
    assert ids == ["d/1 odd id", "empty", "huge", "ünï"] and again["this_run"]["documents"] == 1


def load_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_round_trip_filter_keeps_queries_that_find_their_own_document(tmp_path, tiny_data_dir, capsys, dtype):
    from llmcse.cli import main

    exp = tmp_path / "exp.jsonl"
    rows = [{"_id": "d1", "queries": ["what comes out of a volcano", "when is the football world cup held"],
             "keywords": ["lava"]},
            {"_id": "d2", "queries": ["how do plants make sugar"], "keywords": []},
            {"_id": "not-in-corpus", "queries": ["anything"], "keywords": []}]
    exp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "rt.jsonl"
    corpus = tiny_data_dir / "beir" / "toyretrieval" / "corpus.jsonl"
    assert main(["-q", "filter-expansions", "--corpus", str(corpus), "--in", str(exp), "--out", str(out),
                 "--top-k", "1", *(["--dtype", dtype] if dtype else [])]) == 0
    kept = {r["_id"]: r for r in load_jsonl(out)}
    assert kept["d1"] == {"_id": "d1", "queries": ["what comes out of a volcano"], "keywords": ["lava"]}  # football query dropped
    assert kept["d2"]["queries"] == ["how do plants make sugar"] and "not-in-corpus" not in kept
    report = json.loads((tmp_path / "rt.report.json").read_text())
    assert (report["queries"], report["kept"], report["unknown_documents"]) == (3, 2, 1)
    assert report["dtype"] == (dtype or "float32")


def test_index_then_search_prints_titled_hits_and_matches_eval_with_expansions(tmp_path, tiny_data_dir, capsys):
    from llmcse.cli import main
    from llmcse.retrieval.index import search_index

    corpus = tiny_data_dir / "beir" / "toyretrieval" / "corpus.jsonl"
    exp = tmp_path / "exp.jsonl"
    exp.write_text(json.dumps({"_id": "d3", "queries": ["soccer championship every four years"], "keywords": ["FIFA"]}) + "\n")
    idx = tmp_path / "idx"
    assert main(["-q", "index", "--corpus", str(corpus), "--out", str(idx), "--expansions", str(exp),
                 "--expansion-weights", "1,1,1", "--shard-size", "2"]) == 0
    meta = json.loads((idx / "index.json").read_text())
    assert meta["documents"] == len(corpus.read_text().splitlines()) and meta["weights"] == "1,1,1"
    capsys.readouterr()
    assert main(["search", str(idx), "what comes out of a volcano", "-k", "2"]) == 0
    printed = capsys.readouterr().out
    assert "1. " in printed and "d1  Volcanoes" in printed.splitlines()[1]
    hits = search_index(idx, ["soccer championship"], k=1)[0]
    assert hits[0]["_id"] == "d3" and hits[0]["rank"] == 1
    # sharded vectors equal the vectors the expanded searcher computes in one go
    from llmcse.data.loaders import load_beir_corpus
    from llmcse.embed.encode import CachedEncoder
    from llmcse.embed.models import load_embedder
    from llmcse.retrieval.expansion import ExpandedDenseSearcher

    docs = load_beir_corpus(corpus)
    searcher = ExpandedDenseSearcher(CachedEncoder(load_embedder("all-MiniLM-L6-v2", device="cpu")),
                                     load_expansions(exp), ExpansionWeights(1, 1, 1))
    assert np.allclose(np.load(idx / "vectors.npy"), searcher.document_vectors(docs, list(docs)), atol=1e-5)


def test_search_on_a_folder_that_is_not_an_index_is_a_clear_error(tmp_path):
    from llmcse.retrieval.index import search_index

    with pytest.raises(LlmcseError, match="not an llmcse index"):
        search_index(tmp_path, ["q"])


def test_index_shards_across_processes_resume_per_shard_and_match_one_process(tmp_path, tiny_data_dir, capsys):
    """Worker 0 of 2 alone leaves the index unassembled with only its shards; a plain rerun does the
    rest without redoing them; new settings restart. (--workers N, now Ray actors: tests/test_ray.py)"""
    from llmcse.cli import main

    corpus = tiny_data_dir / "beir" / "toyretrieval" / "corpus.jsonl"
    n_docs = len(corpus.read_text().splitlines())
    one = tmp_path / "one"
    assert main(["-q", "index", "--corpus", str(corpus), "--out", str(one), "--shard-size", "2", "--shard", "0/2"]) == 0
    assert "Run without --shard" in capsys.readouterr().out and not (one / "vectors.npy").exists()
    manifest = json.loads((one / "manifest.json").read_text())
    shards = manifest["shards"]
    assert len(shards) == (n_docs + 1) // 2 >= 2 and shards[0] == {"index": 0, "start": 0, "end": 2, "file": "shards/00000.npy"}
    done = sorted(p.name for p in (one / "shards").glob("*.npy"))
    assert done == [f"{s['index']:05d}.npy" for s in shards if s["index"] % 2 == 0]
    first_written = (one / "shards" / "00000.npy").stat().st_mtime_ns
    assert main(["-q", "index", "--corpus", str(corpus), "--out", str(one), "--shard-size", "2"]) == 0
    assert (one / "shards" / "00000.npy").stat().st_mtime_ns == first_written  # not redone
    vectors = np.load(one / "vectors.npy")
    assert vectors.shape[0] == n_docs and json.loads((one / "index.json").read_text())["shards"] == len(shards)

    exp = tmp_path / "exp.jsonl"
    exp.write_text(json.dumps({"_id": "d3", "queries": ["soccer championship every four years"], "keywords": []}) + "\n")
    assert main(["-q", "index", "--corpus", str(corpus), "--out", str(one), "--shard-size", "2", "--expansions", str(exp)]) == 0
    assert json.loads((one / "manifest.json").read_text())["identity"]["expansions"] == str(exp)
    assert not np.allclose(np.load(one / "vectors.npy"), vectors, atol=1e-3)  # d3's vector moved: shards were redone


def test_bad_shard_spec_is_a_clear_error():
    from llmcse.utils.shards import parse_shard

    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None
    for bad in ("4/4", "a/b", "3", "-1/2"):
        with pytest.raises(LlmcseError, match="expected K/N"):
            parse_shard(bad)


def test_expand_shards_across_workers_and_folds_them_without_duplicates(tmp_path, capsys):
    from llmcse.cli import main

    corpus = _corpus(tmp_path)
    common = ["-q", "expand", "--corpus", str(corpus), "--llm", "fake:", "--queries", "2", "--keywords", "2",
              "--max-doc-tokens", "64", "--chunk-size", "1", "--shard-size", "1"]
    out = tmp_path / "w.jsonl"
    assert main([*common, "--out", str(out), "--shard", "1/2"]) == 0  # worker 1 of 2 alone: shards 1 and 3
    assert "run without --shard" in capsys.readouterr().out and not out.exists()
    shard_files = sorted(p.name for p in (tmp_path / "w.jsonl.shards" / "shards").iterdir())
    assert shard_files == ["00001.jsonl", "00003.jsonl"]
    assert main([*common, "--out", str(out)]) == 0  # folds worker 1's shards, expands shards 0 and 2 itself
    assert "this run: 2 documents" in capsys.readouterr().out
    assert [r["_id"] for r in load_jsonl(out)] == ["d/1 odd id", "empty", "huge", "ünï"]
    assert main([*common, "--out", str(out)]) == 0 and len(load_jsonl(out)) == 4  # rerun: nothing added

    sequential = tmp_path / "s.jsonl"  # the sharded run's records are a single process's (Ray actors: test_ray.py)
    assert main([*common, "--out", str(sequential)]) == 0
    strip = lambda rows: [{k: r[k] for k in ("_id", "queries", "keywords")} for r in rows]  # noqa: E731
    assert strip(load_jsonl(out)) == strip(load_jsonl(sequential))


def test_held_out_split_is_stable_disjoint_and_near_the_fraction():
    from llmcse.eval.sweep import held_out_split

    ids = [f"q{i}" for i in range(1000)]
    tune, report = held_out_split(ids, 0.3)
    assert tune.isdisjoint(report) and tune | report == set(ids)
    assert 250 < len(tune) < 350 and (tune, report) == held_out_split(list(reversed(ids)), 0.3)


def test_sweep_chooses_weights_on_tune_queries_and_reports_the_rest(tmp_path, topics_data_dir, capsys):
    """Each document's expansion either names its topic (helpful) or another topic (harmful)."""
    from conftest import TOPICS

    from llmcse.cli import main

    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text("".join(json.dumps({"_id": f"d{i}", "queries": [t], "keywords": []}) + "\n" for i, t in enumerate(TOPICS)))
    bad.write_text("".join(json.dumps({"_id": f"d{i}", "queries": [TOPICS[(i + 1) % 12]], "keywords": []}) + "\n"
                           for i in range(12)))
    out = tmp_path / "sweep"
    assert main(["-q", "sweep-expansions", "--task", "toy12", "--expansions", f"good={good}", "--expansions", f"bad={bad}",
                 "--weights", "1,1,0", "--weights", "0,1,0", "--output-dir", str(out), "--data-dir", str(topics_data_dir),
                 "--bm25"]) == 0
    result = json.loads((out / "sweep.json").read_text())
    score = {r["setting"]: r for r in result["settings"]}
    assert set(score) == {"bm25", "plain", "good 1,1,0", "good 0,1,0", "bad 1,1,0", "bad 0,1,0"}
    # BM25 is scored on the same parts but never chosen; no document shares a word with its topic query
    assert result["references"] == ["bm25"] and score["bm25"]["all"]["ndcg_at_10"] == 0.0
    assert score["good 0,1,0"]["all"]["ndcg_at_10"] == pytest.approx(100.0)  # each doc is its query
    assert score["bad 0,1,0"]["all"]["ndcg_at_10"] < score["plain"]["all"]["ndcg_at_10"]
    assert result["chosen"].startswith("good") and result["queries"]["tune"] + result["queries"]["report"] == 12
    # paired per-query comparison with plain on the report queries: the perfect setting never loses
    perfect = score["good 0,1,0"]["report_vs_plain"]
    assert perfect["queries"] == result["queries"]["report"] and perfect["worse"] == 0
    assert perfect["mean_delta"] == pytest.approx(100.0 - score["plain"]["report"]["ndcg_at_10"])
    assert "report_vs_plain" not in score["plain"]
    printed = capsys.readouterr().out
    assert "(chosen on tune)" in printed and "| bm25 (reference) |" in printed
    assert result["chosen_report"]["vs_plain"] == score[result["chosen"]]["report_vs_plain"]
    assert "Chosen on the tune queries: **good " in printed and "95% CI, p, better / worse: [" in printed


def test_sweep_chooses_plain_when_no_expansion_beats_it_on_tune(tmp_path, topics_data_dir, capsys):
    """Plain and BM25 are candidates too: with expansions that only hurt (each names another
    document's topic) or change nothing (empty: the same vectors as plain, a tie), plain is chosen."""
    from conftest import TOPICS

    from llmcse.cli import main

    bad, empty = tmp_path / "bad.jsonl", tmp_path / "empty.jsonl"
    bad.write_text("".join(json.dumps({"_id": f"d{i}", "queries": [TOPICS[(i + 1) % 12]], "keywords": []}) + "\n"
                           for i in range(12)))
    empty.write_text("".join(json.dumps({"_id": f"d{i}", "queries": [], "keywords": []}) + "\n" for i in range(12)))
    out = tmp_path / "sweep"
    assert main(["-q", "sweep-expansions", "--task", "toy12", "--expansions", f"bad={bad}", "--expansions",
                 f"empty={empty}", "--weights", "1,1,0", "--output-dir", str(out), "--data-dir", str(topics_data_dir),
                 "--bm25"]) == 0
    result = json.loads((out / "sweep.json").read_text())
    score = {r["setting"]: r for r in result["settings"]}
    tune = {k: r["tune"]["ndcg_at_10"] for k, r in score.items()}
    assert tune["empty 1,1,0"] == tune["plain"] > tune["bad 1,1,0"] and tune["bm25"] == 0.0
    assert result["chosen"] == "plain" and result["best_expanded"] == "empty 1,1,0"
    assert result["chosen_report"] == {"setting": "plain", "ndcg_at_10": score["plain"]["report"]["ndcg_at_10"],
                                       "plain_ndcg_at_10": score["plain"]["report"]["ndcg_at_10"], "vs_plain": None}
    printed = capsys.readouterr().out
    assert "| plain **(chosen on tune)** |" in printed and "Chosen on the tune queries: **plain**" in printed
    assert "chosen on the tune queries (plain and BM25 among the candidates): plain" in printed


def test_demo_phrases_in_queries_and_keywords_are_rejected_unless_the_document_says_them():
    """SmolLM2 on ArguAna pasted the shipped demo's keywords ("The Great Barrier Reef, coral reef")
    into documents about veganism: rejected as from_demo, but kept when the document says them."""
    from llmcse.synth.expand import check_query, split_keywords
    from llmcse.synth.prompts import load_template

    kfield, qfield = load_template("expand").fields["keywords"], load_template("expand").fields["query"]
    kdemos = [t for d in kfield.demos for t in (d.input, d.output)]
    qdemos = [t for d in qfield.demos for t in (d.input, d.output)]
    vegan = "Eating meat harms the environment, so a vegan diet is the moral choice."
    words, rejected = split_keywords("vegan diet, The Great Barrier Reef, coral reef, environment, Queensland", vegan, 5, kdemos)
    assert words == ["vegan diet", "environment"] and rejected == {"from_demo": 3}
    reef = "Warming seas bleach the coral reef off Queensland."
    words, rejected = split_keywords("coral reef, Queensland, bleaching", reef, 5, kdemos)
    assert words == ["coral reef", "Queensland", "bleaching"] and not rejected
    assert check_query("largest coral reef in the world", vegan, qfield.instruction, set(), qdemos) == "from_demo"
    assert check_query("is a vegan diet better for the environment", vegan, qfield.instruction, set(), qdemos) is None


def test_expansion_cost_adds_up_every_process_that_expanded(tmp_path):
    from llmcse.llm.base import FakeLLM
    from llmcse.synth.expand import ExpandConfig, run_expand

    out = tmp_path / "exp.jsonl"
    cfg = ExpandConfig(corpus=str(_corpus(tmp_path)), out=str(out), queries=2, keywords=3, max_doc_tokens=64, n=2)
    first = run_expand(cfg, llm=FakeLLM(responder=_responder), show_progress_bar=False)
    cfg.n = None
    second = run_expand(cfg, llm=FakeLLM(responder=_responder), show_progress_bar=False)
    third = run_expand(cfg, llm=FakeLLM(responder=_responder), show_progress_bar=False)  # nothing left: no new entry
    assert first["cost"]["runs"] == 1 and first["cost"]["documents"] == 2
    assert second["cost"]["runs"] == third["cost"]["runs"] == 2 and third["cost"]["documents"] == 4
    runs = load_jsonl(tmp_path / "exp.jsonl.runs.jsonl")
    assert third["cost"]["process_seconds"] == pytest.approx(sum(r["seconds"] for r in runs), abs=0.2)
    assert third["cost"]["completion_tokens_per_doc"] == round(sum(r["completion_tokens"] for r in runs) / 4, 1)


def test_a_killed_expansion_keeps_the_cost_of_its_finished_chunks(tmp_path):
    """Long expansions are stopped from outside (end of a session, a preempted worker): the cost of
    every chunk already written must be on record, so the final cost covers every document."""
    from llmcse.llm.base import FakeLLM
    from llmcse.synth.expand import ExpandConfig, run_expand

    def dies_in_second_chunk(text, i):
        if i >= 3:  # the first chunk (a real and an empty document) takes 3 calls: 2 queries + 1 keyword list
            raise KeyboardInterrupt
        return f"query {i}" if "keywords" not in text.lower() else "lava, ash"

    out = tmp_path / "exp.jsonl"
    cfg = ExpandConfig(corpus=str(_corpus(tmp_path)), out=str(out), queries=2, keywords=3, max_doc_tokens=64,
                       chunk_size=2)
    with pytest.raises(KeyboardInterrupt):
        run_expand(cfg, llm=FakeLLM(responder=dies_in_second_chunk), show_progress_bar=False)
    logged = load_jsonl(tmp_path / "exp.jsonl.runs.jsonl")
    assert [r["documents"] for r in logged] == [2] and len(load_jsonl(out)) == 2
    assert logged[0]["completion_tokens"] > 0 and logged[0]["process"]
    finished = run_expand(cfg, llm=FakeLLM(responder=_responder), show_progress_bar=False)
    assert finished["cost"]["documents"] == 4 == finished["documents"] and finished["cost"]["runs"] == 2


def test_meta_phrase_and_function_word_keywords_are_rejected_unless_the_document_says_them():
    """SmolLM2's most frequent ArguAna "keywords" talked about the task ("the document contains multiple
    keywords:" 314x, "separated by commas" 183x, "the" 83x): rejected, by reason, while real keywords stay."""
    from llmcse.synth.expand import keyword_problem, split_keywords
    from llmcse.synth.prompts import load_template

    instruction = load_template("expand").fields["keywords"].instruction
    doc = "Homework wastes children's evenings; schools should abolish it."
    raw = ("the document contains multiple keywords:, homework, separated by commas, the, and the, schools, including:, "
           "the main keywords of this document, children")
    words, rejected = split_keywords(raw, doc, 5, (), instruction)
    assert words == ["homework", "schools", "children"]
    assert rejected == {"meta": 3, "function_words": 3}
    assert keyword_problem("the document is:", doc, instruction) == "meta"  # a list lead-in
    # the same words are fine where the document itself uses them
    legal = "The court ruled the leaked document admissible; keywords in emails were searched."
    assert keyword_problem("leaked document", legal, instruction) is None
    assert keyword_problem("main street", "A shop on Main Street closed.", instruction) is None
    assert keyword_problem("main keywords", doc, instruction) == "meta"


def test_filter_expansions_drops_meta_keywords_of_existing_files_with_or_without_the_round_trip(tmp_path, tiny_data_dir, capsys):
    """Expansions written before expand checked keywords are cleaned by filter-expansions; --top-k 0 skips
    the round trip (no retriever loaded), --no-keyword-check keeps keywords as they were."""
    from llmcse.cli import main

    corpus = tiny_data_dir / "beir" / "toyretrieval" / "corpus.jsonl"
    exp = tmp_path / "exp.jsonl"
    rows = [{"_id": "d1", "queries": ["what comes out of a volcano"],
             "keywords": ["the document contains multiple keywords:", "lava", "separated by commas", "the"]},
            {"_id": "d2", "queries": ["how do plants make sugar"], "keywords": ["the document is:"]}]
    exp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "kw.jsonl"
    assert main(["-q", "filter-expansions", "--corpus", str(corpus), "--in", str(exp), "--out", str(out), "--top-k", "0"]) == 0
    assert "kept 1 of 5 keywords (rejected: function_words 1, meta 3); 1 documents lost all" in capsys.readouterr().out
    kept = {r["_id"]: r for r in load_jsonl(out)}
    assert kept["d1"] == {"_id": "d1", "queries": ["what comes out of a volcano"], "keywords": ["lava"]}
    assert kept["d2"] == {"_id": "d2", "queries": ["how do plants make sugar"], "keywords": []}
    report = json.loads((tmp_path / "kw.report.json").read_text())
    assert report["top_k"] == 0 and report["keyword_check"]["rejected_by_reason"] == {"meta": 3, "function_words": 1}
    assert main(["-q", "filter-expansions", "--corpus", str(corpus), "--in", str(exp), "--out", str(out), "--top-k", "0",
                 "--no-keyword-check"]) == 0
    assert [r["keywords"] for r in load_jsonl(out)] == [rows[0]["keywords"], rows[1]["keywords"]]
