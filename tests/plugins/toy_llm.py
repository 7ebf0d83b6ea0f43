"""A toy LLM back end, spec ``toy:``: it answers "Toy <first word of the instruction> <seed>" and
counts the prompts it answered."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmcse.llm import LLM_BACKENDS, LLMBackend
from llmcse.llm.base import GenerationStats, Prompt, SamplingParams


@dataclass
class ToyLLM:
    spec: str
    stats: GenerationStats = field(default_factory=GenerationStats)
    answered = 0  # prompts answered by every ToyLLM (class-wide)

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[str]:
        outs = []
        for prompt in prompts:
            text = prompt if isinstance(prompt, str) else prompt[-1]["content"]  # "Paraphrase: <seed>"
            instruction, _, seed = text.partition(": ")
            outs.append(f"Toy {instruction.split()[0].lower()} {seed}")
            ToyLLM.answered += 1
            self.stats.requests += 1
        return outs


LLM_BACKENDS.register("toy", LLMBackend(ToyLLM, "toy:", parse=lambda rest, spec: {"spec": spec}))
