"""``llmcse tune-generator``: LoRA supervised fine-tuning of a causal LM on (prompt, completion) pairs.

The self-instruct step of arXiv 2409.16497 (tune the LLM on its own filtered outputs, then
generate again), and general enough for any generator (NLI / sts3 rewrites too):

* data: JSONL records ``{"prompt": str | [chat messages], "completion": str}``. A string prompt
  becomes one user turn. The model's chat template renders the prompt exactly as
  ``HFGenerator`` renders it at generation time (generation prompt included), and the completion
  is what the template puts after it (for SmolLM2: the text, then ``<|im_end|>``, so the model
  also learns to stop). A tokenizer without a chat template gets prompt text + completion + EOS.
* loss on the completion tokens only: prompt tokens are labelled -100.
* LoRA adapters (peft) on every linear layer, trained with the stock transformers ``Trainer``;
  checkpoints (optimizer state included) go to ``<out>.checkpoints/`` beside the model, as
  ``llmcse train`` keeps them: a rerun of the same command continues from the last one. They are
  deleted once the merged model is saved, unless ``--keep-checkpoints 0`` keeps them all (then a
  rerun with a larger ``--max-steps`` trains on).
* the adapters are merged into the weights at the end and ``<out>`` is a plain transformers
  folder (model + tokenizer + chat template): ``--llm hf:<out>`` loads it, and so would vLLM
  or ``transformers serve``. ``<out>/tune_generator.json`` reports loss per logging step, steps,
  time and tokens.

The training pairs from an ``llmcse expand`` run are built by ``llmcse.synth.self_instruct``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

from llmcse.errors import DataFormatError, LlmcseError
from llmcse.utils.io import atomic_write_json, config_hash

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of a token that adds nothing to the loss (torch cross-entropy's ignore_index)
# Config fields that may change between a run and its continuation (train longer, more epochs).
CONTINUABLE = ("max_steps", "epochs", "logging_steps", "save_steps", "keep_checkpoints", "device")


@dataclasses.dataclass
class TuneConfig:
    data: str  # JSONL (prompt, completion) pairs
    out: str  # output folder: merged model + tokenizer, tune_generator.json (checkpoints: <out>.checkpoints/)
    base: str = "SmolLM2-135M-Instruct"  # causal LM: folder, hub id, bundled name or .gguf
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    lr: float = 2e-4  # LoRA's usual rate; full fine-tuning would want ~1e-5
    lora_r: int = 16
    lora_alpha: int | None = None  # None: 2 x r
    lora_dropout: float = 0.05
    batch_size: int = 8
    gradient_accumulation: int = 1
    max_length: int = 512  # prompt + completion tokens; longer pairs are dropped (counted in the report)
    warmup_ratio: float = 0.03
    seed: int = 42
    dtype: str = "float32"  # the frozen base's dtype; adapters and their optimizer stay float32
    logging_steps: int = 10
    save_steps: int = 100
    # checkpoints kept in <out>.checkpoints/ while training, deleted when the model is saved; 0 keeps
    # every one, also afterwards (a later run with a larger max_steps continues from the last)
    keep_checkpoints: int = 2
    device: str | None = None  # None: cuda if available, else cpu


# ---------------------------------------------------------------------------------------------- data


def read_pairs(path: str | Path) -> list[dict]:
    """(prompt, completion) records; a malformed one names file and line."""
    path = Path(path)
    if not path.is_file():
        raise LlmcseError(f"training pairs not found: {path}")
    from llmcse.data.readers import iter_jsonl  # the project's JSONL reader: file:line errors, blank lines skipped

    pairs = [_check_pair(record, path, line_no) for line_no, record in iter_jsonl(path)]
    if not pairs:
        raise DataFormatError(path, None, "no (prompt, completion) records")
    return pairs


def _check_pair(record, path: Path, line_no: int) -> dict:
    if not isinstance(record, dict):
        raise DataFormatError(path, line_no, "expected an object with 'prompt' and 'completion'")
    prompt, completion = record.get("prompt"), record.get("completion")
    if not isinstance(completion, str) or not completion.strip():
        raise DataFormatError(path, line_no, "'completion' must be a non-empty string")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DataFormatError(path, line_no, "'prompt' is empty")
    elif isinstance(prompt, list) and prompt:
        for m in prompt:
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise DataFormatError(path, line_no, "'prompt' messages need string 'role' and 'content'")
    else:
        raise DataFormatError(path, line_no, "'prompt' must be a string or a non-empty list of chat messages")
    return {"prompt": prompt, "completion": completion}


def render_pair(tokenizer, prompt, completion: str) -> tuple[str, str]:
    """(prompt text, completion text) as the model sees them: the prompt as ``HFGenerator.render``
    renders a chat (generation prompt included), the completion as what the chat template writes
    after it for an assistant turn."""
    if not getattr(tokenizer, "chat_template", None):
        text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt) + "\n"
        return text, completion + (tokenizer.eos_token or "")
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": completion}], tokenize=False)
    if not full.startswith(head):
        raise LlmcseError("this chat template does not render a conversation as prompt + answer (it rewrites "
                          "earlier turns), so the completion tokens cannot be told apart; use another base model")
    return head, full[len(head):]


def tokenize_pair(tokenizer, prompt, completion: str) -> dict:
    """input_ids and labels (-100 over the prompt). Prompt and completion are tokenized apart and
    concatenated: at generation time the model continues the prompt's own tokens, so a merge of
    tokens across the boundary would train on a split it never sees."""
    head, tail = render_pair(tokenizer, prompt, completion)
    prompt_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
    return {"input_ids": prompt_ids + completion_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids}


def tokenize_pairs(tokenizer, pairs: list[dict], max_length: int) -> tuple[list[dict], dict]:
    """Tokenized examples that fit ``max_length``, and counts (dropped, prompt and completion tokens).
    Over-long pairs are dropped, never cut: a cut prompt or completion would teach a wrong answer."""
    examples, dropped = [], 0
    for pair in pairs:
        example = tokenize_pair(tokenizer, pair["prompt"], pair["completion"])
        if len(example["input_ids"]) > max_length:
            dropped += 1
            continue
        examples.append(example)
    completion_tokens = sum(sum(1 for t in e["labels"] if t != IGNORE_INDEX) for e in examples)
    total = sum(len(e["input_ids"]) for e in examples)
    return examples, {"pairs": len(pairs), "examples": len(examples), "dropped_too_long": dropped,
                      "tokens_per_epoch": total, "completion_tokens_per_epoch": completion_tokens}


class PadCollator:
    """Right-pads a batch: pad id in the inputs, -100 in the labels, 0 in the attention mask."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = [f["input_ids"] + [self.pad_token_id] * (width - len(f["input_ids"])) for f in features]
        labels = [f["labels"] + [IGNORE_INDEX] * (width - len(f["labels"])) for f in features]
        mask = [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}


