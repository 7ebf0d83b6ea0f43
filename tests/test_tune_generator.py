"""llmcse tune-generator: LoRA SFT of a causal LM on (prompt, completion) pairs, and the
self-instruct pairs built from an expansion run. Real model: the bundled SmolLM2-135M-Instruct."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

WORDS = ["apple", "river", "stone", "cloud", "tiger", "piano", "window", "garden", "rocket", "candle", "forest",
         "bridge", "silver", "ocean", "pencil", "dragon"]


def _pairs_file(path: Path, n: int = 16) -> Path:
    """Word -> "WORD drow": a pattern SmolLM2 does not follow untuned. Every other prompt is a plain
    string (one user turn), the others chat messages with a system turn."""
    lines = []
    for i, w in enumerate(WORDS[:n]):
        prompt = f"Word: {w}" if i % 2 else [{"role": "system", "content": "Answer in the pattern."},
                                             {"role": "user", "content": f"Word: {w}"}]
        lines.append(json.dumps({"prompt": prompt, "completion": f"{w.upper()} {w[::-1]}"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from llmcse.utils.modelspec import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("SmolLM2-135M-Instruct"))


def test_only_completion_tokens_are_labelled_and_the_loss_equals_the_models_own(smollm2_tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from llmcse.utils.modelspec import resolve_model_path
    from llmcse.llm.hf import HFGenerator
    from llmcse.train.tune_generator import IGNORE_INDEX, PadCollator, completion_loss, tokenize_pair

    tok = smollm2_tokenizer
    prompt = [{"role": "user", "content": "Word: apple"}]
    example = tokenize_pair(tok, prompt, "APPLE elppa")
    n_prompt = sum(1 for t in example["labels"] if t == IGNORE_INDEX)
    # the prompt part is exactly what the hf back end feeds the model at generation time
    rendered = HFGenerator.render(type("G", (), {"tokenizer": tok})(), prompt)
    assert tok.decode(example["input_ids"][:n_prompt]) == rendered
    assert tok.decode(example["labels"][n_prompt:]) == "APPLE elppa<|im_end|>\n"  # the model learns to stop
    # a string prompt is one user turn
    assert tokenize_pair(tok, "Word: apple", "APPLE elppa") == example
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path("SmolLM2-135M-Instruct")).eval()
    longer = tokenize_pair(tok, "Word: a much longer prompt than the other one", "X")
    batch = PadCollator(tok.pad_token_id)([example, longer])
    n = len(example["input_ids"])  # right padding: masked, and out of the loss
    assert batch["attention_mask"][0, n:].sum() == 0 and (batch["labels"][0, n:] == IGNORE_INDEX).all()
    assert batch["input_ids"].shape == (2, len(longer["input_ids"]))
    with torch.no_grad():
        ours = completion_loss(model, batch)
        theirs = model(**batch).loss
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-4) and 0 < ours.item() < 20


def test_bad_pairs_name_file_and_line_and_exit_2(tmp_path, capsys):
    from llmcse.cli import main

    cases = {'{"prompt": "x"}': "'completion' must be a non-empty string",
             '{"prompt": [{"role": "user"}], "completion": "y"}': "need string 'role' and 'content'",
             '{"prompt": 3, "completion": "y"}': "'prompt' must be a string or a non-empty list",
             "not json": "invalid JSON"}
    for line, message in cases.items():
        data = tmp_path / "bad.jsonl"
        data.write_text('{"prompt": "ok", "completion": "ok"}\n' + line + "\n")
        assert main(["-q", "tune-generator", "--data", str(data), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert f"{data}:2: " in err and message in err, err
    assert main(["-q", "tune-generator", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "training pairs not found" in capsys.readouterr().err
    data.write_text('{"prompt": "ok", "completion": "ok"}\n')
    before = _md5(data)
    assert main(["-q", "tune-generator", "--data", str(data), "--out", str(data)]) == 2  # never over the data
    assert "is a file; tune-generator writes a model folder there" in capsys.readouterr().err and _md5(data) == before
    for option, value, message in [("--lora-r", "0", "give r >= 1"), ("--batch-size", "0", "batch-size must be >= 1"),
                                   ("--epochs", "0", "give --epochs > 0 or --max-steps > 0")]:
        assert main(["-q", "tune-generator", "--data", str(data), "--out", str(tmp_path / "o"), option, value]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_tune_stop_resume_merge_and_generate_with_hf(tmp_path, capsys):
    """Smoke: 2 steps, stop; the same command with --max-steps 3 continues from checkpoint-2 (1
    step more); the merged folder is a plain transformers model that hf: loads and generates with,
    and holds the model only (issue 24: the checkpoints lie beside it and are deleted at the end)."""
    from transformers import AutoModelForCausalLM

    from llmcse.cli import main
    from llmcse.llm import load_llm
    from llmcse.llm.base import SamplingParams

    data = _pairs_file(tmp_path / "pairs.jsonl", n=4)
    before = _md5(data)
    out, beside = tmp_path / "gen", tmp_path / "gen.checkpoints"
    common = ["-q", "tune-generator", "--data", str(data), "--out", str(out), "--batch-size", "2", "--max-length", "48",
              "--lora-r", "4", "--save-steps", "1", "--logging-steps", "1"]
    keep_all = ["--keep-checkpoints", "0"]  # every checkpoint stays after the end: a longer run can continue
    assert main(common + keep_all + ["--max-steps", "2"]) == 0
    first = json.loads((out / "tune_generator.json").read_text())
    assert first["steps"] == 2 and first["steps_this_run"] == 2 and first["resumed_from"] is None
    assert [e["step"] for e in first["loss_history"]] == [1, 2] and first["examples"] == 4
    assert first["tokens_seen"] > 0 and first["completion_tokens_per_epoch"] > 0
    assert sorted(p.name for p in beside.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert (beside / "checkpoint-2" / "optimizer.pt").is_file() and first["checkpoints"] == str(beside)
    assert not (out / "checkpoints").exists()
    # changed settings are refused rather than mixed into the old checkpoints
    assert main(common + ["--max-steps", "4", "--lr", "1e-3"]) == 2
    assert "holds checkpoints of other settings (lr changed)" in capsys.readouterr().err
    # an older llmcse kept them inside the model folder: they move beside it and still resume; with the
    # default --keep-checkpoints they are deleted once the model is saved
    beside.rename(out / "checkpoints")
    assert main(common + ["--max-steps", "3"]) == 0
    second = json.loads((out / "tune_generator.json").read_text())
    assert second["resumed_from"] == str(beside / "checkpoint-2") and second["steps"] == 3
    assert second["steps_this_run"] == 1 and second["checkpoints"] is None
    assert [e["step"] for e in second["loss_history"]] == [1, 2, 3]  # the earlier steps' log came with the checkpoint
    printed = capsys.readouterr().out
    assert "resumed at step 2" in printed and f"--llm hf:{out}" in printed
    assert not beside.exists() and not (out / "checkpoints").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(("checkpoint-", "optimizer", "scheduler", "rng_state"))]
    # a checkpoints folder holding someone else's files is refused (it would be deleted at the end)
    beside.mkdir()
    (beside / "notes.txt").write_text("mine")
    assert main(common + ["--max-steps", "4"]) == 2
    assert "holds files tune-generator did not write (notes.txt)" in capsys.readouterr().err
    assert (beside / "notes.txt").read_text() == "mine"
    # a plain transformers folder: no adapter files, loads without peft, keeps the chat template
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert (out / "chat_template.jinja").is_file() or "chat_template" in (out / "tokenizer_config.json").read_text()
    plain = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in name for name, _ in plain.named_parameters())
    llm = load_llm(f"hf:{out}", dtype="float32")
    texts = llm.generate([[{"role": "user", "content": "Word: apple"}]], SamplingParams(max_new_tokens=8, temperature=0))
    assert len(texts) == 1 and texts[0].strip()
    assert _md5(data) == before


@pytest.mark.slow
def test_loss_falls_on_a_tiny_set_and_the_tuned_model_learns_the_pattern(tmp_path):
    """16 pairs, 24 steps (6 epochs): 70 s of CPU; 9 min wall on a 2-core machine shared by 8 jobs."""
    from llmcse.llm import load_llm
    from llmcse.llm.base import SamplingParams
    from llmcse.train.tune_generator import TuneConfig, tune_generator

    data = _pairs_file(tmp_path / "pairs.jsonl")
    r = tune_generator(TuneConfig(data=str(data), out=str(tmp_path / "gen"), max_steps=24, batch_size=4, lr=2e-3,
                                  lora_r=8, max_length=64, logging_steps=4, save_steps=100), show_progress_bar=False)
    losses = [e["loss"] for e in r["loss_history"]]
    assert r["steps"] == 24 and r["examples"] == 16 and len(losses) == 7  # step 1, then every 4
    assert losses[-1] < 0.3 * losses[0], losses
    llm = load_llm(f"hf:{tmp_path / 'gen'}", dtype="float32")
    outs = llm.generate([[{"role": "user", "content": f"Word: {w}"}] for w in WORDS],
                        SamplingParams(max_new_tokens=8, temperature=0))
    assert sum(o.startswith(w.upper()) for o, w in zip(outs, WORDS)) >= 12, outs


# ------------------------------------------------------------------------------ self-instruct pairs


class RecordingLLM:
    """fake: back end that remembers every prompt it was given."""

    def __init__(self):
        from llmcse.llm.base import FakeLLM

        self.inner, self.prompts = FakeLLM(responder=self.respond), []
        self.spec, self.stats = "fake:", self.inner.stats

    @staticmethod
    def respond(text: str, call: int) -> str:
        if text.startswith("List the main keywords"):
            return "lava, ash, volcano"
        return f"query {call} about {text.split()[-1]}"

    def generate(self, prompts, params):
        self.prompts += prompts
        return self.inner.generate(prompts, params)


def test_self_instruct_pairs_rebuild_the_exact_prompts_with_the_kept_texts(tmp_path, capsys):
    from llmcse.cli import main
    from llmcse.synth.expand import ExpandConfig, run_expand

    corpus = tmp_path / "corpus.jsonl"
    docs = {"a": "Volcanoes erupt lava and ash. " * 40, "b": "Frogs live in rain forests.", "c": ""}
    corpus.write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items()))
    exp = tmp_path / "exp.jsonl"
    llm = RecordingLLM()
    run_expand(ExpandConfig(corpus=str(corpus), out=str(exp), queries=2, keywords=3, max_doc_tokens=32),
               llm=llm, show_progress_bar=False)
    raw = {r["_id"]: r for r in map(json.loads, exp.read_text().splitlines())}
    kept = tmp_path / "exp.rt.jsonl"  # as filter-expansions writes it: one query of "a" dropped, "b" lost its keywords
    kept.write_text(json.dumps({"_id": "a", "queries": raw["a"]["queries"][:1], "keywords": raw["a"]["keywords"]}) + "\n"
                    + json.dumps({"_id": "b", "queries": raw["b"]["queries"], "keywords": []}) + "\n")
    inputs = {p: _md5(p) for p in (corpus, exp, kept)}
    out = tmp_path / "pairs.jsonl"
    assert main(["-q", "self-instruct-pairs", "--corpus", str(corpus), "--expansions", str(exp), "--kept", str(kept),
                 "--out", str(out)]) == 0
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(p["_id"], p["field"]) for p in pairs] == [("a", "query"), ("a", "keywords"), ("b", "query"), ("b", "query")]
    assert pairs[0]["completion"] == raw["a"]["queries"][0] and pairs[1]["completion"] == "lava, ash, volcano"
    # every prompt is one the generator really received (truncation to 32 tokens included)
    seen = [json.dumps(p, sort_keys=True) for p in llm.prompts]
    assert all(json.dumps(p["prompt"], sort_keys=True) in seen for p in pairs)
    assert pairs[0]["prompt"][-1]["content"].endswith(" ...") and len(pairs[0]["prompt"]) == 6  # system, 2 demos, doc
    report = json.loads((tmp_path / "pairs.report.json").read_text())
    assert report["query_pairs"] == 3 and report["keyword_pairs"] == 1 and report["max_doc_tokens"] == 32
    assert "4 training pairs (3 queries, 1 keyword lists)" in capsys.readouterr().out
    # without demos: system + the document only; the output may not overwrite an input
    assert main(["-q", "self-instruct-pairs", "--corpus", str(corpus), "--expansions", str(exp), "--out", str(out),
                 "--no-demos", "--no-keywords"]) == 0
    short = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(short) == 4 and all(len(p["prompt"]) == 2 for p in short)  # raw file: both queries of a and b
    assert main(["-q", "self-instruct-pairs", "--corpus", str(corpus), "--expansions", str(exp), "--kept", str(kept),
                 "--out", str(kept)]) == 2
    assert "is one of the input files" in capsys.readouterr().err
    assert {p: _md5(p) for p in inputs} == inputs


def test_self_instruct_pairs_refuse_another_template_than_the_expansion_used(tmp_path, capsys):
    from llmcse.cli import main

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "a", "title": "", "text": "Frogs."}) + "\n")
    exp = tmp_path / "exp.jsonl"
    exp.write_text(json.dumps({"_id": "a", "queries": ["frogs"], "keywords": [], "prompt_id": "mine",
                               "prompt_version": 3}) + "\n")
    assert main(["-q", "self-instruct-pairs", "--corpus", str(corpus), "--expansions", str(exp),
                 "--out", str(tmp_path / "p.jsonl")]) == 2
    assert "generated with template(s) [('mine', 3)], not expand-chat v1" in capsys.readouterr().err


def test_record_pairs_teach_the_prompts_generate_sends_from_a_seeded_sample_of_human_triplets(tmp_path, capsys):
    """Issue 23's seeded generator: human triplets -> (generate's chat for the seed -> entailment /
    contradiction); which rows were used is in the report; SNLI's tokenized text is detokenized."""
    from llmcse.cli import main
    from llmcse.synth.generate import GenerateConfig, run_generate

    rows = [("A man is n't playing a guitar .", "A man plays .", "A woman sings ."),
            ("Two kids ( twins ) wash their hands .", "Kids wash .", "Kids sleep ."),
            ("The dog 's ball is red , not blue .", "A ball is red .", "The ball is green ."),
            ("People walk outside .", "Someone walks .", "Nobody moves .")]
    tsv = tmp_path / "triplets.tsv"
    tsv.write_text("sent0\tsent1\thard_neg\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    assert main(["-q", "record-pairs", "--records", str(tsv), "--sample", "3", "--seed", "1", "--out", str(out)]) == 0
    assert "6 training pairs from 3 records (nli, prompts of nli-chat v1)" in capsys.readouterr().out
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    report = json.loads((tmp_path / "pairs.report.json").read_text())
    used = [int(s.split(":")[1]) - 2 for s in report["sources"]]  # data rows start on line 2
    assert len(used) == 3 and report["sample_seed"] == 1 and [p["source"] for p in pairs[::2]] == report["sources"]
    assert [(p["field"], p["completion"]) for p in pairs[:2]] == [("positive", rows[used[0]][1].replace(" .", ".")),
                                                                   ("negative", rows[used[0]][2].replace(" .", "."))]
    seeds = {p["prompt"][-1]["content"].split(": ", 1)[1] for p in pairs}
    assert "A man isn't playing a guitar." in seeds or "Two kids (twins) wash their hands." in seeds
    assert "The dog's ball is red, not blue." in seeds or "People walk outside." in seeds
    # the prompts are exactly the chats generate sends for those seeds (system turn and demos included)
    llm = RecordingLLM()
    seed_file = tmp_path / "seeds.txt"
    seed_file.write_text("".join(s + "\n" for s in sorted(seeds)), encoding="utf-8")
    run_generate(GenerateConfig(recipe="nli", seeds=str(seed_file), out=str(tmp_path / "gen.jsonl"), min_seed_words=1),
                 llm=llm, show_progress_bar=False)
    sent = {json.dumps(p, sort_keys=True) for p in llm.prompts}
    assert all(json.dumps(p["prompt"], sort_keys=True) in sent for p in pairs)
    # the same sample again; generated records as input: a missing field is counted, a bad line named
    assert main(["-q", "record-pairs", "--records", str(tsv), "--sample", "3", "--seed", "1",
                 "--out", str(tmp_path / "again.jsonl")]) == 0
    assert (tmp_path / "again.jsonl").read_text() == out.read_text()
    records = tmp_path / "kept.jsonl"
    records.write_text(json.dumps({"seed": "A cat.", "positive": "A feline.", "negative": "A dog."}) + "\n"
                       + json.dumps({"seed": "Rain.", "positive": "It rains."}) + "\n")
    assert main(["-q", "record-pairs", "--records", str(records), "--out", str(out), "--no-demos"]) == 0
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(pairs) == 3 and all(len(p["prompt"]) == 2 for p in pairs)  # system + seed, no demo turns
    assert json.loads((tmp_path / "pairs.report.json").read_text())["missing_fields"] == {"negative": 1}
    records.write_text(json.dumps({"positive": "no seed"}) + "\n")
    assert main(["-q", "record-pairs", "--records", str(records), "--out", str(out)]) == 2
    assert "kept.jsonl:1" in capsys.readouterr().err
