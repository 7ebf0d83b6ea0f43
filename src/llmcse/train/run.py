"""``llmcse train``: a recipe on the stock SentenceTransformerTrainer, best STS-B dev checkpoint kept,
saved as a plain sentence-transformers folder."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from llmcse.errors import LlmcseError, UnknownNameError
from llmcse.train.data import read_rows, to_dataset
from llmcse.train.recipes import RECIPES, TrainConfig
from llmcse.utils.io import atomic_write_json, config_hash

logger = logging.getLogger(__name__)


def apply_recipe_defaults(cfg: TrainConfig, explicitly_set: set[str]) -> TrainConfig:
    """Fill the recipe's deviations for fields the user did not set."""
    deviations = _registered(RECIPES, cfg.recipe, "recipe").defaults
    return dataclasses.replace(cfg, **{k: v for k, v in deviations.items() if k not in explicitly_set})


def loss_name(cfg: TrainConfig) -> str:
    """``train.loss`` if set, else the recipe's loss."""
    return cfg.loss or RECIPES.get(cfg.recipe).loss


def build_loss(name: str, model, cfg: TrainConfig, rows: list[tuple[str, ...]] | None = None):
    """The ``LOSSES`` entry ``name`` built on ``model`` with its settings from ``cfg`` (and, for a loss
    that masks false negatives, the masking reference over the training ``rows``).

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists the registered losses).
    """
    from llmcse.train.losses import LOSSES
    from llmcse.utils.registry import load_target

    entry = LOSSES.get(name)
    settings = {key: getattr(cfg, key) for key in entry.settings}
    if entry.masking:
        settings.update(false_negative_threshold=cfg.false_negative_threshold,
                        reference_model=masking_reference(model, cfg, rows or []))
    return load_target(entry.target)(model, **settings)


def masking_reference(model, cfg: TrainConfig, rows: list[tuple[str, ...]]):
    """What false-negative masking compares with: None (no masking, or the model's own embeddings),
    a frozen copy of the starting model, or that copy's embeddings of every text, computed once."""
    import copy

    from llmcse.train.losses import ReferenceEmbeddings

    if cfg.false_negative_threshold is None or cfg.false_negative_reference == "self":
        return None
    if cfg.false_negative_reference not in ("precomputed", "frozen"):
        raise LlmcseError(f"false_negative_reference {cfg.false_negative_reference!r}: one of precomputed, frozen, self")
    frozen = copy.deepcopy(model).eval()
    if cfg.false_negative_reference == "frozen":
        return frozen
    texts = [t for row in rows for t in row]
    logger.info("masking reference: embedding %d training texts once with the starting model", len(set(texts)))
    table = ReferenceEmbeddings(model, frozen, texts)
    del frozen  # only the table is kept
    return table


def dev_evaluator(task: str, data_dir: str | None, max_pairs: int | None = None):
    """sentence-transformers' STS evaluator on an STS dev split (``task:split``), named ``dev``;
    ``max_pairs`` samples the split (seeded) when evaluating the whole of it costs too much."""
    import random

    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    from llmcse.data.loaders import load_sts
    from llmcse.data.tasks import sts_dev_file

    pairs = load_sts(sts_dev_file(task, data_dir, "model selection (eval_task)"))
    if max_pairs and len(pairs) > max_pairs:
        pairs = random.Random(0).sample(pairs, max_pairs)
    return EmbeddingSimilarityEvaluator([p.sentence1 for p in pairs], [p.sentence2 for p in pairs],
                                        [p.score for p in pairs], main_similarity="cosine", name="dev",
                                        write_csv=False, batch_size=64)


def base_dtype(cfg: TrainConfig) -> str | None:
    """The dtype to load the base in (None: float32). ``auto`` is bfloat16 only for a frozen base under
    LoRA on a GPU or a CPU with native bf16 (AMX, AVX512-BF16; ``resolve_dtype``'s rule), where it is
    faster and half the memory; float32 on other CPUs, which emulate bf16 more slowly than float32,
    and always without LoRA (full fine-tuning keeps float32 master weights)."""
    if cfg.dtype == "float32" or (cfg.dtype == "auto" and cfg.lora_r <= 0):
        return None
    return cfg.dtype


def stamped_settings(cfg: TrainConfig) -> dict:
    """The two settings whose defaults changed after run folders were stamped, as the old code
    would have stamped them where they give the old result: ``dtype=auto`` that resolves to float32
    here is float32 (the old default), and unset ``gradient_checkpointing`` is False (checkpointing
    recomputes the same activations, so the same gradients). A run folder made before keeps its stamp;
    on a machine where auto means bfloat16 the stamp changes, and the step runs again, as it should."""
    dtype = cfg.dtype
    if dtype == "auto":
        dtype = "float32" if base_dtype(cfg) is None or _auto_is_float32() else "auto"
    checkpointing = False if cfg.gradient_checkpointing is None else cfg.gradient_checkpointing
    return {"dtype": dtype, "gradient_checkpointing": checkpointing}


