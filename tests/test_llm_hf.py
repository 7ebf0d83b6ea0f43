"""The local transformers back end: batching that shares prompt prefixes, and a cached prefix
that changes nothing but speed."""

from __future__ import annotations

import pytest

from llmcse.llm.base import SamplingParams
from llmcse.llm.hf import batches_sharing_prefixes, common_prefix


def test_common_prefix_of_token_rows():
    assert common_prefix([[1, 2, 3, 4], [1, 2, 9], [1, 2, 3]]) == [1, 2]
    assert common_prefix([[5, 6]]) == [5, 6]
    assert common_prefix([[1, 2], [3]]) == []


def test_batches_keep_one_template_together_and_sort_by_length():
    template_a, template_b = list(range(100, 120)), list(range(200, 220))  # 20 shared tokens each
    ids = [template_b + [1] * 5, template_a + [1] * 9, template_a + [2] * 2, template_b + [3], template_a + [4] * 4]
    batches = batches_sharing_prefixes(ids, batch_size=2, min_shared=16)
    assert batches == [[2, 4], [1], [3, 0]]  # a-rows by length (2, 4, 9 tokens), then b-rows (1, 5)
    assert sorted(i for b in batches for i in b) == list(range(5))


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
    assert smollm2._prefix_key is not None and len(smollm2._prefix_key) >= 16  # the cache was really used
    assert len(set(plain)) == len(plain) and all(plain)  # real, distinct generations
