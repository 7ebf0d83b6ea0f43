"""``llmcse embed``'s encoding, in this process or on Ray (``executor="ray"``).

Locally the texts are encoded in one ``SentenceTransformer.encode`` call, as always. On Ray they
are cut into fixed shards (``<output>.shards/``: manifest + one ``.npy`` per shard, each complete or
absent), a pool of actors (one model each, one GPU each where there are GPUs) embeds the missing
shards, and this process stacks them in input order: a crashed job keeps its finished shards and a
rerun embeds only the rest. Vectors equal the local run's to float rounding (~1e-6): only the
batches differ.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

SHARD_UNIT = 256  # texts; a shard is a whole number of these (at most 40: 10,240 texts)


def embed_texts(texts: list[str], model: str, *, pooling: str | None = None, device: str | None = None,
                dtype: str | None = None, max_seq_length: int | None = None, batch_size: int = 64,
                normalize: bool = True, prompt_name: str | None = None, output: str | Path | None = None,
                input_path: str | Path | None = None, field: str | None = None, executor: str | None = None,
                ray_address: str | None = None, actors: int | None = None,
                show_progress_bar: bool | None = None) -> tuple[np.ndarray, float]:
    """(embeddings (len(texts), dim) float32 in input order, seconds spent encoding).

    ``executor="ray"`` needs ``output`` (its shards go to ``<output>.shards/``) and ``input_path``
    (its md5 is part of the shards' identity). ``None`` (executor, address, actors): the current
    ``llmcse.utils.executor.using(...)`` scope's settings, else this process.
    """
    from llmcse.utils.executor import resolve
    from llmcse.utils.progress import progress_enabled

    executor, ray_address, actors = resolve(executor, ray_address, actors)
    options = {"pooling": pooling, "device": device, "dtype": dtype, "max_seq_length": max_seq_length}
    encode = {"batch_size": batch_size, "normalize": normalize, "prompt_name": prompt_name}
    if executor == "ray":
        started = time.perf_counter()
        vectors = _embed_on_ray(texts, model, options, encode, Path(output), Path(input_path), field, ray_address,
                                actors, show_progress_bar)
        return vectors, time.perf_counter() - started
    worker = EmbedShardWorker(model, options, encode, show_progress_bar=progress_enabled(show_progress_bar))
    started = time.perf_counter()
    vectors = worker.encode(texts)
    return vectors, time.perf_counter() - started


class EmbedShardWorker:
    """One embedding model (loaded once per Ray actor); writes one shard's ``.npy`` per call."""

    def __init__(self, model: str, options: dict, encode: dict, show_progress_bar: bool = False):
        from llmcse.embed.models import load_embedder

        self.model = load_embedder(model, **options)
        self.encode_options = encode
        self.show_progress_bar = show_progress_bar

    def encode(self, texts: list[str]) -> np.ndarray:
        o = self.encode_options
        return self.model.encode(texts, batch_size=o["batch_size"], normalize_embeddings=o["normalize"],
                                 show_progress_bar=self.show_progress_bar, convert_to_numpy=True,
                                 prompt_name=o["prompt_name"]).astype(np.float32, copy=False)  # (texts, dim)

    def __call__(self, task: dict) -> dict:
        from llmcse.utils.executor import require_shared_folder
        from llmcse.utils.io import atomic_save_npy

        path = Path(task["path"])
        if path.exists():  # a shard Ray ran again after its node died, though its file was written
            return {"items": 0}
        require_shared_folder(path.parent)
        atomic_save_npy(path, self.encode(task["texts"]))  # complete or absent
        return {"items": len(task["texts"])}


def _embed_on_ray(texts, model, options, encode, output: Path, input_path: Path, field, ray_address, actors,
                  show_progress_bar) -> np.ndarray:
    from llmcse.errors import DataFormatError
    from llmcse.utils.executor import run_shards
    from llmcse.utils.io import file_md5
    from llmcse.utils.shards import PROVENANCE, auto_shard_size, pending, prepare_manifest

    folder = output.with_name(output.name + ".shards")
    identity = {"kind": "llmcse-embed", "input_md5": file_md5(input_path), "field": field, "model": model,
                "model_stamp": model_stamp(model), **options, **encode}
    manifest = prepare_manifest(folder, identity, len(texts), auto_shard_size(len(texts), SHARD_UNIT, 40), ".npy")
    todo = pending(folder, manifest, None)
    tasks = [{"index": s["index"], "path": str((folder / s["file"]).resolve()), "texts": texts[s["start"]:s["end"]]}
             for s in todo]
    logger.info("%d of %d text shards to embed on Ray", len(tasks), len(manifest["shards"]))
    run_shards(functools.partial(EmbedShardWorker, model, options, encode), tasks, executor="ray",
               ray_address=ray_address, actors=actors, uses_gpu=options["device"] in (None, "cuda"),
               provenance_file=folder / PROVENANCE, show_progress_bar=show_progress_bar, desc="embed shards")
    parts = []
    for s in manifest["shards"]:
        part = np.load(folder / s["file"], allow_pickle=False)
        if part.ndim != 2 or part.shape[0] != s["end"] - s["start"]:
            raise DataFormatError(folder / s["file"], None, f"holds {part.shape} vectors, expected {s['end'] - s['start']} "
                                  "rows; delete it and rerun to embed that shard again")
        parts.append(part)
    return np.concatenate(parts)  # (texts, dim)


def model_stamp(spec: str) -> str:
    """What identifies the model's weights for the shards: a local folder's file names, sizes and
    modification times (a model retrained in place changes them); a bundled name or hub id as is."""
    path = Path(spec)
    if not path.exists():
        return spec
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if f != path else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