# ------------------------------------------------------------------------------------------ training


STAMP = "llmcse_tune_config.json"  # in the checkpoints folder: the settings that made its checkpoints
LEGACY_CHECKPOINTS = "checkpoints"  # inside <out>, where runs before the <out>.checkpoints layout kept them


def checkpoints_dir(out: Path) -> Path:
    """``<out>.checkpoints``, beside the model folder as ``llmcse train`` keeps them: ``<out>`` holds the
    merged model only, so serving or copying it never drags optimizer state along."""
    from llmcse.train.folders import checkpoints_dir as beside

    return beside(out)


def _prepare_checkpoints_dir(out: Path) -> Path:
    """The checkpoints folder, checked to hold only what tune-generator writes (it is deleted at the
    end); checkpoints an older llmcse kept inside ``<out>`` are moved there, so they still resume."""
    ckpt_dir = checkpoints_dir(out)
    legacy = out / LEGACY_CHECKPOINTS
    if (legacy / STAMP).is_file() and not ckpt_dir.exists():
        legacy.rename(ckpt_dir)
        logger.info("moved the checkpoints of an earlier run from %s to %s", legacy, ckpt_dir)
    if ckpt_dir.exists() and not ckpt_dir.is_dir():
        raise LlmcseError(f"{ckpt_dir} is a file; tune-generator keeps its checkpoints in a folder there: move it")
    foreign = sorted(p.name for p in ckpt_dir.iterdir()
                     if p.name != STAMP and not p.name.startswith("checkpoint-")) if ckpt_dir.is_dir() else []
    if foreign:
        raise LlmcseError(f"{ckpt_dir} holds files tune-generator did not write ({', '.join(foreign[:3])}); move them: "
                          "the folder is where this run keeps its checkpoints, and it is deleted at the end")
    return ckpt_dir