def _auto_is_float32() -> bool:
    """``resolve_dtype``'s rule for ``auto`` on the device training uses (CUDA if there is one, else the CPU)."""
    import torch

    from llmcse.utils.modelspec import resolve_dtype

    return resolve_dtype("auto", "cuda" if torch.cuda.is_available() else "cpu") == torch.float32


def checkpointing_on(cfg: TrainConfig) -> bool:
    """``gradient_checkpointing``; unset (None) it is on under LoRA: there the frozen base's activations
    are nearly all of the memory a step needs (the weights' gradients and optimizer state are the
    adapters' only), and recomputing them gives the same gradients."""
    return cfg.lora_r > 0 if cfg.gradient_checkpointing is None else cfg.gradient_checkpointing


def checkpointing_args(args_class, enabled: bool) -> dict:
    """Trainer arguments for activation (gradient) checkpointing, under whichever name this
    transformers has (v5 renamed gradient_checkpointing to activation_checkpointing)."""
    if not enabled:
        return {}
    names = {f.name for f in dataclasses.fields(args_class)}
    prefix = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    # non-reentrant: works with frozen inputs (LoRA) and replays dropout (same gradients)
    return {prefix: True, f"{prefix}_kwargs": {"use_reentrant": False}}


def warmup_args(args_class, ratio: float) -> dict:
    """Trainer arguments for a warmup given as a fraction of the steps: transformers v5 takes it as a
    float ``warmup_steps`` and deprecates ``warmup_ratio``; v4 only has ``warmup_ratio``."""
    if not ratio:
        return {}
    fields = {f.name: f for f in dataclasses.fields(args_class)}
    if "warmup_ratio" not in fields or fields["warmup_steps"].type in (float, "float"):
        return {"warmup_steps": ratio}
    return {"warmup_ratio": ratio}


