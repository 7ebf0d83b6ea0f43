"""The local transformers back end: batching that shares prompt prefixes, and a cached prefix
that changes nothing but speed."""

from __future__ import annotations

import pytest

from llmcse.llm.base import SamplingParams
from llmcse.llm.hf import MIN_SHARED_PREFIX, batches_by_template, common_prefix


def test_common_prefix_of_token_rows():
    assert common_prefix([[1, 2, 3, 4], [1, 2, 9], [1, 2, 3]]) == [1, 2]
    assert common_prefix([[5, 6]]) == [5, 6]
    assert common_prefix([[1, 2], [3]]) == []


def test_batches_keep_one_template_together_and_sort_by_length():
    system = {"role": "system", "content": "S"}
    demo = [{"role": "user", "content": "d"}, {"role": "assistant", "content": "D"}]
    prompts = [[system, *demo, {"role": "user", "content": "b1"}], [system, {"role": "user", "content": "a1"}],
               [system, *demo, {"role": "user", "content": "b2"}], [system, {"role": "user", "content": "a2"}],
               "plain text prompt"]
    ids = [[0] * 9, [0] * 5, [0] * 7, [0] * 3, [0] * 4]
    assert batches_by_template(prompts, ids, batch_size=8) == [[2, 0], [3, 1], [4]]  # by template, short first
    assert batches_by_template(prompts, ids, batch_size=1) == [[2], [0], [3], [1], [4]]


@pytest.fixture(scope="module")
def smollm2():
    from llmcse.llm.hf import HFGenerator
    return HFGenerator("SmolLM2-135M-Instruct", dtype="float32", batch_size=8)


def test_cached_shared_prefix_gives_the_same_greedy_outputs(smollm2):
    from llmcse.synth.prompts import load_template

    template = load_template("sts3")
    seeds = ["A man is riding a horse along the beach at sunset.", "The council voted.",
             "Heavy rain closed the mountain road for two days last week."]
    prompts = [template.fields[f].messages(s, template.system) for s in seeds for f in template.fields]
    params = SamplingParams(max_new_tokens=12, temperature=0.0)
    smollm2.prefix_cache = False
    plain = smollm2.generate(prompts, params)
    smollm2.prefix_cache = True
    cached = smollm2.generate(prompts, params)
    assert cached == plain
    assert smollm2._prefix_key is not None and len(smollm2._prefix_key) >= 60  # system + demos were cached
    assert len(set(plain)) == len(plain) and all(plain)  # real, distinct generations
    # ... and both equal transformers' own generate(), one prompt at a time (no padding at all)
    tok, model = smollm2.tokenizer, smollm2.model
    for prompt, ours in list(zip(prompts, cached))[::4]:
        enc = tok(smollm2.render(prompt), return_tensors="pt", add_special_tokens=False)
        ref = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
        assert tok.decode(ref[0, enc["input_ids"].shape[1]:], skip_special_tokens=True) == ours


def test_sampling_is_reproducible_and_rows_stop_at_stop_strings(smollm2):
    chats = [[{"role": "user", "content": f"Write two short lines about {w}."}] for w in ("rain", "cats", "bread")]
    params = SamplingParams(max_new_tokens=24, temperature=0.8, top_p=0.9, seed=7)
    first, again = smollm2.generate(chats, params), smollm2.generate(chats, params)
    assert first == again
    other = smollm2.generate(chats, SamplingParams(max_new_tokens=24, temperature=0.8, top_p=0.9, seed=8))
    assert other != first
    n_before = smollm2.stats.completion_tokens
    stopped = smollm2.generate(chats, SamplingParams(max_new_tokens=24, temperature=0.8, top_p=0.9, seed=7, stop=("\n",)))
    assert all("\n" not in s for s in stopped)
    assert smollm2.stats.completion_tokens - n_before <= sum(len(smollm2.tokenizer(s)["input_ids"]) + 2 for s in stopped)


def test_identical_prompts_are_prefilled_once_and_sampled_separately(smollm2):
    doc = [{"role": "user", "content": "Write one search query for: Volcanoes erupt lava and ash."}]
    other = [{"role": "user", "content": "Write one search query for: Bees make honey from nectar."}]
    greedy = SamplingParams(max_new_tokens=10, temperature=0.0)
    alone = smollm2.generate([doc], greedy)[0]
    before = smollm2.stats.prefill_tokens
    outs = smollm2.generate([doc, doc, other, doc], greedy)
    n_doc = len(smollm2.tokenizer(smollm2.render(doc), add_special_tokens=False)["input_ids"])
    n_other = len(smollm2.tokenizer(smollm2.render(other), add_special_tokens=False)["input_ids"])
    shared = len(common_prefix([smollm2.tokenizer(smollm2.render(p), add_special_tokens=False)["input_ids"]
                                for p in (doc, other)]))
    shared = min(shared, n_doc - 1, n_other - 1)
    shared = shared if shared >= MIN_SHARED_PREFIX else 0
    assert smollm2.stats.prefill_tokens - before == n_doc + n_other - 2 * shared  # the 3 copies of doc: run once
    assert outs[0] == outs[1] == outs[3] == alone  # same state, greedy: same text as the prompt alone
    sampled = smollm2.generate([doc] * 4, SamplingParams(max_new_tokens=16, temperature=1.0, seed=3))
    assert len(set(sampled)) > 1  # each copy samples on its own
