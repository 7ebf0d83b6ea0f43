"""PromptEOL table (issue #6): decoder LLMs as embedders, before and after contrastive LoRA.

Per model: mean pooling and last token without a prompt (one forward pass, ``--pooling mean,last``),
PromptEOL (the paper's template, no demos), PromptEOL + ICL (the best shipped demo chosen on an
STS-B dev sample by ``llmcse icl-search``), and PromptEOL after LoRA on the shared NLI triplets
(the ``sup-simcse`` row of benchmarks/training.py for SmolLM2: same run, not retrained here; for the
other models ``llmcse train`` with recipes/prompteol-lora.toml's own [train] settings, base swapped).
STS: 7 test sets, Spearman x100; transfer: the seeded 1,000-row-per-split probe of training.md.

Every row is plain ``llmcse`` commands: model folders in ``runs/prompteol/<model>/<row>/`` (git-ignored),
results in ``benchmarks/results/prompteol/<model>/<row>/{sts,transfer}/`` (committed); a part whose
results.json exists is skipped, so the script resumes. The table: ``benchmarks/results/prompteol.{md,json}``.

    python benchmarks/prompteol.py --models SmolLM2-135M-Instruct --rows mean_last,prompteol,icl
    python benchmarks/prompteol.py --table
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
RUNS = REPO / "runs" / "prompteol"
MODELS = ("SmolLM2-135M-Instruct", "gemma-3-270m")
ROWS = ("mean_last", "prompteol", "icl", "lora")
TRAINING_BASES = {"SmolLM2-135M-Instruct": "smollm2"}  # models whose LoRA row is benchmarks/training.py's
ICL_PAIRS = 300  # STS-B dev pairs the demo search scores each candidate on
STS = ["sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sick"]


def llmcse(*args: str) -> None:
    print("$ llmcse " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "llmcse.cli", "-q", *args], check=True)


def eval_parts(model: str, row: str) -> dict[str, dict[str, Path]]:
    """Table row label -> {"sts": results.json, "transfer": results.json} whose tasks make up that row.

    Committed results are reused where they exist (the baselines' STS runs, the first PromptEOL
    run); new ones land in benchmarks/results/prompteol/<model>/<row>/{sts,transfer}/."""
    out = RESULTS / "prompteol" / model / row
    if row == "mean_last":
        sts = RESULTS / "baselines" / f"{model}_sts" if model == "SmolLM2-135M-Instruct" else out / "sts"
        return {"mean pooling": {"sts": sts / "mean" / "results.json", "transfer": out / "transfer" / "mean" / "results.json"},
                "last token, no prompt": {"sts": sts / "last" / "results.json",
                                          "transfer": out / "transfer" / "last" / "results.json"}}
    if row == "lora" and model in TRAINING_BASES:  # the training experiment's run on the shared NLI triplets
        both = RESULTS / "training" / TRAINING_BASES[model] / "sup-simcse" / "seed42" / "eval" / "results.json"
        return {"PromptEOL + LoRA (NLI)": {"sts": both, "transfer": both}}
    if row == "lora":
        return {"PromptEOL + LoRA (NLI)": {"sts": out / "sts" / "results.json",
                                           "transfer": out / "transfer" / "results.json"}}
    label = {"prompteol": "PromptEOL (no demos)", "icl": "PromptEOL + ICL (1 demo)"}[row]
    first = RESULTS / "prompteol" / f"{model}_prompteol" / "results.json"  # the first PromptEOL run (STS only)
    sts = first if row == "prompteol" and first.is_file() else out / "sts" / "results.json"
    return {label: {"sts": sts, "transfer": out / "transfer" / "results.json"}}


def lora_train_args(model: str, out: Path) -> list[str]:
    """``llmcse train`` arguments for the LoRA row: recipes/prompteol-lora.toml's [train] section (the
    settings of SmolLM2's row) with the base swapped, seed 42, resumable."""
    from llmcse.data.paths import resolve_data_dir

    train = tomllib.loads((REPO / "recipes" / "prompteol-lora.toml").read_text(encoding="utf-8"))["train"]
    data = train.pop("data").replace("{data_dir}", str(resolve_data_dir(None)))
    recipe, _ = train.pop("recipe"), train.pop("base")
    sets = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in train.items()] + ["seed=42", "resume=true"]
    return ["--recipe", recipe, "--data", data, "--base", f"prompteol:{model}", "--out", str(out),
            *[a for s in sets for a in ("--set", s)]]