def run_training(cfg: TrainConfig, data_dir: str | None = None) -> dict:
    """Train, keep the best dev checkpoint, save it to ``cfg.out`` (see ``folders`` for the layout:
    checkpoints beside the model, the model renamed into place when done); return a summary."""
    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from transformers import set_seed

    from llmcse.embed.models import load_embedder
    from llmcse.train import card, folders
    from llmcse.train.lora import add_lora, merge_lora, merged_full_precision
    from llmcse.train.memory import heap_trimming

    check_config(cfg)
    kind = RECIPES.get(cfg.recipe).data
    folders.check_paths(cfg.out, {"data": cfg.data, "base": cfg.base})
    evaluator = dev_evaluator(cfg.eval_task, data_dir, cfg.eval_max_pairs)  # checks eval_task before any work
    rows = read_rows(cfg.data, kind)
    if cfg.max_examples is not None:
        rows = rows[: cfg.max_examples]
    if len(rows) < cfg.batch_size:
        raise LlmcseError(f"{cfg.data}: {len(rows)} training rows, fewer than one batch of {cfg.batch_size}")
    train_dataset = to_dataset(rows, kind)
    if cfg.lora_4bit and cfg.lora_r <= 0:
        raise LlmcseError("lora_4bit (QLoRA) trains LoRA adapters on a 4-bit base: set lora_r too, e.g. lora_r=16")
    if cfg.dtype not in ("float32", "auto") and cfg.lora_r <= 0:
        # full fine-tuning needs float32 master weights: AdamW updates vanish in bf16 rounding
        raise LlmcseError(f"dtype={cfg.dtype} is for the frozen base under LoRA: set lora_r too, or train in float32")
    provenance = card.data_provenance(cfg.data, len(rows))
    run_state = {"config": dataclasses.asdict(cfg), "data_md5": provenance["md5"]}
    resume_from, cut_short = folders.resume_point(cfg.out, run_state) if cfg.resume else (None, [])
    # the Trainer seeds only once the model exists: without this, LoRA's random A matrices (and so the
    # trained model) differ from run to run
    set_seed(cfg.seed)
    model = load_embedder(cfg.base, pooling=cfg.pooling, device="cpu" if not torch.cuda.is_available() else None,
                          dtype=base_dtype(cfg), max_seq_length=cfg.max_seq_length,
                          quantization="4bit" if cfg.lora_4bit else None)
    card.fill_card(model, cfg.base, cfg.recipe, provenance)
    if cfg.lora_r > 0:
        if cfg.lora_4bit:
            from peft import prepare_model_for_kbit_training

            prepare_model_for_kbit_training(model.transformers_model, use_gradient_checkpointing=False)
        add_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
        for p in model.parameters():  # peft gives adapters the base's dtype; train them in float32
            if p.requires_grad:
                p.data = p.data.float()
    if int(os.environ.get("RANK", "0")) == 0:  # data-parallel runs: one process per device, one writes
        folders.start(cfg.out, run_state, resume_from, cut_short)
    out = Path(cfg.out)
    # torchrun / accelerate set WORLD_SIZE: one process per device, candidates gathered across them
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    devices = processes if processes > 1 else max(torch.cuda.device_count(), 1)
    global_batch = cfg.batch_size * devices * cfg.gradient_accumulation
    steps = cfg.max_steps if cfg.max_steps > 0 else int(cfg.epochs * len(rows) // (cfg.batch_size * devices) // cfg.gradient_accumulation)
    logger.info("recipe %s: %d rows, global batch %d (= %d per device x %d devices x %d accumulation; "
                "in-batch negatives per anchor %d), %d steps", cfg.recipe, len(rows), global_batch, cfg.batch_size,
                devices, cfg.gradient_accumulation, global_batch - 1, steps)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(folders.checkpoints_dir(out)), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.gradient_accumulation,
        learning_rate=cfg.lr, seed=cfg.seed, data_seed=cfg.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,  # a duplicate text in a batch would be a false negative
        eval_strategy="steps", eval_steps=cfg.eval_steps, save_strategy="steps", save_steps=cfg.eval_steps,
        save_total_limit=cfg.keep_checkpoints or None, load_best_model_at_end=True, metric_for_best_model="eval_dev_spearman_cosine",
        greater_is_better=True, logging_steps=cfg.logging_steps or max(1, min(cfg.eval_steps, 50)), report_to="none",
        dataloader_pin_memory=torch.cuda.is_available(),
        **checkpointing_args(SentenceTransformerTrainingArguments, checkpointing_on(cfg)),
        **warmup_args(SentenceTransformerTrainingArguments, cfg.warmup_ratio),
        # gathering candidates across processes needs the same batch size on every process
        dataloader_drop_last=processes > 1,
        # torchrun on CPU-only machines: accelerate sets up gloo data parallelism only when told it
        # is on CPU; without this each process would silently train alone
        use_cpu=processes > 1 and not torch.cuda.is_available(),
    )
    loss = build_loss(loss_name(cfg), model, cfg, rows)
    before = evaluator(model)["dev_spearman_cosine"]
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss, evaluator=evaluator,
                                         callbacks=[folders.completion_callback(), heap_trimming(model)])
    if resume_from:
        logger.info("resuming from %s", resume_from)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    final_evaluator = card.name_dev_evaluation(model, evaluator, cfg.eval_task)
    after = final_evaluator(model)[f"{final_evaluator.name}_spearman_cosine"]
    # a base trained in 4 bits or in bf16 gets the adapter on a fresh float32 copy: added to bf16 weights,
    # most of a LoRA update would round away, and the saved folder would need bitsandbytes (QLoRA)
    trained_in = next(model.transformers_model.parameters()).dtype  # the base's (dtype=auto decided it)
    low_precision = cfg.lora_4bit or trained_in != torch.float32
    if cfg.lora_r > 0 and cfg.lora_export == "merged" and low_precision:
        merged = merged_full_precision(model, cfg.base, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.max_seq_length)
        merged.model_card_data = model.model_card_data  # the card describes this training, not a fresh load
        merged.model_card_data.register_model(merged)
        model = merged
        logger.info("merged the adapter into a full-precision copy of %s", cfg.base)
    elif cfg.lora_r > 0 and cfg.lora_export == "merged":
        logger.info("merged %d LoRA layers into the base weights", merge_lora(model))
    config = dataclasses.asdict(cfg)
    keep_all = cfg.keep_checkpoints == 0
    summary = {"recipe": cfg.recipe, "rows": len(rows), "global_batch": global_batch, "steps": trainer.state.global_step,
               "base_dtype": "4bit" if cfg.lora_4bit else str(trained_in).removeprefix("torch."),
               "gradient_checkpointing": checkpointing_on(cfg),
               "eval_task": cfg.eval_task, "dev_spearman_before": round(100 * before, 2),
               "dev_spearman_after": round(100 * after, 2),
               "best_checkpoint": trainer.state.best_model_checkpoint,
               "checkpoints": str(folders.checkpoints_dir(out)) if keep_all else None,
               "masked_false_negatives": getattr(getattr(loss, "info_nce", loss), "masked_total", None),
               "data": provenance,
               "log_history": trainer.state.log_history, "config": config, "config_hash": config_hash(config)}
    if trainer.is_world_process_zero():
        assembled = folders.final_dir(out)
        model.save(str(assembled))
        atomic_write_json(assembled / folders.FINISHED, summary)  # last: it marks the folder finished
        folders.finish(out, keep_all_checkpoints=keep_all)
    logger.info("%s Spearman %.2f -> %.2f; saved %s", cfg.eval_task, 100 * before, 100 * after, out)
    return summary


