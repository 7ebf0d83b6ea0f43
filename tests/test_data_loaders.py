"""Loaders: golden records on the shared data, and a clear file:line error for every malformed input."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmcse.data.loaders import (
    load_beir,
    load_labeled_sentences,
    load_sentences,
    load_sts,
    load_triplets,
)
from llmcse.data.records import Doc, LabeledSentence, STSPair, Triplet
from llmcse.errors import DataFormatError, MissingDataError

STS_HEADER = "sentence1\tsentence2\tscore\tsubset\n"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- golden records (shared data)


def test_sts12_has_the_senteval_count_and_known_first_and_last_pairs(shared_data_dir):
    pairs = load_sts(shared_data_dir / "sts" / "sts12.tsv")
    assert len(pairs) == 3108
    assert pairs[0].sentence1.startswith("The problem likely will mean corrective changes")
    assert pairs[0].score == 4.4 and pairs[0].subset == "MSRpar"
    assert pairs[-1] == STSPair(
        "He did, but the initiative did not get very far.",
        "What it did without the initiative not going very far.",
        3.5,
        "surprise.SMTnews",
    )


def test_stsb_test_and_sick_test_have_standard_sizes(shared_data_dir):
    stsb = load_sts(shared_data_dir / "sts" / "stsb_test.tsv")
    sick = load_sts(shared_data_dir / "sts" / "sick_test.tsv")
    assert (len(stsb), len(sick)) == (1379, 4927)
    assert stsb[0] == STSPair("A girl is styling her hair.", "A girl is brushing her hair.", 2.5, "main-captions/MSRvid")
    assert min(p.score for p in sick) >= 1.0  # SICK-R is on a 1-5 scale


def test_arguana_loads_with_beir_counts_and_counts_qrels_to_missing_docs(shared_data_dir):
    ds = load_beir(shared_data_dir / "beir" / "arguana")
    assert (len(ds.corpus), len(ds.queries), sum(len(v) for v in ds.qrels.values())) == (8674, 1406, 1406)
    assert ds.notes == {"qrels_unknown_doc": 5}
    assert ds.qrels["test-society-epsihbdns-con01a"] == {"test-society-epsihbdns-con01b": 1}
    assert ds.corpus["validation-society-fyhwscdcj-con02b"].text.startswith("Many of the organisations")
    # 1298 queries are also documents: why BEIR drops identical ids from the results
    assert sum(1 for q in ds.queries if q in ds.corpus) == 1298


def test_nli_triplets_and_unlabeled_sentences_load(shared_data_dir):
    triplets = load_triplets(shared_data_dir / "nli" / "triplets.tsv")
    assert len(triplets) == 6337
    assert triplets[0] == Triplet(
        "Two women are embracing while holding to go packages .",
        "Two woman are holding packages .",
        "The men are fighting outside a deli .",
    )
    sentences = load_sentences(shared_data_dir / "unlabeled" / "wiki_sentences.txt")
    assert len(sentences) == 11548
    assert sentences[-1].startswith("The stations have staircases")


def test_transfer_mr_loads_as_labeled_sentences(shared_data_dir):
    rows = load_labeled_sentences(shared_data_dir / "transfer" / "mr" / "all.tsv")
    assert len(rows) == 10662
    assert rows[-1] == LabeledSentence("enigma is well-made , but it 's just too dry and too placid .", "0")
    assert {r.label for r in rows} == {"0", "1"}


# ---------------------------------------------------------------- malformed input: file and line named


def assert_error_at(excinfo, path: Path, line: int | None, *fragments: str) -> None:
    message = str(excinfo.value)
    where = f"{path}:{line}" if line is not None else str(path)
    assert message.startswith(where + ":"), message
    for fragment in fragments:
        assert fragment in message, message


def test_sts_file_missing_a_column_names_the_header_line(tmp_path):
    path = write(tmp_path / "bad.tsv", "sentence1\tscore\nA\t1.0\n")
    with pytest.raises(DataFormatError) as e:
        load_sts(path)
    assert_error_at(e, path, 1, "missing column", "sentence2")


def test_non_numeric_score_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.tsv", STS_HEADER + "a b\tc d\t3.0\tx\nA cat.\tA dog.\tfive\tx\n")
    with pytest.raises(DataFormatError) as e:
        load_sts(path)
    assert_error_at(e, path, 3, "score", "'five'", "not a number")


def test_empty_sentence_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.tsv", STS_HEADER + "A cat.\tA dog.\t3.0\tx\n   \tA dog.\t1.0\tx\n")
    with pytest.raises(DataFormatError) as e:
        load_sts(path)
    assert_error_at(e, path, 3, "empty sentence1")


def test_wrong_number_of_fields_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.tsv", STS_HEADER + "A cat.\tA dog.\t3.0\n")
    with pytest.raises(DataFormatError) as e:
        load_sts(path)
    assert_error_at(e, path, 2, "expected 4 tab-separated fields", "found 3")


def test_bad_utf8_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.tsv", STS_HEADER.encode() + b"A cat.\tA dog.\t3.0\tx\nA sister\xf0city.\tB.\t1.0\tx\n")
    with pytest.raises(DataFormatError) as e:
        load_sts(path)
    assert_error_at(e, path, 3, "invalid UTF-8")


def _beir_folder(tmp_path: Path, corpus: str, queries: str, qrels: str) -> Path:
    folder = tmp_path / "beir" / "toy"
    write(folder / "corpus.jsonl", corpus)
    write(folder / "queries.jsonl", queries)
    write(folder / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\n" + qrels)
    return folder


GOOD_CORPUS = '{"_id": "d1", "text": "one"}\n{"_id": "d2", "title": "t", "text": "two"}\n'
GOOD_QUERIES = '{"_id": "q1", "text": "first"}\n'


def test_duplicate_document_id_names_both_lines(tmp_path):
    folder = _beir_folder(tmp_path, GOOD_CORPUS + '{"_id": "d1", "text": "again"}\n', GOOD_QUERIES, "q1\td1\t1\n")
    with pytest.raises(DataFormatError) as e:
        load_beir(folder)
    assert_error_at(e, folder / "corpus.jsonl", 3, "duplicate document id 'd1'", "first seen on line 1")


def test_duplicate_query_id_names_file_and_line(tmp_path):
    folder = _beir_folder(tmp_path, GOOD_CORPUS, GOOD_QUERIES + '{"_id": "q1", "text": "dup"}\n', "q1\td1\t1\n")
    with pytest.raises(DataFormatError) as e:
        load_beir(folder)
    assert_error_at(e, folder / "queries.jsonl", 2, "duplicate query id 'q1'")


def test_invalid_json_names_file_and_line(tmp_path):
    folder = _beir_folder(tmp_path, GOOD_CORPUS + '{"_id": "d3", "text": \n', GOOD_QUERIES, "q1\td1\t1\n")
    with pytest.raises(DataFormatError) as e:
        load_beir(folder)
    assert_error_at(e, folder / "corpus.jsonl", 3, "invalid JSON")


def test_qrel_to_unknown_query_names_file_and_line(tmp_path):
    folder = _beir_folder(tmp_path, GOOD_CORPUS, GOOD_QUERIES, "q1\td1\t1\nq9\td2\t1\n")
    with pytest.raises(DataFormatError) as e:
        load_beir(folder)
    assert_error_at(e, folder / "qrels" / "test.tsv", 3, "unknown query id 'q9'")


def test_qrel_to_unknown_document_is_kept_and_counted_as_beir_does(tmp_path):
    folder = _beir_folder(tmp_path, GOOD_CORPUS, GOOD_QUERIES, "q1\td1\t1\nq1\tgone\t1\n")
    ds = load_beir(folder)
    assert ds.qrels == {"q1": {"d1": 1, "gone": 1}}
    assert ds.notes == {"qrels_unknown_doc": 1}


def test_non_integer_relevance_names_file_and_line(tmp_path):
    folder = _beir_folder(tmp_path, GOOD_CORPUS, GOOD_QUERIES, "q1\td1\thigh\n")
    with pytest.raises(DataFormatError) as e:
        load_beir(folder)
    assert_error_at(e, folder / "qrels" / "test.tsv", 2, "'high' is not an integer")


def test_document_with_no_id_names_file_and_line(tmp_path):
    folder = _beir_folder(tmp_path, '{"text": "no id"}\n', GOOD_QUERIES, "q1\td1\t1\n")
    with pytest.raises(DataFormatError) as e:
        load_beir(folder)
    assert_error_at(e, folder / "corpus.jsonl", 1, "no '_id'")


def test_empty_documents_and_odd_ids_are_kept(tmp_path):
    corpus = '{"_id": "d 1/ü", "title": "", "text": ""}\n{"_id": 7, "text": "seven"}\n'
    folder = _beir_folder(tmp_path, corpus, '{"_id": "q1", "text": "x"}\n', "q1\t7\t1\n")
    ds = load_beir(folder)
    assert ds.corpus["d 1/ü"] == Doc("d 1/ü", "", "")
    assert ds.corpus["7"].text == "seven"


def test_missing_beir_file_says_which_file(tmp_path):
    folder = tmp_path / "beir" / "empty"
    folder.mkdir(parents=True)
    with pytest.raises(MissingDataError, match="corpus.jsonl: file not found"):
        load_beir(folder)


def test_transfer_file_with_empty_label_names_file_and_line(tmp_path):
    path = write(tmp_path / "all.tsv", "sentence\tlabel\ngood film\t1\nbad film\t\n")
    with pytest.raises(DataFormatError) as e:
        load_labeled_sentences(path)
    assert_error_at(e, path, 3, "empty label")
