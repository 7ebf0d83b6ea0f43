"""Training recipes on the stock Trainer: a short real run saves a plain sentence-transformers folder."""

from __future__ import annotations

import json
import logging
import re
from types import SimpleNamespace

import numpy as np
import pytest

from llmcse.cli import main
from llmcse.errors import DataFormatError
from llmcse.train.data import COLUMNS, read_rows, to_dataset
from llmcse.train.folders import checkpoints_dir, previous_dir


def test_recipe_defaults_and_set_overrides_resolve(capsys):
    assert main(["train", "--recipe", "multicsr", "--data", "x.tsv", "--out", "o", "--set", "max_steps=5",
                 "--set", "lr=1e-4", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["false_negative_threshold"], cfg["max_steps"], cfg["lr"]) == (0.95, 5, 1e-4)
    assert main(["train", "--recipe", "sup-simcse", "--data", "x", "--out", "o", "--set", "epoch=2", "--dry-run"]) == 2
    assert "Did you mean 'epochs'" in capsys.readouterr().err


def test_training_columns_do_not_trip_the_column_order_warning(caplog):
    from sentence_transformers.base.data_collator import BaseDataCollator

    for kind in COLUMNS:
        dataset = to_dataset([tuple(f"text {i}" for i in range(len(COLUMNS[kind])))], kind)
        with caplog.at_level(logging.WARNING):
            BaseDataCollator.maybe_warn_about_column_order(SimpleNamespace(_warned_columns=set()), dataset.column_names)
        assert "usually expected at index" not in caplog.text, kind


def test_generated_records_missing_a_field_name_file_and_line(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"seed": "a", "positive": "b", "intermediate": "c", "negative": "d", "id": "x"}\n')
    assert read_rows(good, "sts3") == [("a", "b", "c", "d")]  # provenance fields are not columns
    path = tmp_path / "gen.jsonl"
    path.write_text('{"seed": "a", "positive": "b", "intermediate": "c", "negative": "d"}\n{"seed": "a", "positive": "b"}\n')
    with pytest.raises(DataFormatError, match=r"gen.jsonl:2: record lacks \['intermediate', 'negative'\]"):
        read_rows(path, "sts3")


def test_short_sup_simcse_run_saves_a_model_that_plain_sentence_transformers_loads(tmp_path, shared_data_dir,
                                                                                  tiny_data_dir):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "model"
    assert main(["-q", "train", "--recipe", "sup-simcse", "--data", str(shared_data_dir / "nli" / "triplets.tsv"),
                 "--out", str(out), "--set", "max_steps=2", "--set", "batch_size=8", "--set", "eval_steps=1",
                 "--set", "max_examples=64", "--set", "eval_task=toysts:dev", "--data-dir", str(tiny_data_dir)]) == 0
    summary = json.loads((out / "llmcse_training.json").read_text())
    assert summary["steps"] == 2 and summary["global_batch"] == 8
    assert summary["eval_task"] == "toysts:dev" and summary["dev_spearman_after"] > 50  # still a working encoder
    assert [e for e in summary["log_history"] if "eval_dev_spearman_cosine" in e]  # dev evaluated during training
    model = SentenceTransformer(str(out), device="cpu")
    vectors = model.encode(["A man plays a guitar.", "A man is playing guitar."], normalize_embeddings=True)
    assert float(np.dot(vectors[0], vectors[1])) > 0.8
    # issue 24: the folder holds the model only; the checkpoints (optimizer state included) were kept
    # beside it while training and deleted at the end (keep_checkpoints=0 keeps them there for RFD)
    assert sorted(p.name for p in out.iterdir()) == [
        "1_Pooling", "2_Normalize", "README.md", "config.json", "config_sentence_transformers.json",
        "llmcse_training.json", "model.safetensors", "modules.json", "sentence_bert_config.json", "tokenizer.json",
        "tokenizer_config.json"]
    assert not checkpoints_dir(out).exists() and not previous_dir(out).exists()
    # the model card names the base, the data (with its provenance), the loss and the dev evaluation
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card
    assert "# all-MiniLM-L6-v2 fine-tuned with llmcse (sup-simcse)" in card
    md5 = summary["data"]["md5"]
    assert summary["data"] == {"file": str(shared_data_dir / "nli" / "triplets.tsv"), "md5": md5, "rows_used": 64}
    assert f"#### triplets.tsv (64 rows, md5 {md5[:8]})" in card
    assert "* Loss: <code>llmcse.train.losses.info_nce.InfoNCELoss</code> with these parameters" in card
    assert "* Dataset: `toysts-dev`" in card
    shown = re.search(r"\| \*\*spearman_cosine\*\* \| \*\*([0-9.]+)\*\* \|", card)  # the final dev score, bold
    assert float(shown.group(1)) == pytest.approx(summary["dev_spearman_after"] / 100, abs=1e-4)


def test_model_selection_on_a_test_split_is_refused(tiny_data_dir):
    from llmcse.errors import LlmcseError
    from llmcse.train.run import dev_evaluator

    with pytest.raises(LlmcseError, match="needs an STS dev split"):
        dev_evaluator("toysts", str(tiny_data_dir))  # default split of toysts is test


def test_rfd_summary_is_the_mean_train_minus_eval_difference():
    from llmcse.eval.rfd import summarize

    rows = [{"train": {"alignment": 0.5, "uniformity": -2.0}, "eval": {"alignment": 0.3, "uniformity": -2.5}},
            {"train": {"alignment": 0.4, "uniformity": -2.2}, "eval": {"alignment": 0.3, "uniformity": -2.4}}]
    assert summarize(rows) == {"rfd_alignment": pytest.approx(0.15), "rfd_uniformity": pytest.approx(0.35)}


def test_rfd_reads_complete_checkpoints_beside_the_run_or_inside_it_for_older_runs(tmp_path):
    from llmcse.errors import LlmcseError
    from llmcse.eval.rfd import checkpoints
    from llmcse.train.folders import COMPLETE

    run = tmp_path / "run"
    for step in (2, 4, 10):
        (checkpoints_dir(run) / f"checkpoint-{step}").mkdir(parents=True)
        if step != 10:  # checkpoint-10's save was cut short
            (checkpoints_dir(run) / f"checkpoint-{step}" / COMPLETE).write_text(f"{step}\n")
    assert [s for s, _ in checkpoints(run)] == [2, 4]
    older = tmp_path / "older"
    for step in (3, 1):
        (older / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
    assert checkpoints(older) == [(1, older / "checkpoints" / "checkpoint-1"), (3, older / "checkpoints" / "checkpoint-3")]
    with pytest.raises(LlmcseError, match=r"no checkpoints in .*none\.checkpoints; train with --set keep_checkpoints=0"):
        checkpoints(tmp_path / "none")


def test_rfd_over_a_real_run_and_before_training(tmp_path, shared_data_dir, tiny_data_dir, capsys):
    """Train 2 steps keeping every checkpoint, then RFD across them; and rank two data sets under one model."""
    out = tmp_path / "model"
    triplets = shared_data_dir / "nli" / "triplets.tsv"
    assert main(["-q", "train", "--recipe", "sup-simcse", "--data", str(triplets), "--out", str(out),
                 "--set", "max_steps=2", "--set", "batch_size=8", "--set", "eval_steps=1", "--set", "keep_checkpoints=0",
                 "--set", "max_examples=64", "--set", "eval_task=toysts:dev", "--data-dir", str(tiny_data_dir)]) == 0
    assert main(["-q", "rfd", "--data", str(triplets), "--model-dir", str(out), "--output-dir", str(tmp_path / "rfd"),
                 "--eval-task", "toysts:dev", "--max-pairs", "32", "--data-dir", str(tiny_data_dir)]) == 0
    run = json.loads((tmp_path / "rfd" / "rfd.json").read_text())["runs"][0]
    assert [c["step"] for c in run["checkpoints"]] == [1, 2] and run["pairs"] == 32
    first = run["checkpoints"][0]
    assert 0 < first["train"]["alignment"] < 2 and -4 < first["train"]["uniformity"] < 0  # unit vectors: bounded
    assert run["rfd_alignment"] == pytest.approx(
        np.mean([c["train"]["alignment"] - c["eval"]["alignment"] for c in run["checkpoints"]]), abs=1e-4)
    assert (tmp_path / "rfd" / "rfd.png").stat().st_size > 10_000
    # an LLM embedder's checkpoints are read faster in bf16, on a sample of the eval sentences
    assert main(["-q", "rfd", "--data", str(triplets), "--model-dir", str(out), "--output-dir", str(tmp_path / "rfd16"),
                 "--eval-task", "toysts:dev", "--max-pairs", "32", "--max-eval-sentences", "4", "--dtype", "bfloat16",
                 "--data-dir", str(tiny_data_dir)]) == 0
    run16 = json.loads((tmp_path / "rfd16" / "rfd.json").read_text())["runs"][0]
    assert run16["dtype"] == "bfloat16" and run16["eval_sentences"] == 4 and run["eval_sentences"] > 4
    assert run16["checkpoints"][0]["train"]["alignment"] == pytest.approx(first["train"]["alignment"], abs=0.02)

    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(f"Sentence number {i} is about the weather in town {i}." for i in range(40)) + "\n")
    assert main(["-q", "rfd", "--model", "all-MiniLM-L6-v2", "--data", str(triplets), "--data", str(sentences),
                 "--output-dir", str(tmp_path / "rank"), "--eval-task", "toysts:dev", "--max-pairs", "32",
                 "--data-dir", str(tiny_data_dir)]) == 0
    ranked = json.loads((tmp_path / "rank" / "rfd.json").read_text())["datasets"]
    by_name = {r["data"].rsplit("/", 1)[1]: r for r in ranked}
    assert by_name["sentences.txt"]["dropout_positives"] and 0 < by_name["sentences.txt"]["train"]["alignment"] < 0.3
    # NLI entailments are looser paraphrases than a dropout copy of the same sentence: harder to fit
    assert ranked[0]["data"].endswith("triplets.tsv")
    assert "RFD alignment" in capsys.readouterr().out


def test_multicsr_run_masks_with_a_precomputed_reference_table(tmp_path, shared_data_dir, tiny_data_dir):
    out = tmp_path / "model"
    assert main(["-q", "train", "--recipe", "multicsr", "--data", str(shared_data_dir / "nli" / "triplets.tsv"),
                 "--out", str(out), "--set", "max_steps=2", "--set", "batch_size=8", "--set", "eval_steps=2",
                 "--set", "max_examples=16", "--set", "false_negative_threshold=0.5",
                 "--set", "eval_task=toysts:dev", "--data-dir", str(tiny_data_dir)]) == 0
    summary = json.loads((out / "llmcse_training.json").read_text())
    assert summary["config"]["false_negative_reference"] == "precomputed"
    assert summary["masked_false_negatives"] > 0  # at cosine > 0.5 some in-batch negatives are masked


def _lora_run(tmp_path, base, data, tiny_data_dir, extra=()):
    out = tmp_path / "lora"
    assert main(["-q", "train", "--recipe", "sup-simcse", "--data", str(data), "--base", str(base), "--out", str(out),
                 "--set", "max_steps=2", "--set", "batch_size=4", "--set", "eval_steps=2", "--set", "max_examples=8",
                 "--set", "lora_r=4", "--set", "lr=1e-3", "--set", "eval_task=toysts:dev",
                 "--data-dir", str(tiny_data_dir), *extra]) == 0
    return out


def test_lora_training_merges_into_a_plain_folder_that_round_trips(tmp_path, shared_data_dir, tiny_data_dir, minilm):
    from sentence_transformers import SentenceTransformer

    out = _lora_run(tmp_path, "all-MiniLM-L6-v2", shared_data_dir / "nli" / "triplets.tsv", tiny_data_dir)
    assert not (out / "adapter_config.json").exists()  # merged: no peft needed to load
    trained = SentenceTransformer(str(out), device="cpu")
    texts = ["A man plays a guitar.", "The council approved the budget."]
    before, after = minilm.encode(texts), trained.encode(texts)
    assert not np.allclose(before, after, atol=1e-4)  # the LoRA update was merged into the weights
    assert np.allclose(after, SentenceTransformer(str(out), device="cpu").encode(texts), atol=1e-6)
    summary = json.loads((out / "llmcse_training.json").read_text())
    assert summary["config"]["lora_r"] == 4


def test_bf16_base_with_checkpointing_trains_lora_like_float32(tmp_path, shared_data_dir, tiny_data_dir, capsys):
    """Issue 21: under LoRA, activation checkpointing is on by default and exact (the same losses as
    without, step after step: the LoRA init is seeded, the recompute replays dropout), and dtype=auto
    keeps float32 where bf16 is emulated. dtype=bfloat16 (frozen base in bf16, adapters float32): the
    float32 run's loss to bf16 precision; full fine-tuning with bf16 weights is refused."""
    from llmcse.utils.modelspec import cpu_has_fast_bf16

    data = shared_data_dir / "nli" / "triplets.tsv"

    def summary(out):
        return json.loads((out / "llmcse_training.json").read_text())

    def loss(out):
        return [e["loss"] for e in summary(out)["log_history"] if "loss" in e]

    # at temperature 0.05 MiniLM's loss on these triplets is ~0.001: nothing to compare; a loss per step
    common = ["--set", "temperature=1.0", "--set", "logging_steps=1", "--set", "dtype=float32"]
    ref = _lora_run(tmp_path / "fp32", "all-MiniLM-L6-v2", data, tiny_data_dir,
                    extra=[*common, "--set", "gradient_checkpointing=false"])
    checkpointed = _lora_run(tmp_path / "gc", "all-MiniLM-L6-v2", data, tiny_data_dir, extra=common)  # the default
    bf16 = _lora_run(tmp_path / "bf16", "all-MiniLM-L6-v2", data, tiny_data_dir,
                     extra=[*common, "--set", "dtype=bfloat16"])
    assert len(loss(ref)) == 2 and loss(ref)[0] > 0.5
    assert summary(ref)["gradient_checkpointing"] is False and summary(checkpointed)["gradient_checkpointing"] is True
    assert loss(checkpointed) == pytest.approx(loss(ref), abs=1e-5)  # recomputed activations, same math
    assert loss(bf16) == pytest.approx(loss(ref), rel=0.02)
    assert summary(bf16)["config"]["dtype"] == "bfloat16" and summary(bf16)["base_dtype"] == "bfloat16"
    # the export of a bf16-trained base is float32: the adapter merged into a fresh float32 copy
    from safetensors import safe_open

    with safe_open(str(bf16 / "model.safetensors"), "pt") as weights:
        assert {str(weights.get_slice(k).get_dtype()) for k in weights.keys()} == {"F32"}
    auto = _lora_run(tmp_path / "auto", "all-MiniLM-L6-v2", data, tiny_data_dir, extra=["--set", "max_steps=1"])
    assert summary(auto)["base_dtype"] == ("bfloat16" if cpu_has_fast_bf16() else "float32")
    code = main(["-q", "train", "--recipe", "sup-simcse", "--data", str(data), "--out", str(tmp_path / "full"),
                 "--set", "dtype=bfloat16"])
    assert code == 2 and "set lora_r too" in capsys.readouterr().err


def test_an_adapter_moved_onto_a_fresh_base_merges_to_the_same_model(minilm):
    """The QLoRA export path: the adapter trained on a (4-bit) base is merged into a fresh
    full-precision copy. Checked here without quantization: same embeddings as merging in place."""
    import copy

    import torch

    from llmcse.train.lora import add_lora, merge_lora, merged_full_precision

    trained = copy.deepcopy(minilm)
    add_lora(trained, 4, None, 0.0)
    with torch.no_grad():  # a made-up "trained" adapter: LoRA B starts at zero, which would merge to nothing
        for name, p in trained.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    moved = merged_full_precision(trained, "all-MiniLM-L6-v2", 4, None, 0.0)
    merge_lora(trained)
    texts = ["A man plays a guitar.", "The council approved the budget."]
    assert np.allclose(moved.encode(texts), trained.encode(texts), atol=1e-5)
    assert not np.allclose(moved.encode(texts), minilm.encode(texts), atol=1e-3)


def test_qlora_on_a_machine_without_cuda_is_a_clear_error(tmp_path, shared_data_dir, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: 4-bit loading would proceed")
    code = main(["-q", "train", "--recipe", "sup-simcse", "--data", str(shared_data_dir / "nli" / "triplets.tsv"),
                 "--out", str(tmp_path / "q"), "--set", "lora_r=8", "--set", "lora_4bit=true"])
    assert code == 2 and "needs a CUDA GPU" in capsys.readouterr().err
    with pytest.raises(Exception, match="set lora_r too"):
        from llmcse.train.recipes import TrainConfig
        from llmcse.train.run import run_training

        run_training(TrainConfig(data=str(shared_data_dir / "nli" / "triplets.tsv"), out=str(tmp_path / "q2"), lora_4bit=True))


@pytest.mark.slow
def test_prompteol_smollm2_with_lora_round_trips(tmp_path, shared_data_dir, tiny_data_dir):
    """Issue #6: PromptEOL + contrastive LoRA on the bundled decoder; the result loads with plain ST."""
    from sentence_transformers import SentenceTransformer

    base = tmp_path / "pe"
    assert main(["-q", "prompteol", "--base", "SmolLM2-135M-Instruct", "--out", str(base), "--dtype", "float32"]) == 0
    out = _lora_run(tmp_path, base, shared_data_dir / "nli" / "triplets.tsv", tiny_data_dir,
                    extra=["--set", "max_seq_length=64"])
    texts = ["A man plays a guitar.", "The council approved the budget."]
    original = SentenceTransformer(str(base), device="cpu").encode(texts)
    trained = SentenceTransformer(str(out), device="cpu")
    after = trained.encode(texts)
    assert not np.allclose(original, after, atol=1e-4)
    assert np.allclose(after, SentenceTransformer(str(out), device="cpu").encode(texts), atol=1e-5)
    assert trained[1].get_config_dict()["pooling_mode"] == "lasttoken"  # still PromptEOL pooling


def test_training_resumes_from_its_last_checkpoint(tmp_path, shared_data_dir, tiny_data_dir, caplog):
    """A run stopped after its step-2 checkpoint, resumed with the same settings, ends where the
    uninterrupted run ends (issue 20 case 6: a resume with other settings is refused, see tests/faults)."""
    import shutil

    out = tmp_path / "model"
    args = ["-q", "train", "--recipe", "sup-simcse", "--data", str(shared_data_dir / "nli" / "triplets.tsv"),
            "--out", str(out), "--set", "batch_size=4", "--set", "eval_steps=2", "--set", "keep_checkpoints=0",
            "--set", "max_examples=32", "--set", "eval_task=toysts:dev", "--set", "max_steps=4",
            "--data-dir", str(tiny_data_dir)]
    assert main(args) == 0
    uninterrupted = json.loads((out / "llmcse_training.json").read_text())
    assert sorted(p.name for p in checkpoints_dir(out).glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    shutil.rmtree(checkpoints_dir(out) / "checkpoint-4")  # as if stopped between the two saves
    shutil.rmtree(out)
    caplog.set_level("INFO", logger="llmcse.train.run")
    assert main(args[1:] + ["--set", "resume=true"]) == 0
    assert any(r.getMessage() == f"resuming from {checkpoints_dir(out) / 'checkpoint-2'}" for r in caplog.records)
    summary = json.loads((out / "llmcse_training.json").read_text())
    assert summary["steps"] == 4
    losses = [e["loss"] for e in summary["log_history"] if "loss" in e]
    # step 2's log came with the checkpoint's state; step 4 is computed again, the same as before
    assert losses == pytest.approx([e["loss"] for e in uninterrupted["log_history"] if "loss" in e], rel=1e-5)


def test_model_card_says_where_generated_data_came_from(tmp_path, tiny_data_dir):
    """Records of llmcse generate + filter: the card's data set line names the generator, its prompt
    and the generation and filter counts (from the records and the summaries beside them)."""
    from llmcse.llm import FakeLLM
    from llmcse.synth.filter import FilterConfig, run_filter
    from llmcse.synth.generate import GenerateConfig, run_generate

    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(f"The council of town number {i} voted for a new library today." for i in range(12)) + "\n")
    generated, kept = tmp_path / "gen.jsonl", tmp_path / "kept.jsonl"
    run_generate(GenerateConfig(recipe="nli", seeds=str(seeds), out=str(generated), llm="fake:"), llm=FakeLLM(),
                 show_progress_bar=False)
    # cheap checks only; the fake LLM reverses words, so full word overlap is expected here
    report = run_filter(FilterConfig(input=str(generated), out=str(kept), llm="", max_positive_overlap=1.01))
    out = tmp_path / "model"
    assert main(["-q", "train", "--recipe", "synth-nli", "--data", str(kept), "--out", str(out),
                 "--set", "max_steps=1", "--set", "batch_size=4", "--set", "eval_steps=1", "--set", "max_examples=8",
                 "--set", "eval_task=toysts:dev", "--data-dir", str(tiny_data_dir)]) == 0
    data = json.loads((out / "llmcse_training.json").read_text())["data"]
    prompt = json.loads(kept.read_text(encoding="utf-8").splitlines()[0])
    writer = f"fake: (prompt {prompt['prompt_id']} v{prompt['prompt_version']})"
    assert data["generated_by"] == {writer: 8} and data["filtered_by"] == {"cheap checks only": 8}
    assert data["generate_summary"]["kept"] == 12 and data["filter_report"]["kept"] == report["kept"]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert (f"#### kept.jsonl (8 rows, md5 {data['md5'][:8]}; generated by {writer}: 8; generation kept 12 of 12 "
            f"seeds; filter kept {report['kept']} of 12)") in card


def test_checkpointing_arguments_use_the_name_this_transformers_has():
    import dataclasses

    from llmcse.train.run import checkpointing_args

    @dataclasses.dataclass
    class Old:
        gradient_checkpointing: bool = False
        gradient_checkpointing_kwargs: dict | None = None

    @dataclasses.dataclass
    class New(Old):
        activation_checkpointing: bool | None = None
        activation_checkpointing_kwargs: dict | None = None

    assert checkpointing_args(Old, True) == {"gradient_checkpointing": True,
                                             "gradient_checkpointing_kwargs": {"use_reentrant": False}}
    assert checkpointing_args(New, True) == {"activation_checkpointing": True,
                                             "activation_checkpointing_kwargs": {"use_reentrant": False}}
    assert checkpointing_args(New, False) == {}


def test_warmup_arguments_use_the_name_this_transformers_has():
    import dataclasses

    from llmcse.train.run import warmup_args

    @dataclasses.dataclass
    class V4:  # warmup_steps counts steps; the fraction goes in warmup_ratio
        warmup_steps: int = 0
        warmup_ratio: float = 0.0

    @dataclasses.dataclass
    class V5(V4):  # warmup_steps below 1 is the fraction; warmup_ratio deprecated
        warmup_steps: float = 0

    assert warmup_args(V4, 0.1) == {"warmup_ratio": 0.1}
    assert warmup_args(V5, 0.1) == {"warmup_steps": 0.1}
    assert warmup_args(V5, 0.0) == {}  # no warmup: pass nothing, so no deprecation warning


def test_lora_runs_checkpoint_by_default_and_pick_the_base_dtype_by_this_cpu():
    import torch

    from llmcse.train.recipes import TrainConfig
    from llmcse.train.run import base_dtype, checkpointing_on
    from llmcse.utils.modelspec import cpu_has_fast_bf16, resolve_dtype

    assert checkpointing_on(TrainConfig(lora_r=8)) and not checkpointing_on(TrainConfig())  # full fine-tuning: off
    assert not checkpointing_on(TrainConfig(lora_r=8, gradient_checkpointing=False))  # a setting wins
    assert checkpointing_on(TrainConfig(gradient_checkpointing=True))
    assert base_dtype(TrainConfig()) is None  # auto without LoRA: float32 master weights
    assert base_dtype(TrainConfig(lora_r=8)) == "auto" and base_dtype(TrainConfig(lora_r=8, dtype="float32")) is None
    # auto: bf16 only where the CPU computes it natively (this machine: an AVX2-only EPYC, so float32)
    assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32)


def test_the_card_links_the_weights_a_prompteol_base_starts_from():
    from llmcse.train.card import base_hub_id

    assert base_hub_id("prompteol:SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_hub_id("all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_hub_id("prompteol:Qwen/Qwen2-0.5B") == "Qwen/Qwen2-0.5B"
    assert base_hub_id("/no/such/local/folder") is None


def test_trimming_the_heap_gives_freed_tensor_memory_back(tmp_path):
    """glibc keeps freed blocks below its mmap threshold in the heap (resident); trim_heap returns them.
    The threshold is raised first, as a training step's first large free raises it."""
    import os
    import platform

    import torch

    from llmcse.utils.memory import trim_heap

    if platform.libc_ver()[0] != "glibc":
        assert trim_heap() is False
        return

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    big = torch.ones(4 * 2**20)
    del big  # a freed 16 MB mmap block raises glibc's threshold to 16 MB
    blocks, pins = [], []
    for _ in range(100):  # 100 x 1 MB from the heap, each followed by a small live block that pins it there
        blocks.append(torch.ones(2**18))
        pins.append(torch.ones(64))
    before = rss_mb()
    del blocks
    after_free = rss_mb()
    assert trim_heap() is True
    after_trim = rss_mb()
    assert before - after_free < 20  # freed, but still resident
    assert after_free - after_trim > 60, (before, after_free, after_trim)
    del pins