def _resume_point(out: Path, cfg: TuneConfig) -> str | None:
    """The last checkpoint of an earlier run with the same settings, or None for a fresh start.
    Checkpoints of different settings (data, lr, r ...) are refused rather than silently mixed."""
    ckpt_dir = _prepare_checkpoints_dir(out)
    stamp = ckpt_dir / STAMP
    key = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in CONTINUABLE + ("out",)}
    key["data_md5"] = _md5(cfg.data)
    checkpoints = sorted(ckpt_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])) \
        if ckpt_dir.is_dir() else []
    if stamp.is_file():
        before = json.loads(stamp.read_text(encoding="utf-8"))
        if before.get("hash") != config_hash(key) and checkpoints:
            changed = sorted(k for k in set(key) | set(before.get("config", {}))
                             if key.get(k) != before.get("config", {}).get(k))
            raise LlmcseError(f"{ckpt_dir} holds checkpoints of other settings ({', '.join(changed)} changed): "
                              "use another --out, or delete that folder to start afresh")
    atomic_write_json(stamp, {"hash": config_hash(key), "config": key})
    return str(checkpoints[-1]) if checkpoints else None


def _md5(path: str) -> str:
    from llmcse.utils.io import file_md5

    return file_md5(path)


def _load_base(cfg: TuneConfig, device: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmcse.utils.modelspec import resolve_dtype, resolve_model_path

    path = resolve_model_path(cfg.base)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # padding is masked out of loss and attention anyway
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(cfg.dtype, device))
    return path, tokenizer, model


def _lora_config(cfg: TuneConfig):
    try:
        from peft import LoraConfig, TaskType
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LlmcseError("tune-generator needs peft: pip install 'llmcse[lora]'") from exc
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha or 2 * cfg.lora_r, lora_dropout=cfg.lora_dropout,
                      target_modules="all-linear", task_type=TaskType.CAUSAL_LM)


