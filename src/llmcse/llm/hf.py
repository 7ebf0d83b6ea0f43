"""Local generation with transformers: batched, left-padded, chat templates, GGUF via conversion."""

from __future__ import annotations

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
    """

    def __init__(self, model: str, *, device: str | None = None, dtype: str | None = "auto", batch_size: int = 32):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from llmcse.embed.models import auto_device, resolve_dtype, resolve_model_path

        self.spec = f"hf:{model}"
        self.stats = GenerationStats()
        self.batch_size = batch_size
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
        texts = [self.render(p) for p in prompts]
        # Similar lengths in one batch waste less compute on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        outputs: list[str] = [""] * len(texts)
        t0 = time.perf_counter()
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True,
                                   add_special_tokens=False).to(self.device)
            if params.seed is not None:
                torch.manual_seed(params.seed + start)
            sampling = params.temperature > 0
            with torch.no_grad():
                generated = self.model.generate(
                    **batch,
                    max_new_tokens=params.max_new_tokens,
                    do_sample=sampling,
                    temperature=params.temperature if sampling else None,
                    top_p=params.top_p if sampling else None,
                    top_k=None,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new_tokens = generated[:, batch["input_ids"].shape[1]:]  # (batch, new)
            for row, i in enumerate(idx):
                tokens = new_tokens[row]
                n_real = int((tokens != self.tokenizer.pad_token_id).sum())
                self.stats.completion_tokens += n_real
                outputs[i] = truncate_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True), params.stop)
            self.stats.prompt_tokens += int(batch["attention_mask"].sum())
            self.stats.requests += len(idx)
        self.stats.seconds += time.perf_counter() - t0
        return outputs

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
