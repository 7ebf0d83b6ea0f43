"""LoRA (peft) on any sentence-transformers model, through its stock ``add_adapter``; QLoRA
(``lora_4bit``: the frozen base in bitsandbytes NF4 on a CUDA GPU) through the same path.

The PromptEOL paper fine-tunes decoder LLMs this way: the base weights stay frozen, small
low-rank updates on every linear layer are trained. At the end the updates are merged into the
weights, so the saved folder is a plain sentence-transformers model (no peft needed to load
it), or kept as an adapter-only folder (``lora_export = "adapter"``, loads with peft installed).
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def add_lora(model, r: int, alpha: int | None = None, dropout: float = 0.05, target_modules: str = "all-linear") -> None:
    try:
        from peft import LoraConfig, TaskType
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from llmcse.errors import LlmcseError

        raise LlmcseError("LoRA needs peft: pip install 'llmcse[lora]'") from exc
    model.add_adapter(LoraConfig(r=r, lora_alpha=alpha or 2 * r, lora_dropout=dropout,
                                 target_modules=target_modules, task_type=TaskType.FEATURE_EXTRACTION))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("LoRA r=%d: %d trainable parameters of %d (%.2f%%)", r, trainable, total, 100 * trainable / total)


def merge_lora(model) -> int:
    """Fold every LoRA update into its base layer and put the plain layer back; returns how many."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    transformer = model.transformers_model
    merged = 0
    for name, module in list(transformer.named_modules()):
        if isinstance(module, BaseTunerLayer) and hasattr(module, "get_base_layer"):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = transformer.get_submodule(parent_name) if parent_name else transformer
            setattr(parent, child, module.get_base_layer())
            merged += 1
    # transformers' adapter bookkeeping: without it the model saves as a plain checkpoint
    for attr in ("peft_config", "_hf_peft_config_loaded"):
        if hasattr(transformer, attr):
            if attr == "_hf_peft_config_loaded":
                transformer._hf_peft_config_loaded = False
            else:
                delattr(transformer, attr)
    for p in model.parameters():
        p.requires_grad_(True)
    return merged


def merged_full_precision(trained, base: str, r: int, alpha: int | None, dropout: float,
                          max_seq_length: int | None = None):
    """The trained adapter merged into a fresh full-precision copy of ``base``.

    QLoRA trains on 4-bit base weights; merging there would save quantized weights that need
    bitsandbytes (and a GPU) to load. A bf16 base would keep little of the update: a LoRA delta is
    a small fraction of a weight, below bf16's rounding step for much of it. The adapter is small:
    move it onto the base as it was.
    """
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    from llmcse.embed.models import load_embedder

    fresh = load_embedder(base, device="cpu", max_seq_length=max_seq_length)
    add_lora(fresh, r, alpha, dropout)
    state = {k: v.detach().float().cpu() for k, v in get_peft_model_state_dict(trained.transformers_model).items()}
    result = set_peft_model_state_dict(fresh.transformers_model, state)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        from llmcse.errors import LlmcseError

        raise LlmcseError(f"adapter does not fit {base}: unexpected keys {unexpected[:3]}")
    merge_lora(fresh)
    return fresh
