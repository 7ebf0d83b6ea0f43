"""A LoRA-tuned generator as rank-r factors of its weight change, small enough to copy around.

``tune-generator`` saves a merged float32 folder (540 MB for SmolLM2-135M). The change it made is a
LoRA delta, rank <= r in every adapted matrix, so ``save`` keeps an SVD's first r components of
(tuned - base) per changed matrix as float16 factors (~10 MB for r = 16), and ``load`` rebuilds a
folder from the base and the factors. Used to bring generators tuned on a GPU machine back
(benchmarks/gpu_batch.sh); the max reconstruction error is printed and stored with the factors.

    python benchmarks/lowrank.py save BASE TUNED_DIR FACTORS.safetensors [--rank 16]
    python benchmarks/lowrank.py load BASE FACTORS.safetensors OUT_DIR
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def _load(spec: str):
    import torch
    from transformers import AutoModelForCausalLM

    from llmcse.utils.modelspec import resolve_model_path

    path = resolve_model_path(spec)
    return path, AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def _refuse_existing(out: str) -> None:
    """Never overwrite what this script did not write in this call: a rerun picks a new path or removes its own."""
    if Path(out).exists():
        raise SystemExit(f"{out} exists: choose another path (this script does not overwrite)")


def save(base: str, tuned: str, out: str, rank: int) -> dict:
    _refuse_existing(out)
    import torch
    from safetensors.torch import save_file

    device = "cuda" if torch.cuda.is_available() else "cpu"
    _, b = _load(base)
    _, t = _load(tuned)
    base_params = dict(b.named_parameters())
    factors, worst, changed_other = {}, 0.0, []
    for name, p in t.named_parameters():
        delta = (p.detach() - base_params[name].detach()).to(device)
        if not delta.any():
            continue
        if delta.dim() != 2:
            changed_other.append(name)
            continue
        u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
        a = (u[:, :rank] * s[:rank]).half()   # (out, r)
        bmat = vh[:rank].half()               # (r, in)
        worst = max(worst, (a.double() @ bmat.double() - delta.double()).abs().max().item())
        factors[f"{name}.A"], factors[f"{name}.B"] = a.cpu().contiguous(), bmat.cpu().contiguous()
    if changed_other:
        raise SystemExit(f"{tuned}: non-matrix parameters changed ({changed_other[:3]}...): not a LoRA delta")
    meta = {"base": base, "tuned": str(tuned), "rank": str(rank), "matrices": str(len(factors) // 2),
            "max_abs_error": f"{worst:.3e}"}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_file(factors, out, metadata=meta)
    if (Path(tuned) / "tune_generator.json").is_file():
        shutil.copy(Path(tuned) / "tune_generator.json", Path(out).with_suffix(".tune_generator.json"))
    print(json.dumps(meta))
    return meta


def load(base: str, factors_path: str, out: str) -> None:
    _refuse_existing(out)
    import torch
    from safetensors import safe_open
    from transformers import AutoTokenizer

    path, model = _load(base)
    params = dict(model.named_parameters())
    with safe_open(factors_path, "pt") as f, torch.no_grad():
        meta = f.metadata()
        names = sorted({k.rsplit(".", 1)[0] for k in f.keys()})
        for name in names:
            params[name] += f.get_tensor(f"{name}.A").float() @ f.get_tensor(f"{name}.B").float()
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(path).save_pretrained(out)
    report = Path(factors_path).with_suffix(".tune_generator.json")
    if report.is_file():
        shutil.copy(report, Path(out) / "tune_generator.json")
    print(json.dumps({**meta, "rebuilt": out, "matrices": len(names)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save")
    s.add_argument("base"), s.add_argument("tuned"), s.add_argument("out"), s.add_argument("--rank", type=int, default=16)
    l_ = sub.add_parser("load")
    l_.add_argument("base"), l_.add_argument("factors"), l_.add_argument("out")
    args = parser.parse_args()
    if args.command == "save":
        save(args.base, args.tuned, args.out, args.rank)
    else:
        load(args.base, args.factors, args.out)


if __name__ == "__main__":
    main()
