"""``embed``: texts from .txt/.jsonl/.tsv into .npy/.parquet (``load_embedder`` + ``encode``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmcse.errors import LlmcseError
from llmcse.stages.base import Flag, Stage, StageResult, opt
from llmcse.stages.eval import EMBEDDER_FLAGS, EMBEDDER_RULES, POOLING_HELP


@dataclass
class EmbedConfig:
    model: str = opt(help="the embedder")
    input: str = opt(help=".txt (a text per line), .jsonl (field 'text'), .tsv (column 'sentence')")
    output: str = opt(help=".npy (matrix in input order) or .parquet (id, text, embedding)")
    field: str | None = opt(None, "JSONL field / TSV column holding the text")
    prompt_name: str | None = opt(None, "a prompt saved with the model, e.g. query or document")
    normalize: bool = opt(True, "unit-length vectors")
    pooling: str | None = opt(None, POOLING_HELP)
    device: str | None = opt(None, "cuda, mps or cpu (default: auto)")
    dtype: str | None = opt(None, "default float32; bfloat16 is 2-3x faster on CPUs with bf16")
    batch_size: int = opt(64, "texts per forward pass")
    max_seq_length: int | None = opt(None, "truncate inputs to this many tokens")


@dataclass
class EmbedResult(StageResult):
    output: Path
    embeddings: Any = field(repr=False)  # (texts, dim) float32 numpy array, in input order
    ids: list[str] = field(repr=False)


def check(cfg: EmbedConfig) -> None:
    from llmcse.embed.files import check_output_path

    if cfg.pooling and "," in cfg.pooling:
        raise LlmcseError("embed takes one pooling (several are for eval)")
    check_output_path(cfg.output)  # before the model loads and the texts are encoded, not after


def run(cfg: EmbedConfig) -> EmbedResult:
    from llmcse.data.readers import read_texts
    from llmcse.embed.files import write_embeddings
    from llmcse.embed.sharded import embed_texts

    ids, texts = read_texts(cfg.input, field=cfg.field)
    # this process, or Ray actors under --executor ray (llmcse.utils.executor.using): shards in <output>.shards/
    embeddings, seconds = embed_texts(texts, cfg.model, pooling=cfg.pooling, device=cfg.device, dtype=cfg.dtype,
                                      max_seq_length=cfg.max_seq_length, batch_size=cfg.batch_size,
                                      normalize=cfg.normalize, prompt_name=cfg.prompt_name, output=cfg.output,
                                      input_path=cfg.input, field=cfg.field)
    write_embeddings(cfg.output, ids, texts, embeddings)
    summary = {"texts": int(embeddings.shape[0]), "dim": int(embeddings.shape[1]), "seconds": round(seconds, 3),
               "texts_per_s": round(embeddings.shape[0] / max(seconds, 1e-9))}
    return EmbedResult(summary, Path(cfg.output), embeddings, ids)


def summary(cfg: EmbedConfig, result: EmbedResult) -> str:
    s = result.summary
    return f"wrote {s['texts']} x {s['dim']} embeddings to {cfg.output} ({s['texts_per_s']} texts/s)"


STAGE = Stage(
    name="embed", help="embed texts from .txt/.jsonl/.tsv into .npy/.parquet",
    config=EmbedConfig, run=run, inputs=("input",), outputs=("output",), summary=summary, check=check, executor=True,
    rules=EMBEDDER_RULES, flags={**EMBEDDER_FLAGS, "normalize": Flag(names=("--no-normalize",),
                                                                     help="keep raw vectors (default: unit length)")},
    epilog="example:\n  llmcse embed --model all-MiniLM-L6-v2 --input corpus.jsonl --output corpus.parquet",
)