# --set values checked beyond their type: (validator name in llmcse.utils.validate, or a tuple of choices)
RANGES = {"epochs": "positive_float", "batch_size": "positive_int", "gradient_accumulation": "positive_int",
          "lr": "positive_float", "warmup_ratio": "unit_interval", "temperature": "positive_float",
          "beta": "non_negative_float", "max_seq_length": "positive_int", "eval_steps": "positive_int",
          "logging_steps": "positive_int", "eval_max_pairs": "positive_int", "keep_checkpoints": "non_negative_int",
          "max_examples": "positive_int", "lora_r": "non_negative_int", "lora_alpha": "positive_int",
          "lora_dropout": "unit_interval", "false_negative_threshold": "cosine",
          "false_negative_reference": ("precomputed", "frozen", "self"),
          "dtype": ("float32", "bfloat16", "float16", "auto"),
          "lora_export": ("merged", "adapter")}


def check_config(cfg: TrainConfig) -> None:
    """Ranges and choices of the settings (types are checked when they are parsed): one clear error
    instead of a traceback (or a NaN loss) deep in the Trainer."""
    from llmcse.utils import validate

    check_recipe_and_loss(cfg)
    for key, rule in RANGES.items():
        value = getattr(cfg, key)
        if value is None:
            continue
        if isinstance(rule, tuple):
            if value not in rule:
                raise LlmcseError(f"train.{key}: one of {', '.join(rule)}, got {value!r}")
        elif rule == "cosine":
            if not -1 <= value <= 1:
                raise LlmcseError(f"train.{key}: a cosine in [-1, 1], got {value!r}")
        else:
            try:
                validate.check(getattr(validate, rule), value, f"train.{key}")
            except ValueError as e:
                raise LlmcseError(str(e)) from None


def check_recipe_and_loss(cfg: TrainConfig) -> None:
    """Registered recipe and loss names, and a loss that takes the recipe's data (and masks false
    negatives when a threshold is set), checked before anything loads."""
    from llmcse.train.losses import LOSSES

    recipe = _registered(RECIPES, cfg.recipe, "recipe")
    name = loss_name(cfg)
    entry = _registered(LOSSES, name, "loss")
    if recipe.data not in entry.kinds:
        raise LlmcseError(f"train.loss: {name} takes {' or '.join(entry.kinds)} data; recipe {cfg.recipe} gives "
                          f"{recipe.data} data")
    if cfg.false_negative_threshold is not None and not entry.masking:
        raise LlmcseError(f"train.false_negative_threshold={cfg.false_negative_threshold}: loss {name} does not "
                          "mask false negatives; leave it unset (recipe multicsr sets it)")


def _registered(registry, name: str, key: str):
    """``registry.get(name)``; an unknown name's error (which lists the known ones) says which setting it was."""
    try:
        return registry.get(name)
    except UnknownNameError as e:
        raise UnknownNameError(f"train.{key}: {e}") from None


def cli_config(args) -> tuple[TrainConfig, set[str]]:
    """TrainConfig from argparse values plus ``--set key=value`` (type-checked), and what was set."""
    from llmcse.config import build_section, parse_override

    values = {"recipe": args.recipe, "data": args.data, "base": args.base, "out": args.out}
    for text in args.set or []:
        if "=" not in text:
            raise LlmcseError(f"--set expects KEY=VALUE (a train setting, e.g. max_steps=100), got {text!r}")
        section, key, value = parse_override(text if "." in text.split("=")[0] else f"train.{text}")
        if section != "train":
            raise LlmcseError(f"--set {text}: llmcse train only has train.* settings")
        values[key] = value
    cfg = build_section(TrainConfig, values, "train")
    check_config(cfg)
    return cfg, set(values)


def summary_line(summary: dict) -> str:
    return (f"{summary['recipe']}: {summary['rows']} rows, {summary['steps']} steps, global batch "
            f"{summary['global_batch']}; {summary['eval_task']} Spearman {summary['dev_spearman_before']} -> "
            f"{summary['dev_spearman_after']}" + (f"; masked false negatives {summary['masked_false_negatives']}"
                                                       if summary["masked_false_negatives"] else ""))