def completion_loss(model, inputs: dict, num_items_in_batch=None):
    """Next-token cross-entropy over the completion tokens, with the LM head applied at those
    positions only. Equal to the model's own loss with -100 labels, but a prompt of ~450 tokens
    with a ~15-token answer no longer pays for 450 x vocabulary logits (~20% of the compute, and
    most of the activation memory, of a 135M model with a 49k vocabulary).

    ``num_items_in_batch`` (the Trainer's count of labelled tokens over the accumulated batches):
    sum / that count, so gradient accumulation weighs every token alike."""
    import torch.nn.functional as F

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal.get_decoder()(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    targets = inputs["labels"][:, 1:]  # position t predicts token t + 1
    keep = targets != IGNORE_INDEX
    logits = causal.get_output_embeddings()(hidden[:, :-1][keep]).float()  # (completion tokens, vocab)
    if num_items_in_batch is None:
        return F.cross_entropy(logits, targets[keep])
    return F.cross_entropy(logits, targets[keep], reduction="sum") / num_items_in_batch


def _trainer_class():
    from transformers import Trainer

    class CompletionTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs:  # evaluation with outputs: the stock path
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return completion_loss(model, inputs, num_items_in_batch)

    return CompletionTrainer


def _loss_log_callback():
    """A transformers callback: one log line per logging step (the Trainer's bar shows the rest)."""
    from transformers import TrainerCallback

    class LossLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                logger.info("step %d/%d: loss %.4f, lr %.2e", state.global_step, state.max_steps,
                            logs["loss"], logs.get("learning_rate", float("nan")))

    return LossLog()


def _check_config(cfg: TuneConfig) -> None:
    if cfg.lora_r <= 0:
        raise LlmcseError(f"--lora-r {cfg.lora_r}: tune-generator trains LoRA adapters, give r >= 1 (e.g. 16)")
    for name in ("batch_size", "max_length", "gradient_accumulation", "logging_steps", "save_steps"):
        if getattr(cfg, name) < 1:
            raise LlmcseError(f"{name.replace('_', '-')} must be >= 1, not {getattr(cfg, name)}")
    if cfg.max_steps <= 0 and cfg.epochs <= 0:
        raise LlmcseError("give --epochs > 0 or --max-steps > 0")
    if cfg.dtype not in ("float32", "bfloat16", "float16"):
        raise LlmcseError(f"--dtype {cfg.dtype!r}: one of float32, bfloat16, float16")


def tune_generator(cfg: TuneConfig, show_progress_bar: bool | None = None) -> dict:
    """Train LoRA adapters on ``cfg.data``, merge them, save ``cfg.out``; resumable. Returns the report."""
    _check_config(cfg)  # user errors first, before the heavy imports
    pairs = read_pairs(cfg.data)
    if Path(cfg.out).is_file():
        raise LlmcseError(f"--out {cfg.out} is a file; tune-generator writes a model folder there")
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import TrainingArguments

    from llmcse.train.run import warmup_args
    from llmcse.utils.progress import progress_enabled

    out = Path(cfg.out)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    resume = _resume_point(out, cfg)  # before loading anything: refusing mixed settings is instant
    path, tokenizer, model = _load_base(cfg, device)
    examples, counts = tokenize_pairs(tokenizer, pairs, cfg.max_length)
    if not examples:
        raise LlmcseError(f"{cfg.data}: all {len(pairs)} pairs are longer than --max-length {cfg.max_length} tokens; "
                          "raise it")
    if counts["dropped_too_long"]:
        logger.warning("%d of %d pairs are over %d tokens: left out", counts["dropped_too_long"], len(pairs), cfg.max_length)
    model = get_peft_model(model, _lora_config(cfg))
    for p in model.parameters():  # peft gives adapters the base's dtype; train them (and AdamW) in float32
        if p.requires_grad:
            p.data = p.data.float()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    steps_per_epoch = -(-len(examples) // (cfg.batch_size * cfg.gradient_accumulation))
    planned = cfg.max_steps if cfg.max_steps > 0 else int(round(cfg.epochs * steps_per_epoch))
    logger.info("%d pairs (%d completion tokens per epoch), %d steps of %d; LoRA r=%d: %d trainable parameters%s",
                len(examples), counts["completion_tokens_per_epoch"], planned, cfg.batch_size * cfg.gradient_accumulation,
                cfg.lora_r, trainable, f"; resuming from {resume}" if resume else "")
    args = TrainingArguments(
        output_dir=str(checkpoints_dir(out)), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.gradient_accumulation,
        learning_rate=cfg.lr, seed=cfg.seed, data_seed=cfg.seed, logging_steps=cfg.logging_steps,
        logging_first_step=True, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.keep_checkpoints or None, report_to="none", remove_unused_columns=False,
        dataloader_pin_memory=device.startswith("cuda"), use_cpu=device == "cpu",
        disable_tqdm=not progress_enabled(show_progress_bar), include_num_input_tokens_seen="non_padding",
        **warmup_args(TrainingArguments, cfg.warmup_ratio))
    trainer = _trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(examples),
                               data_collator=PadCollator(tokenizer.pad_token_id), callbacks=[_loss_log_callback()])
    if args.disable_tqdm:  # without a bar the Trainer prints raw log dicts to stdout; our log line says it
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    steps_before = _checkpoint_step(resume)
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    _save_merged(model, tokenizer, out)
    report = _report(cfg, trainer, result, counts, path, trainable, seconds, steps_before, resume)
    keep_all = cfg.keep_checkpoints == 0
    report["checkpoints"] = str(checkpoints_dir(out)) if keep_all else None
    atomic_write_json(out / "tune_generator.json", report)
    if not keep_all:  # last: until the model and its report are saved, a rerun resumes from them
        shutil.rmtree(checkpoints_dir(out))
    return report


def _checkpoint_step(checkpoint: str | None) -> int:
    return int(checkpoint.rsplit("-", 1)[-1]) if checkpoint else 0


def _save_merged(model, tokenizer, out: Path) -> None:
    """Fold the adapters into float32 weights and save a plain transformers folder (no peft needed)."""
    # merge in float32: a LoRA delta added to bf16 weights would mostly round away
    merged = model.float().merge_and_unload()
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))  # tokenizer files + chat template
    logger.info("saved the merged model to %s (loads with --llm hf:%s)", out, out)


def _report(cfg: TuneConfig, trainer, result, counts: dict, path: str, trainable: int, seconds: float,
            steps_before: int, resume: str | None) -> dict:
    state = trainer.state
    losses = [{"step": e["step"], "loss": e["loss"], "learning_rate": e.get("learning_rate")}
              for e in state.log_history if "loss" in e]
    steps_this_run = state.global_step - steps_before
    config = dataclasses.asdict(cfg)
    return {"base": cfg.base, "base_path": path, "out": cfg.out, **counts, "trainable_parameters": trainable,
            "steps": state.global_step, "steps_this_run": steps_this_run, "resumed_from": resume,
            "epochs_done": round(state.epoch or 0.0, 4), "seconds_this_run": round(seconds, 1),
            "seconds_per_step": round(seconds / steps_this_run, 3) if steps_this_run else None,
            "tokens_seen": int(getattr(state, "num_input_tokens_seen", 0) or 0),
            "first_loss": losses[0]["loss"] if losses else None, "final_loss": losses[-1]["loss"] if losses else None,
            "train_loss_this_run": result.training_loss if steps_this_run else None,
            "loss_history": losses, "config": config, "config_hash": config_hash(config)}


# --------------------------------------------------------------------------- pairs from an expansion