def run_row(model: str, row: str) -> None:
    """Build the model folder the row needs (runs/prompteol/...), then evaluate what is missing."""
    if row == "lora" and model in TRAINING_BASES:
        print(f"[{model} / lora] comes from benchmarks/training.py (sup-simcse row); run that first", flush=True)
        return
    models = RUNS / model / row
    if row == "lora" and not (models / "modules.json").is_file():
        llmcse("train", *lora_train_args(model, models))
    if row == "prompteol" and not (models / "modules.json").is_file():
        llmcse("prompteol", "--base", model, "--out", str(models))
    if row == "icl" and not (models / "modules.json").is_file():
        llmcse("icl-search", "--base", model, "--max-pairs", str(ICL_PAIRS), "--dtype", "bfloat16", "--out", str(models))
    target = ["--model", model, "--pooling", "mean,last"] if row == "mean_last" else ["--model", str(models)]
    out = RESULTS / "prompteol" / model / row
    for group, extra in (("sts", []), ("transfer", ["--transfer-max-examples", "1000"])):
        if all(parts[group].is_file() for parts in eval_parts(model, row).values()):
            continue
        llmcse("eval", *target, "--tasks", group, *extra, "--dtype", "bfloat16", "--output-dir", str(out / group))


def merged(parts: dict[str, Path]) -> dict | None:
    found = [json.loads(p.read_text()) for p in dict.fromkeys(parts.values()) if p.is_file()]
    if not found:
        return None
    tasks, averages = {}, {}
    for r in found:
        tasks.update({t: v["main_score"] for t, v in r["tasks"].items()})
        averages.update(r["averages"])
    return {"tasks": tasks, "averages": averages}


def build_table() -> dict:
    lines = ["# PromptEOL: decoder LLMs as sentence embedders (issue #6)", "",
             "STS: Spearman x100 of cosine, test splits, STS12-16 in SentEval's 'all' setting; bf16 inference on CPU. "
             "Transfer: logistic-regression probe on a seeded 1,000-row sample of every split (as in training.md; "
             "the full-protocol transfer numbers of mean / last-token pooling are in baselines.md). "
             "ICL: one demo (sentence -> word) chosen by `llmcse icl-search` on a "
             f"{ICL_PAIRS}-pair STS-B dev sample, never on test data. LoRA: r=8 on all linear layers, 26 steps of 32 "
             "shared NLI triplets with hard negatives, InfoNCE at temperature 0.05 (recipes/prompteol-lora.toml; "
             "for SmolLM2 it is training.md's sup-simcse row).", ""]
    summary: dict = {}
    for model in MODELS:
        rows = {label: r for row in ROWS for label, parts in eval_parts(model, row).items() if (r := merged(parts))}
        if not rows:
            continue
        summary[model] = rows
        lines += [f"## {model}", "", "| method | " + " | ".join(STS) + " | **STS avg** | transfer avg |",
                  "|---" * (len(STS) + 3) + "|"]
        for label, r in summary[model].items():
            sts = [r["tasks"].get(t) for t in STS]
            cells = " | ".join("-" if v is None else f"{v:.2f}" for v in sts)
            avg = r["averages"].get("sts")
            transfer = r["averages"].get("transfer")
            lines.append(f"| {label} | {cells} | **{'-' if avg is None else f'{avg:.2f}'}** | "
                         f"{'-' if transfer is None else f'{transfer:.2f}'} |")
        lines += [""]
    lines += ["Paper anchors for scale (PromptEOL, ACL Findings 2024): OPT-125M PromptEOL+ICL 67.46 STS avg; "
              "fine-tuned OPT-1.3B 84.79.", "", "## Commands", "", "```bash",
              "python benchmarks/prompteol.py --models SmolLM2-135M-Instruct --rows mean_last,prompteol,icl",
              "python benchmarks/training.py --base smollm2 --rows sup-simcse   # the LoRA row",
              "python benchmarks/prompteol.py --models gemma-3-270m --rows mean_last,prompteol,icl,lora", "```",
              "Each row prints its exact `llmcse` commands; outputs in runs/prompteol/."]
    notes = RESULTS / "prompteol_notes.md"
    if notes.is_file():
        lines += ["", notes.read_text().strip()]
    (RESULTS / "prompteol.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "prompteol.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--table", action="store_true", help="only rebuild the table")
    args = parser.parse_args()
    if not args.table:
        for model in args.models.split(","):
            for row in args.rows.split(","):
                run_row(model, row)
                build_table()
    build_table()
    print((RESULTS / "prompteol.md").read_text())


if __name__ == "__main__":
    main()
