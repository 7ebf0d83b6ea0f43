"""Registries at the extension points (issue 24): a loss, an LLM back end, a task kind and a model-spec
prefix, each one file under tests/plugins/ with one registration line, work through the real CLI; an
unknown name is a one-line error (exit 2) listing the known ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmcse.cli import main
from plugins import toy_llm, toy_loss, toy_prefix, toy_task  # noqa: F401  (importing registers them)


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_registered_loss_trains_through_llmcse_train(tmp_path, shared_data_dir, tiny_data_dir, minilm, capsys):
    from sentence_transformers import SentenceTransformer

    toy_loss.VALUES.clear()
    out = tmp_path / "model"
    code, _, err = _cli(["-q", "train", "--recipe", "sup-simcse", "--data", str(shared_data_dir / "nli" / "triplets.tsv"),
                         "--out", str(out), "--set", "loss=toy_logistic", "--set", "max_steps=2", "--set", "batch_size=8",
                         "--set", "max_examples=16", "--set", "eval_steps=1", "--set", "logging_steps=1",
                         "--set", "eval_task=toysts:dev", "--data-dir", str(tiny_data_dir)], capsys)
    assert code == 0, err
    summary = json.loads((out / "llmcse_training.json").read_text())
    assert summary["config"]["loss"] == "toy_logistic" and summary["steps"] == 2
    # the values the trainer logged are the ones the toy loss computed, step by step
    logged = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    assert len(toy_loss.VALUES) == 2 and logged == pytest.approx(toy_loss.VALUES, abs=1e-4)
    assert all(value > 0 for value in toy_loss.VALUES)  # softplus of a finite gap
    # and its gradients moved the weights: the saved model embeds differently from the base
    text = ["A man is playing a guitar on stage."]
    trained = SentenceTransformer(str(out), device="cpu").encode(text, normalize_embeddings=True)
    assert not np.allclose(trained, minilm.encode(text, normalize_embeddings=True), atol=1e-5)


def test_a_registered_llm_back_end_generates_through_llmcse_generate(tmp_path, capsys):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("A man is playing a guitar on stage.\nThe committee approved the new budget on Tuesday.\n"
                     "Children are swimming in the lake near the old mill.\n")
    out = tmp_path / "nli.jsonl"
    before = toy_llm.ToyLLM.answered
    code, _, err = _cli(["-q", "generate", "--recipe", "nli", "--seeds", str(seeds), "--llm", "toy:", "--out", str(out)],
                        capsys)
    assert code == 0, err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seed"] for r in records] == seeds.read_text().splitlines()
    for r in records:
        assert r["generator"] == "toy:"
        assert (r["positive"], r["negative"]) == (f"Toy paraphrase {r['seed']}", f"Toy change {r['seed']}")
    assert toy_llm.ToyLLM.answered - before == 6  # a positive and a negative per seed


def test_a_registered_task_kind_is_evaluated_through_llmcse_eval(tmp_path, tiny_data_dir, capsys):
    from llmcse.data.inventory import data_inventory

    (tiny_data_dir / "matching").mkdir()
    (tiny_data_dir / "matching" / "toymatch.tsv").write_text(
        "sentence1\tsentence2\n"
        "A man is playing a guitar.\tA man plays the guitar.\n"
        "The cat sleeps on the sofa.\tA cat is asleep on the couch.\n"
        "Stock prices fell sharply today.\tShares dropped steeply today.\n"
        "She is cooking pasta in the kitchen.\tA woman makes spaghetti in the kitchen.\n"
        "The train leaves at noon.\tHeavy rain flooded the streets.\n"  # unrelated: this row cannot match
        "Children are swimming in the lake.\tKids swim in a lake.\n")
    assert {"name": "toymatch", "kind": "matching"}.items() <= next(
        t for t in data_inventory(tiny_data_dir)["tasks"] if t["name"] == "toymatch").items()
    out = tmp_path / "results"
    code, stdout, err = _cli(["-q", "eval", "--model", "all-MiniLM-L6-v2", "--tasks", "toymatch,toysts",
                              "--data-dir", str(tiny_data_dir), "--output-dir", str(out)], capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    result = results["tasks"]["toymatch"]
    # MiniLM pairs 5 of the 6 rows (the unrelated one misses)
    assert (result["main_metric"], result["split"], result["num_pairs"]) == ("match_accuracy", "test", 6)
    assert result["main_score"] == pytest.approx(100 * 5 / 6)
    assert "matching/toymatch.tsv" in results["data_files"]
    assert results["tasks"]["toysts"]["main_metric"] == "cosine_spearman"  # built-in kinds alongside
    assert "match_accuracy" in stdout and "83.33" in stdout



def test_a_registered_model_prefix_is_evaluated_through_llmcse_eval(tmp_path, tiny_data_dir, minilm, capsys):
    from scipy.stats import pearsonr

    from llmcse.embed.models import load_embedder
    from llmcse.utils.modelspec import resolve_model_path

    assert resolve_model_path("toyhalf:all-MiniLM-L6-v2") == "toyhalf:all-MiniLM-L6-v2"  # not taken for a path
    texts = ["A man is playing a guitar.", "A woman is slicing onions."]
    half = load_embedder("toyhalf:all-MiniLM-L6-v2", device="cpu").encode(texts)
    assert half.shape == (2, 192) and np.allclose(half, minilm.encode(texts)[:, :192], atol=1e-6)

    out = tmp_path / "results"
    code, _, err = _cli(["-q", "eval", "--model", "toyhalf:all-MiniLM-L6-v2", "--tasks", "toysts",
                         "--data-dir", str(tiny_data_dir), "--output-dir", str(out)], capsys)
    assert code == 0, err
    result = json.loads((out / "results.json").read_text())["tasks"]["toysts"]
    rows = [line.split("\t") for line in (tiny_data_dir / "sts" / "toysts_test.tsv").read_text().splitlines()[1:]]

    def pearson(dims: int) -> float:
        a, b = (minilm.encode([r[i] for r in rows])[:, :dims] for i in (0, 1))  # (n, dims) each
        a, b = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))
        return 100 * pearsonr(np.einsum("nd,nd->n", a, b), [float(r[2]) for r in rows]).statistic

    # the score is that of the half-width vectors, which differs from the full model's
    assert result["cosine_pearson"] == pytest.approx(pearson(192), abs=1e-3)
    assert abs(pearson(192) - pearson(384)) > 1e-2


def test_a_kind_without_an_evaluator_is_refused_before_the_model_loads(tmp_path, tiny_data_dir, capsys, monkeypatch):
    from llmcse.data.tasks import TASK_KINDS, TaskKind, TaskSpec

    def discover(data_dir):
        return [TaskSpec(p.stem, "unscored", {"test": p}, p.parent) for p in sorted((data_dir / "unscored").glob("*.tsv"))]

    monkeypatch.setitem(TASK_KINDS._entries, "unscored", TaskKind("unscored", "score", discover))  # data side only
    (tiny_data_dir / "unscored").mkdir()
    (tiny_data_dir / "unscored" / "plain.tsv").write_text("a\tb\n")
    code, out, err = _cli(["-q", "eval", "--model", "no/such-model", "--tasks", "plain", "--data-dir", str(tiny_data_dir),
                           "--output-dir", str(tmp_path / "results")], capsys)
    assert (code, out) == (2, "")
    assert err == ("llmcse: error: task 'plain' is of kind 'unscored', which has no evaluator registered "
                   "(llmcse.eval.kinds.register_task_kind registers both sides of a kind); "
                   "kinds with one: sts, transfer, retrieval, geometry, matching\n")
    assert not (tmp_path / "results").exists()


def test_registering_a_taken_kind_fills_neither_registry(monkeypatch):
    from llmcse.data.tasks import TASK_KINDS
    from llmcse.eval.kinds import TASK_EVALUATORS, TaskEvaluator, register_task_kind

    monkeypatch.setitem(TASK_EVALUATORS._entries, "halfdone", TaskEvaluator(print))
    with pytest.raises(ValueError, match="task evaluator 'halfdone' is already registered"):
        register_task_kind("halfdone", folder="halfdone", main_metric="x", discover=list, evaluate=print)
    assert "halfdone" not in TASK_KINDS
    with pytest.raises(ValueError, match="task kind 'sts' is already registered"):
        register_task_kind("sts", folder="sts2", main_metric="x", discover=list, evaluate=print)
    assert TASK_KINDS.get("sts").folder == "sts" and "sts" in TASK_EVALUATORS


def test_a_prefix_without_a_loader_is_a_one_line_error(tmp_path, tiny_data_dir, capsys, monkeypatch):
    from llmcse.utils.modelspec import MODEL_PREFIXES

    monkeypatch.setitem(MODEL_PREFIXES._entries, "bare", "bare:<model>")  # declared below embed, no loader above
    code, out, err = _cli(["-q", "eval", "--model", "bare:all-MiniLM-L6-v2", "--tasks", "toysts",
                           "--data-dir", str(tiny_data_dir)], capsys)
    assert (code, out) == (2, "")
    assert err == ("llmcse: error: model 'bare:all-MiniLM-L6-v2': no embedder loader is registered for the 'bare' "
                   "prefix (llmcse.embed.models.register_model_prefix adds one)\n")


UNKNOWN = [
    (["train", "--recipe", "sup-simcse", "--data", "x.tsv", "--out", "o", "--set", "loss=toy_logistc", "--dry-run"],
     "train.loss: unknown loss 'toy_logistc'. Did you mean 'toy_logistic'? "
     "Valid: hierarchical_triplet, info_nce, toy_logistic"),
    (["train", "--recipe", "ngcse", "--data", "x.jsonl", "--out", "o", "--set", "loss=toy_logistic", "--dry-run"],
     "train.loss: toy_logistic takes triplets data; recipe ngcse gives sts3 data"),
    (["generate", "--seeds", "s.txt", "--out", "o.jsonl", "--llm", "tyo:x"],
     "unknown LLM spec 'tyo:x'. Did you mean 'toy'? Use hf:<path-or-id>, openai:<base-url>#<model>, fake: or toy:"),
    (["eval", "--model", "all-MiniLM-L6-v2", "--tasks", "toymatc"],
     "unknown task 'toymatc' in data dir {data}. Did you mean 'toymatch'? Found: "
     "sts, toymatch, toyretrieval, toysent, toysts, transfer. Groups: sts, transfer."),
]


@pytest.mark.parametrize("argv,message", UNKNOWN, ids=["loss", "loss-data-kind", "llm-prefix", "task"])
def test_an_unknown_name_is_a_one_line_error_listing_the_known_ones(argv, message, tmp_path, tiny_data_dir, capsys,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)  # the relative output paths would land here
    (tiny_data_dir / "matching").mkdir()
    (tiny_data_dir / "matching" / "toymatch.tsv").write_text("sentence1\tsentence2\na\tb\n")
    (tmp_path / "s.txt").write_text("A man is playing a guitar on stage.\n")
    code, out, err = _cli(["-q", *argv, "--data-dir", str(tiny_data_dir)] if argv[0] != "generate" else ["-q", *argv],
                          capsys)
    assert code == 2 and out == ""
    assert err == f"llmcse: error: {message.format(data=tiny_data_dir)}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "s.txt"]  # nothing written
