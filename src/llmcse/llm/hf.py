"""Local generation with transformers: batched, left-padded, chat templates, GGUF via conversion."""

from __future__ import annotations

import copy
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

        from llmcse.embed.models import auto_device, resolve_dtype, resolve_model_path

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

    def render(self, prompt: Prompt) -> str:
        """A chat becomes text through the model's chat template; a string is used as is."""
        if isinstance(prompt, str):
            return prompt
        if not getattr(self.tokenizer, "chat_template", None):
            # A base model: lay the turns out as plain text.
            return "\n".join(m["content"] for m in prompt) + "\n"
        return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[str]:
        torch = self._torch
        ids = [self.tokenizer(self.render(p), add_special_tokens=False)["input_ids"] for p in prompts]
        outputs: list[str] = [""] * len(ids)
        t0 = time.perf_counter()
        for n_batch, idx in enumerate(batches_sharing_prefixes(ids, self.batch_size, MIN_SHARED_PREFIX)):
            rows = [ids[i] for i in idx]
            n_shared = len(common_prefix(rows)) if self.prefix_cache else 0
            n_shared = min(n_shared, min(len(r) for r in rows) - 1)  # every row keeps >= 1 token to feed
            if n_shared < MIN_SHARED_PREFIX:
                n_shared = 0
            input_ids, attention_mask = self._pad(rows, n_shared)
            kwargs = {}
            if n_shared:
                kwargs["past_key_values"] = self._cached_prefix(tuple(rows[0][:n_shared]), len(rows))
            if params.seed is not None:
                torch.manual_seed(params.seed + n_batch)
            sampling = params.temperature > 0
            with torch.no_grad():
                generated = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    max_new_tokens=params.max_new_tokens,
                    do_sample=sampling,
                    temperature=params.temperature if sampling else None,
                    top_p=params.top_p if sampling else None,
                    top_k=None,
                    pad_token_id=self.tokenizer.pad_token_id,
                    # A row that printed a stop string is done; the batch ends when all rows are.
                    stop_strings=list(params.stop) or None,
                    tokenizer=self.tokenizer,
                    **kwargs,
                )
            new_tokens = generated[:, input_ids.shape[1]:]  # (batch, new)
            for row, i in enumerate(idx):
                tokens = new_tokens[row]
                n_real = int((tokens != self.tokenizer.pad_token_id).sum())
                self.stats.completion_tokens += n_real
                outputs[i] = truncate_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True), params.stop)
            self.stats.prompt_tokens += int(attention_mask.sum())
            self.stats.requests += len(idx)
        self.stats.seconds += time.perf_counter() - t0
        return outputs

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
                logits = self.model(**batch).logits[:, -1, :]  # (batch, vocab): left padding puts the real end last
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


def batches_sharing_prefixes(ids: list[list[int]], batch_size: int, min_shared: int) -> list[list[int]]:
    """Row indices in batches: rows of one prompt template together, similar lengths together.

    Sorting token ids lexicographically brings prompts that share a template prefix next to each
    other; a group is a run whose common prefix with its first row is >= min_shared tokens. Inside
    a group, sorting by length keeps padding small.
    """
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and len(common_prefix([ids[groups[-1][0]], ids[i]])) >= min_shared:
            groups[-1].append(i)
        else:
            groups.append([i])
    batches = []
    for group in groups:
        group.sort(key=lambda i: len(ids[i]))
        batches += [group[s:s + batch_size] for s in range(0, len(group), batch_size)]
    return batches
