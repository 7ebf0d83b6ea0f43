"""Training recipes: which data kind, which loss, which defaults. Small on purpose.

A new recipe is one ``RECIPES.register`` line; its loss must be in ``train.losses.LOSSES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmcse.utils.registry import Registry


@dataclass
class TrainConfig:
    recipe: str = "sup-simcse"
    loss: str | None = None  # None: the recipe's loss; else any LOSSES name that takes the recipe's data kind
    data: str = ""
    base: str = "all-MiniLM-L6-v2"
    out: str = "runs/model"
    pooling: str | None = None  # only for raw transformer bases
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 64  # per device: the in-batch negatives are global batch = this x devices x accumulation
    gradient_accumulation: int = 1
    lr: float = 5e-5  # SimCSE sup: 5e-5 (BERT-base)
    warmup_ratio: float = 0.0
    temperature: float = 0.05
    false_negative_threshold: float | None = None  # multicsr: 0.95
    # whose cosines decide the masking: "precomputed" (the starting model, all texts embedded once
    # before training), "frozen" (a frozen copy run every step), "self" (the model's own, detached)
    false_negative_reference: str = "precomputed"
    beta: float = 1.0  # HT loss weight (ngcse)
    max_seq_length: int = 32  # SimCSE truncates to 32 tokens
    eval_steps: int = 125  # evaluate every this many steps; the best checkpoint is kept
    eval_task: str = "stsb:dev"  # model selection on a dev split only, never on test
    logging_steps: int | None = None  # training-loss points every this many steps; None: as eval_steps (at most 50)
    eval_max_pairs: int | None = None  # sample the dev split (seeded) when evaluating all of it is too slow
    # checkpoints kept on disk while training, in <out>.checkpoints/ beside the model; deleted when the run
    # finishes, except with 0: every checkpoint is kept, also afterwards (llmcse rfd reads the trajectory)
    keep_checkpoints: int = 2
    seed: int = 42
    max_examples: int | None = None  # take the first N rows (same-size comparisons)
    # continue from the newest complete checkpoint in <out>.checkpoints/, only with the settings that made it
    # (refused otherwise, naming the changes; see train/folders.py for the few that may differ)
    resume: bool = False
    lora_r: int = 0  # > 0: train LoRA adapters of this rank instead of all weights (PromptEOL on LLMs)
    lora_alpha: int | None = None  # None: 2 x lora_r
    lora_dropout: float = 0.05
    lora_4bit: bool = False  # QLoRA: the frozen base in 4-bit NF4 (CUDA + bitsandbytes); the export is full precision
    # the frozen base weights under LoRA: "bfloat16" halves their memory and is ~1.4x faster per step on
    # CPUs with bf16 instructions (measured on SmolLM2), slower where bf16 is emulated (AVX2-only CPUs);
    # "auto": bfloat16 on a GPU or a CPU with AMX / AVX512-BF16, else float32 (always float32 without
    # LoRA). The adapters and their optimizer stay float32, and the merged export is float32.
    dtype: str = "auto"
    # recompute activations in the backward pass (same gradients): memory stops growing with batch x
    # length x layers, for one more forward pass per step. None: on under LoRA (the quickstart's step
    # of 16 triplets on SmolLM2: 9.7 GB peak without)
    gradient_checkpointing: bool | None = None
    lora_export: str = "merged"  # merged: plain folder, no peft needed | adapter: adapter-only folder


@dataclass(frozen=True)
class Recipe:
    """A named way to train.

    Attributes:
        data: Training data kind (``train.data.COLUMNS``): how the ``--data`` file is read.
        loss: A ``LOSSES`` name.
        defaults: Deviations from the ``TrainConfig`` defaults (the reason in a comment where registered).
    """

    data: str
    loss: str
    defaults: dict = field(default_factory=dict)


RECIPES: Registry[Recipe] = Registry("training recipe")
RECIPES.register("unsup-simcse", Recipe("unlabeled", "info_nce", {"lr": 3e-5}))  # SimCSE unsup: 3e-5, dropout positives
RECIPES.register("sup-simcse", Recipe("triplets", "info_nce"))
RECIPES.register("synth-nli", Recipe("triplets", "info_nce"))  # LLM-made triplets, same loss as sup-simcse
RECIPES.register("ngcse", Recipe("sts3", "hierarchical_triplet"))
# masking of in-batch false negatives
RECIPES.register("multicsr", Recipe("triplets", "info_nce", {"false_negative_threshold": 0.95}))
