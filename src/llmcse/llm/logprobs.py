"""Token counts and per-token log probabilities of finished completions, for a local hf: back end.

``llmcse serve-llm`` reports these in the OpenAI schema (``usage``, ``logprobs``). The generation
loop returns text only, so the completion is scored afterwards: prompt + completion tokens go
through the model once (teacher forcing) and every completion position's log-softmax gives the
token's log probability and the top-k alternatives. The first position is the model's next-token
distribution after the prompt, exactly what ``HFGenerator.choice_probabilities`` reads for a
yes/no or 0-5 judge; later positions are exact whenever the decoded text re-tokenizes to the
generated tokens (almost always). Log probabilities are the model's own (temperature 1, no top-p),
as OpenAI and vLLM report them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmcse.llm.base import Prompt


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)  # best first

    def openai_chat(self) -> dict:
        """One entry of ``choices[i].logprobs.content`` (chat completions)."""
        return {"token": self.token, "logprob": self.logprob, "bytes": list(self.token.encode("utf-8")),
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for t, lp in self.top]}


def openai_legacy(tokens: list[TokenLogprob]) -> dict:
    """``choices[i].logprobs`` of the legacy completions endpoint."""
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(t.token)
    return {"tokens": [t.token for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [dict(t.top) for t in tokens], "text_offset": offsets}


def count_tokens(generator, text: str) -> int:
    """Tokens of ``text`` under the generator's tokenizer (no special tokens added)."""
    return len(generator.tokenizer(text, add_special_tokens=False)["input_ids"])


def completion_logprobs(generator, prompts: list[Prompt], completions: list[str], top_k: int,
                        batch_size: int = 8) -> list[list[TokenLogprob]]:
    """Per completion token: its log probability and the ``top_k`` most likely tokens there.

    ``generator`` is an ``HFGenerator`` (its ``model``, ``tokenizer``, ``render`` and ``device``).
    """
    import torch

    tok = generator.tokenizer
    prompt_ids = [tok(generator.render(p), add_special_tokens=False)["input_ids"] for p in prompts]
    comp_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in completions]
    results: list[list[TokenLogprob]] = [[] for _ in prompts]
    todo = [i for i, c in enumerate(comp_ids) if c]
    for start in range(0, len(todo), batch_size):
        idx = todo[start:start + batch_size]
        keep = max(len(comp_ids[i]) for i in idx) + 1  # logits at position t predict token t + 1
        logp = _tail_log_probs(generator, [prompt_ids[i] + comp_ids[i] for i in idx], keep)
        for row, i in enumerate(idx):
            n = len(comp_ids[i])
            # the row's completion tokens are its last n; their predictions sit just before them
            lp = logp[row, keep - 1 - n:keep - 1]  # (n, vocab)
            chosen = lp.gather(-1, torch.tensor(comp_ids[i], device=lp.device)[:, None])[:, 0].tolist()
            for j, token_id in enumerate(comp_ids[i]):
                results[i].append(TokenLogprob(tok.decode([token_id]), chosen[j], _top(tok, lp[j], top_k)))
    return results


def greedy_next_token(generator, prompts: list[Prompt], top_k: int, batch_size: int = 8) -> list[tuple[int, TokenLogprob]]:
    """The most likely next token after each prompt (its id and log probabilities), from one forward
    pass: a greedy one-token completion with logprobs (a yes/no or 0-5 judge) needs nothing else."""
    tok = generator.tokenizer
    prompt_ids = [tok(generator.render(p), add_special_tokens=False)["input_ids"] for p in prompts]
    results = []
    for start in range(0, len(prompt_ids), batch_size):
        logp = _tail_log_probs(generator, prompt_ids[start:start + batch_size], 1)[:, 0]  # (rows, vocab)
        for row in logp:
            best = int(row.argmax())
            results.append((best, TokenLogprob(tok.decode([best]), float(row[best]), _top(tok, row, top_k))))
    return results


def _tail_log_probs(generator, rows: list[list[int]], keep: int):
    """Log-softmax over the vocabulary at each row's last ``keep`` positions: (rows, keep, vocab).
    Rows are left-padded with explicit position ids, so padding changes nothing."""
    import torch

    pad = generator.tokenizer.pad_token_id or 0
    width = max(len(r) for r in rows)
    input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=generator.device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=generator.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = generator.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                 logits_to_keep=keep).logits
    return torch.log_softmax(logits.float(), dim=-1)


def _top(tok, logp_row, k: int) -> list[tuple[str, float]]:
    if not k:
        return []
    values, ids = logp_row.topk(k)
    return [(tok.decode([i]), v) for i, v in zip(ids.tolist(), values.tolist())]


def word_logprobs(text: str, top_k: int) -> list[TokenLogprob]:
    """The ``fake:`` back end's stand-in: words as tokens, each certain (log probability 0)."""
    words = [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))] if text else []
    return [TokenLogprob(w, 0.0, [(w, 0.0)] if top_k else []) for w in words]
