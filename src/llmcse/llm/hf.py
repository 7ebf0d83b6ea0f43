"""Local generation with transformers: batched, left-padded, chat templates, GGUF via conversion."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import time

from llmcse.llm.base import GenerationStats, Prompt, SamplingParams, truncate_at_stop

logger = logging.getLogger(__name__)


class HFGenerator:
    """Generate with a local causal LM.

    Args:
        model: Local folder, hub id, ``.gguf`` file or bundled name (see ``resolve_model_path``).
        device: None = auto (cuda > mps > cpu).
        dtype: ``auto`` (bf16 on CUDA and AMX CPUs: 2.5-3x faster there), ``float32``, ``bfloat16``.
        batch_size: Prompts per ``generate`` call. Batching is where CPU throughput comes from.
        prefix_cache: Compute the keys/values of a prompt prefix that a whole batch shares (system
            prompt + in-context demos: about 70% of a synthesis prompt) once instead of per row.
    """

    def __init__(self, model: str, *, device: str | None = None, dtype: str | None = "auto", batch_size: int = 32,
                 prefix_cache: bool = True):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from llmcse.utils.modelspec import auto_device, resolve_dtype, resolve_model_path

        self.spec = f"hf:{model}"
        self.stats = GenerationStats()
        self.batch_size = batch_size
        self.prefix_cache = prefix_cache
        self._prefix_key: tuple[int, ...] | None = None
        self._prefix_kv = None
        self.device = device or auto_device()
        path = resolve_model_path(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # Left padding: every row's last position is its real last token, so new tokens follow it.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype, self.device)).to(self.device)
        self.model.eval()
        self._torch = torch
        eos = self.model.generation_config.eos_token_id
        self._end_ids = {self.tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}

    def render(self, prompt: Prompt) -> str:
        """A chat becomes text through the model's chat template; a string is used as is."""
        if isinstance(prompt, str):
            return prompt
        if not getattr(self.tokenizer, "chat_template", None):
            # A base model: lay the turns out as plain text.
            return "\n".join(m["content"] for m in prompt) + "\n"
        return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[str]:
        ids = [self.tokenizer(self.render(p), add_special_tokens=False)["input_ids"] for p in prompts]
        outputs: list[str] = [""] * len(ids)
        t0 = time.perf_counter()
        for n_batch, idx in enumerate(batches_by_template(prompts, ids, self.batch_size)):
            rows = [ids[i] for i in idx]
            n_shared = len(common_prefix(rows)) if self.prefix_cache else 0
            n_shared = min(n_shared, min(len(r) for r in rows) - 1)  # every row keeps >= 1 token to feed
            if n_shared < MIN_SHARED_PREFIX:
                n_shared = 0
            seed = None if params.seed is None else params.seed + n_batch
            for i, tokens in zip(idx, self._decode(rows, n_shared, params, seed)):
                self.stats.completion_tokens += len(tokens)
                outputs[i] = truncate_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True), params.stop)
            self.stats.prompt_tokens += sum(len(r) for r in rows)
            self.stats.requests += len(idx)
        self.stats.seconds += time.perf_counter() - t0
        return outputs

    def _decode(self, rows: list[list[int]], n_shared: int, params: SamplingParams, seed: int | None) -> list[list[int]]:
        """New tokens per row, from transformers' ``generate`` (greedy at temperature 0, else
        nucleus sampling), each row ending at an end-of-turn token, a stop string or its budget.

        The prompts are prefilled here and ``generate`` is handed their cache, so that two things
        run once: the prefix the whole batch shares (``_cached_prefix``), and identical prompts
        (N samples of one prompt, e.g. N synthetic queries for one document), whose keys/values
        are then copied per row; each row still samples on its own. ``generate`` runs only each
        row's last prompt token, as its first decoding step.

        llmcse had its own decode loop here (own sampler, finished rows leaving the batch); timed
        against this it was at most 1.12x faster (benchmarks/results/generation.md), too little to
        keep a sampler of our own, so it went."""
        torch = self._torch
        distinct = list(dict.fromkeys(tuple(r) for r in rows))
        input_ids, mask = self._pad([list(r) for r in distinct], n_shared)  # (distinct, width) each
        cache = self._cached_prefix(tuple(rows[0][:n_shared]), len(distinct)) if n_shared else None
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # pads in the middle are skipped
        if input_ids.shape[1] - 1 > n_shared:  # all but the last prompt token; generate() feeds that one
            with torch.no_grad():
                cache = self.model(input_ids=input_ids[:, n_shared:-1], attention_mask=mask[:, :-1],
                                   position_ids=positions[:, n_shared:-1], past_key_values=cache, use_cache=True,
                                   logits_to_keep=1).past_key_values
        self.stats.prefill_tokens += int(mask[:, n_shared:].sum())
        if len(distinct) < len(rows):  # one copy of a prompt's state per row that asked for it
            slot = {r: i for i, r in enumerate(distinct)}
            expand = torch.tensor([slot[tuple(r)] for r in rows], device=self.device)
            input_ids, mask = input_ids[expand], mask[expand]  # (rows, width) each
            if cache is not None:
                cache.batch_select_indices(expand)
        if params.temperature <= 0:
            sampling = {"do_sample": False}
        else:  # top_k off: plain nucleus sampling, as OpenAI-style servers do it
            sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": 0}
        pad = self.tokenizer.pad_token_id
        with torch.no_grad(), self._seeded(seed):
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, past_key_values=cache,
                                      max_new_tokens=params.max_new_tokens, eos_token_id=sorted(self._end_ids),
                                      pad_token_id=pad, stop_strings=list(params.stop) or None,
                                      tokenizer=self.tokenizer, **sampling)  # (rows, width + new)
        new = []
        for row in out[:, input_ids.shape[1]:].tolist():  # rows that finished early are padded
            end = next((j for j, t in enumerate(row) if t in self._end_ids or t == pad), len(row))
            new.append(row[:end])
        return new

    @contextlib.contextmanager
    def _seeded(self, seed: int | None):
        """torch's random numbers start from ``seed`` inside, and the global generator is left as it
        was; without a seed, the global generator is used as is."""
        if seed is None:
            yield
            return
        torch = self._torch
        with torch.random.fork_rng(devices=[] if self.device == "cpu" else None,
                                   device_type=torch.device(self.device).type):
            torch.manual_seed(seed)
            yield

    def _pad(self, rows: list[list[int]], n_shared: int):
        """(batch, len) input ids and mask: shared prefix, then padding, then each row's own tokens.

        With n_shared = 0 this is plain left padding. With a shared prefix the padding sits between
        prefix and suffix: the mask hides it and position ids (cumsum of the mask) skip it, so
        every row sees exactly its own prompt, while the prefix keys/values come from one cache.
        """
        torch = self._torch
        pad = self.tokenizer.pad_token_id
        suffixes = [r[n_shared:] for r in rows]
        width = max(len(s) for s in suffixes)
        prefix = rows[0][:n_shared]
        input_ids = [prefix + [pad] * (width - len(s)) + s for s in suffixes]
        mask = [[1] * n_shared + [0] * (width - len(s)) + [1] * len(s) for s in suffixes]
        return (torch.tensor(input_ids, device=self.device), torch.tensor(mask, device=self.device))

    def _cached_prefix(self, prefix: tuple[int, ...], batch_size: int):
        """Keys/values of a prompt prefix shared by a batch, computed once per prefix, repeated per row."""
        torch = self._torch
        if self._prefix_key != prefix:
            with torch.no_grad():
                out = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True,
                                 logits_to_keep=1)
            self._prefix_key, self._prefix_kv = prefix, out.past_key_values
        cache = copy.deepcopy(self._prefix_kv)  # generate() appends to the cache it is given
        cache.batch_repeat_interleave(batch_size)
        return cache

    def choice_probabilities(self, prompts: list[Prompt], choices: list[str]) -> list[list[float]]:
        """P(next token = each choice's first token), renormalised over the choices: one forward pass.

        Used for LLM scoring (e.g. a 0-5 rating): the expected value over the digits is a much
        steadier score than one sampled digit, and it needs no generation at all.
        """
        torch = self._torch
        choice_ids = [self.tokenizer.encode(c, add_special_tokens=False)[0] for c in choices]
        texts = [self.render(p) for p in prompts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        probs: list[list[float]] = [[] for _ in texts]
        t0 = time.perf_counter()
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True,
                                   add_special_tokens=False).to(self.device)
            with torch.no_grad():
                # only the last position's logits: the LM head over every position would be ~1 GB per batch
                logits = self.model(**batch, logits_to_keep=1).logits[:, -1, :]  # (batch, vocab); left padding: real end last
            p = torch.softmax(logits[:, choice_ids].float(), dim=-1)  # (batch, n_choices)
            for row, i in enumerate(idx):
                probs[i] = p[row].tolist()
            self.stats.prompt_tokens += int(batch["attention_mask"].sum())
            self.stats.requests += len(idx)
        self.stats.seconds += time.perf_counter() - t0
        return probs


# Below this many shared tokens a cached prefix saves less than its bookkeeping costs.
MIN_SHARED_PREFIX = 16


def common_prefix(rows: list[list[int]]) -> list[int]:
    first = rows[0]
    n = len(first)
    for r in rows[1:]:
        n = min(n, len(r))
        for j in range(n):
            if r[j] != first[j]:
                n = j
                break
    return first[:n]


def batches_by_template(prompts: list[Prompt], ids: list[list[int]], batch_size: int) -> list[list[int]]:
    """Row indices in batches: chats with the same earlier turns (system prompt + demos) together,
    so a batch shares a long token prefix; inside a template, similar lengths together, so
    padding stays small."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        key = "" if isinstance(p, str) else json.dumps(p[:-1], sort_keys=True)
        groups.setdefault(key, []).append(i)
    batches = []
    for group in groups.values():
        group.sort(key=lambda i: len(ids[i]))
        batches += [group[s:s + batch_size] for s in range(0, len(group), batch_size)]
    return batches
