"""Head-to-head training experiment (issue #5): which training data makes the better embedder?

Same base, same number of training pairs, same steps, same batch, same seeds:

    unsup-simcse   shared Wikipedia sentences, dropout positives
    sup-simcse     shared NLI triplets (human-labelled)
    synth-nli      SmolLM2-made NLI triplets, raw (benchmarks/data/nli_smollm2.jsonl)
    ngcse          SmolLM2-made 3-level STS records, raw, InfoNCE + Hierarchical Triplet loss
    multicsr       SmolLM2-made NLI triplets after the MultiCSR filter (scored by SmolLM2 itself)
                   + in-batch false-negative masking

on two bases: all-MiniLM-L6-v2 (full fine-tuning) and SmolLM2-135M-Instruct as a PromptEOL
embedder with LoRA. The LLM-made data come from the generator alone (no human-trained model
chose or scored them), so only sup-simcse sees human labels.

Every run is plain ``llmcse train`` / ``llmcse eval`` / ``llmcse rfd`` commands: models in
``runs/training/<base>/<row>/seed<k>/`` (git-ignored), results in
``benchmarks/results/training/<base>/<row>/seed<k>/`` (committed); a step whose output exists is
skipped, so the script resumes where it stopped. The table: ``benchmarks/results/training.{md,json}``
and ``training_<base>_rfd.png``.

    python benchmarks/training.py --base minilm                 # the five rows + base, seed 42
    python benchmarks/training.py --base minilm --best-seeds 2  # + seeds 43, 44 for the two best rows
    python benchmarks/training.py --table                        # rebuild the table only

Issue 23's rows (``--rows``, not in the default set): sup-simcse on the 500 human triplets the seeded generator
was tuned on, and the seeded generator's NLI records raw / yes-no filtered / yes-no + cosine judged; a row
with fewer rows than ``--pairs`` repeats them for the same number of steps (500 triplets: 5 epochs); and those 500
human triplets + 2,060 of the seeded generator's records (``mix-500-seeded``). ``--base smollm2-fp32`` is the SmolLM2
setup in float32, for a CPU without bf16 instructions (its own table).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
GENERATED = REPO / "benchmarks" / "data"
RUNS = REPO / "runs" / "training"

PAIRS = 832  # every row trains on this many rows: the filtered nli set has 857
BATCH = 32  # 26 steps of 32, one epoch
SEEDS = (42, 43, 44)

# row -> (recipe, data file; "shared:" = under the benchmark data dir)
ROWS = {
    "unsup-simcse": ("unsup-simcse", "shared:unlabeled/wiki_sentences.txt"),
    "sup-simcse": ("sup-simcse", "shared:nli/triplets.tsv"),
    "synth-nli": ("synth-nli", "nli_smollm2.jsonl"),
    "ngcse": ("ngcse", "sts3_smollm2.jsonl"),
    "multicsr": ("multicsr", "nli_smollm2.kept.jsonl"),
    # issue 23: the 500 human triplets the seeded generator was tuned on (what a user with 500 labelled pairs has),
    # and the seeded generator's NLI records raw, after the yes/no filter (+ false-negative masking) and after the
    # yes/no + cosine judge
    "sup-simcse-500": ("sup-simcse", "seen:nli_seeded_smollm2.generator_pairs.report.json"),
    "synth-nli-seeded": ("synth-nli", "nli_seeded_smollm2.jsonl"),
    "multicsr-seeded": ("multicsr", "nli_seeded_smollm2.kept.jsonl"),
    "synth-nli-judged": ("synth-nli", "nli_seeded_smollm2.judged.jsonl"),
    # after the self-instruct round (the seeded generator tuned again on its 1,503 judge-kept records): its records
    # from every Wikipedia seed, two sampling passes (>= 10,000 for the 10,000-row budget), raw and judged
    "synth-nli-si": ("synth-nli", "nli_si_smollm2.jsonl"),
    "synth-nli-si-judged": ("synth-nli", "nli_si_smollm2.judged.jsonl"),
    # what the owner of 500 labelled triplets gets by adding generated ones: those 500 + the first 2,060 raw records
    # of the seeded generator (the same records the synth-nli-seeded row starts with), shuffled together
    "mix-500-seeded": ("sup-simcse", "mix:nli_seeded_smollm2.generator_pairs.report.json+nli_seeded_smollm2.jsonl:2060"),
}
DEFAULT_ROWS = ("unsup-simcse", "sup-simcse", "synth-nli", "ngcse", "multicsr")  # the issue-5 table
# Rows that may repeat their data to fill the budget (more epochs, the same steps as every row), because a
# small set is the point: 500 labelled pairs for 5 epochs is what their owner would train
REPEAT_ROWS = ("sup-simcse-500", "multicsr-seeded", "synth-nli-judged", "synth-nli-si-judged")

# base -> (model spec, llmcse train settings, llmcse eval/rfd dtype)
BASES = {
    "minilm": ("all-MiniLM-L6-v2",
               ["max_seq_length=32", "eval_steps=7"], None),
    "smollm2": ("prompteol:SmolLM2-135M-Instruct",
                # LoRA as in the PromptEOL paper; one lr for every recipe (LoRA takes larger steps);
                # a 300-pair STS-B dev sample for checkpoint choice (the whole split costs minutes per check)
                # bf16 frozen base weights (adapters float32): ~2x faster steps on this CPU than float32;
                # gradient checkpointing: same gradients, ~12 GB -> ~3.5 GB per triplet step, so two runs fit in 24 GB
                ["lora_r=8", "lr=2e-4", "max_seq_length=64", "eval_steps=9", "eval_max_pairs=300", "dtype=bfloat16",
                 "gradient_checkpointing=true"], "bfloat16"),
    # the same in float32, for a CPU without bf16 instructions (bf16 is emulated there, ~10x slower): its own table,
    # since its rows are not comparable with the bf16 rows to the last decimal
    "smollm2-fp32": ("prompteol:SmolLM2-135M-Instruct",
                     ["lora_r=8", "lr=2e-4", "max_seq_length=64", "eval_steps=9", "eval_max_pairs=300", "dtype=float32",
                      "gradient_checkpointing=true"], None),
}
# The untrained SmolLM2 PromptEOL embedder is prompteol.md's "PromptEOL" row: the same model, dtype, STS
# tasks and 1,000-row transfer probe, so its two committed results make the base row (no second eval)
BASE_RESULTS = {"smollm2": [RESULTS / "prompteol" / "SmolLM2-135M-Instruct_prompteol" / "results.json",
                            RESULTS / "prompteol" / "SmolLM2-135M-Instruct" / "prompteol" / "transfer" / "results.json"]}
TRANSFER_MAX_EXAMPLES = 1000  # transfer probe on a seeded 1,000-row sample of every split: same for every row
RFD_PAIRS = 300


def data_path(spec: str) -> Path:
    from llmcse.data.paths import resolve_data_dir

    if spec.startswith("shared:"):
        return resolve_data_dir() / spec.removeprefix("shared:")
    if spec.startswith("seen:"):
        return seen_triplets(GENERATED / spec.removeprefix("seen:"))
    if spec.startswith("mix:"):
        report, rest = spec.removeprefix("mix:").split("+")
        generated, n = rest.rsplit(":", 1)
        return mixed_triplets(seen_triplets(GENERATED / report), data_path(generated), int(n))
    path = GENERATED / spec
    gz = path.with_name(path.name + ".gz")
    if not path.is_file() and gz.is_file():  # raw generations are committed gzipped
        path.write_bytes(gzip.decompress(gz.read_bytes()))
    return path


def write_if_changed(out: Path, text: str) -> Path:
    """A derived data file, rewritten only when its content changes (its mtime stays for resumed runs)."""
    if not out.is_file() or out.read_text(encoding="utf-8") != text:
        out.write_text(text, encoding="utf-8")
    return out


def seen_triplets(report: Path) -> Path:
    """The human triplets a record-pairs report lists (``triplets.tsv:LINE``), as a triplets TSV (git-ignored:
    shared data is not committed), in the report's order."""
    from llmcse.data.paths import resolve_data_dir

    sources = json.loads(report.read_text())["sources"]
    lines = (resolve_data_dir() / "nli" / "triplets.tsv").read_text(encoding="utf-8").splitlines()
    out = RUNS / "data" / (report.name.removesuffix(".report.json") + ".tsv")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join([lines[0], *(lines[int(src.rsplit(":", 1)[1]) - 1] for src in sources)]) + "\n"
    return write_if_changed(out, text)


def mixed_triplets(human: Path, generated: Path, n: int) -> Path:
    """The human triplets TSV + the first n generated records as (seed, positive, negative), shuffled (seed 0)
    into one triplets TSV (git-ignored, like the human rows it holds)."""
    from llmcse.utils.jsonl import read_jsonl

    lines = human.read_text(encoding="utf-8").splitlines()
    records = [r for _, r in zip(range(n), read_jsonl(generated))]
    if len(records) < n:
        sys.exit(f"{generated} has {len(records)} records; the mix needs {n}")
    rows = lines[1:] + ["\t".join(" ".join(r[k].split()) for k in ("seed", "positive", "negative")) for r in records]
    random.Random(0).shuffle(rows)
    out = RUNS / "data" / f"mix_{human.stem}+{generated.stem}_{n}.tsv"
    text = "\n".join([lines[0], *rows]) + "\n"
    return write_if_changed(out, text)


def data_rows(row: str) -> int:
    path = data_path(ROWS[row][1])
    lines = sum(1 for line in path.open(encoding="utf-8") if line.strip())
    return lines - (1 if path.suffix == ".tsv" else 0)


def epochs_for(row: str, pairs: int) -> float:
    """1, or for a repeat row with fewer rows than the budget, the epochs that give the budget's steps."""
    rows = data_rows(row)
    if row not in REPEAT_ROWS or rows >= pairs:
        return 1
    return round((pairs // BATCH) / -(-rows // BATCH), 4)  # steps wanted / steps per epoch (last batch partial)


def llmcse_command(*args: str) -> list[str]:
    """The command line for `llmcse ARGS` in this interpreter, echoed as it will run."""
    print("$ llmcse " + " ".join(args), flush=True)
    return [sys.executable, "-m", "llmcse.cli", "-q", *args]


def llmcse(*args: str) -> None:
    subprocess.run(llmcse_command(*args), check=True)


def budget_folder(base: str, pairs: int) -> Path:
    """<base>/ for the default budget (the first table), <base>/pairs<N>/ for a larger one."""
    return Path(base) if pairs == PAIRS else Path(base) / f"pairs{pairs}"


def run_folder(base: str, row: str, seed: int, pairs: int = PAIRS) -> Path:
    """The trained model (git-ignored); its checkpoints are beside it in <folder>.checkpoints/."""
    return RUNS / budget_folder(base, pairs) / row / f"seed{seed}"


def result_folder(base: str, row: str, seed: int, pairs: int = PAIRS) -> Path:
    """What the table is built from (committed): eval/, rfd/, llmcse_training.json, train_seconds.txt."""
    return RESULTS / "training" / budget_folder(base, pairs) / row / f"seed{seed}"


def train_settings(base: str, pairs: int) -> list[str]:
    """The base's `--set` overrides; a larger budget keeps about four dev checks (and RFD checkpoints) per run."""
    settings = BASES[base][1]
    if pairs == PAIRS:
        return list(settings)
    return [s for s in settings if not s.startswith("eval_steps=")] + [f"eval_steps={max(1, pairs // BATCH // 4)}"]


def has_enough_rows(row: str, pairs: int) -> bool:
    """A budget larger than a data set is skipped rather than silently repeated (the filtered set keeps 857)."""
    if row == "base" or row in REPEAT_ROWS:
        return True
    return data_rows(row) >= pairs


def train(base: str, row: str, seed: int, pairs: int = PAIRS) -> None:
    out, keep = run_folder(base, row, seed, pairs), result_folder(base, row, seed, pairs)
    if row == "base" or (keep / "llmcse_training.json").is_file():
        return
    if (out / "llmcse_training.json").is_file() and (out / "train_seconds.txt").is_file():  # trained, not yet copied
        keep.mkdir(parents=True, exist_ok=True)
        for name in ("llmcse_training.json", "train_seconds.txt"):
            shutil.copy(out / name, keep / name)
        return
    model = BASES[base][0]
    recipe, data = ROWS[row]
    sets = [*train_settings(base, pairs), f"max_examples={pairs}", f"batch_size={BATCH}",
            f"epochs={epochs_for(row, pairs)}", f"seed={seed}",
            "resume=true",
            # every checkpoint of seed 42 stays for the RFD trajectory
            f"keep_checkpoints={0 if seed == SEEDS[0] else 1}"]
    t0 = time.time()
    llmcse("train", "--recipe", recipe, "--data", str(data_path(data)), "--base", model, "--out", str(out),
           *[a for s in sets for a in ("--set", s)])
    (out / "train_seconds.txt").write_text(f"{time.time() - t0:.0f}\n")
    keep.mkdir(parents=True, exist_ok=True)
    for name in ("llmcse_training.json", "train_seconds.txt"):
        shutil.copy(out / name, keep / name)


def evaluate(base: str, row: str, seed: int, pairs: int = PAIRS, workers: int = 1) -> None:
    keep = result_folder(base, row, seed, pairs)
    if (keep / "eval" / "results.json").is_file():
        return
    model, _, dtype = BASES[base]
    if row == "base" and base in BASE_RESULTS and all(path.is_file() for path in BASE_RESULTS[base]):
        combine_results(BASE_RESULTS[base], keep / "eval" / "results.json")
        return
    target = model if row == "base" else str(run_folder(base, row, seed, pairs))
    args = ["eval", "--model", target, "--transfer-max-examples", str(TRANSFER_MAX_EXAMPLES),
            *(["--dtype", dtype] if dtype else [])]
    if workers == 1:
        llmcse(*args, "--tasks", "sts,transfer", "--output-dir", str(keep / "eval"))
        return
    # the same tasks split over processes (a task's numbers do not depend on the others), then one result
    parts = [keep / "eval" / f"part{i}" for i in range(workers)]
    commands = [llmcse_command(*args, "--tasks", ",".join(tasks), "--output-dir", str(part))
                for tasks, part in zip(split_tasks(workers), parts)]
    processes = [subprocess.Popen(command) for command in commands]
    if any([process.wait() != 0 for process in processes]):  # a list: wait for every part before judging
        sys.exit(f"an eval part failed; see the output above ({keep / 'eval'})")
    combine_results([part / "results.json" for part in parts], keep / "eval" / "results.json")


# rough pairs per STS test set, to balance eval processes (a transfer task capped at 1,000 rows counts 1,000)
TASK_SIZES = {"sick": 4927, "sts14": 3750, "sts12": 3108, "sts15": 3000, "sts13": 1500, "stsb": 1379, "sts16": 1186}


def split_tasks(workers: int) -> list[list[str]]:
    """The STS and transfer tasks in `workers` groups of about equal size (largest first, each to the lightest)."""
    from llmcse.eval.run import GROUPS

    groups: list[list[str]] = [[] for _ in range(workers)]
    load = [0] * workers
    for task in sorted([*GROUPS["sts"], *GROUPS["transfer"]], key=lambda t: -TASK_SIZES.get(t, 1000)):
        lightest = load.index(min(load))
        groups[lightest].append(task)
        load[lightest] += TASK_SIZES.get(task, 1000)
    return groups


def combine_results(parts: list[Path], out: Path) -> None:
    """One eval results.json from several: their tasks side by side, group averages recomputed over all of
    them (a part may hold half a group), and the sources named."""
    from llmcse.eval.run import compute_averages

    combined: dict = {"tasks": {}, "combined_from": [str(p.relative_to(REPO)) for p in parts]}
    for part in parts:
        result = json.loads(part.read_text())
        combined["tasks"].update(result["tasks"])
        combined.setdefault("dtype", result.get("dtype"))
    combined["averages"] = compute_averages(combined["tasks"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(combined, indent=2) + "\n")


def rfd(base: str, row: str, seed: int, pairs: int = PAIRS) -> None:
    keep = result_folder(base, row, seed, pairs)
    if row == "base" or seed != SEEDS[0] or (keep / "rfd" / "rfd.json").is_file():
        return
    _, _, dtype = BASES[base]
    llmcse("rfd", "--data", str(data_path(ROWS[row][1])), "--model-dir", str(run_folder(base, row, seed, pairs)),
           "--output-dir", str(keep / "rfd"),
           "--max-pairs", str(RFD_PAIRS), "--max-eval-sentences", str(2 * RFD_PAIRS), *(["--dtype", dtype] if dtype else []))


def drop_checkpoints(base: str, row: str, seed: int, pairs: int = PAIRS) -> None:
    """Checkpoints are only needed until RFD has read them (a MiniLM one is ~270 MB with its optimizer)."""
    out, keep = run_folder(base, row, seed, pairs), result_folder(base, row, seed, pairs)
    done = (keep / "eval" / "results.json").is_file() and (seed != SEEDS[0] or (keep / "rfd" / "rfd.json").is_file())
    if row != "base" and done:
        from llmcse.train.folders import checkpoints_dir

        for folder in (checkpoints_dir(out), out / "checkpoints"):  # beside the model; inside it before that layout
            if folder.is_dir():
                shutil.rmtree(folder)


def run(base: str, rows: list[str], seeds: list[int], pairs: int = PAIRS, eval_workers: int = 1) -> None:
    for seed in seeds:
        for row in rows:
            if not has_enough_rows(row, pairs):
                print(f"[{base} / {row}] skipped: {ROWS[row][1]} has fewer than {pairs} rows", flush=True)
                continue
            print(f"[{base} / {pairs} pairs / {row} / seed {seed}]", flush=True)
            train(base, row, seed, pairs)
            evaluate(base, row, seed, pairs, eval_workers)
            rfd(base, row, seed, pairs)
            drop_checkpoints(base, row, seed, pairs)
        build_table()


# ---------------------------------------------------------------- table


def read_run(base: str, row: str, seed: int, pairs: int = PAIRS) -> dict | None:
    out = result_folder(base, row, seed, pairs)
    ev = out / "eval" / "results.json"
    if not ev.is_file():
        return None
    r = json.loads(ev.read_text())
    run = {"seed": seed, "sts_avg": r["averages"].get("sts"), "stsb": r["tasks"]["stsb"]["main_score"],
           "transfer_avg": r["averages"].get("transfer"),
           "sts": {t: v["main_score"] for t, v in r["tasks"].items() if t.startswith(("sts", "sick"))}}
    training = out / "llmcse_training.json"
    if training.is_file():
        t = json.loads(training.read_text())
        run.update(steps=t["steps"], rows=t["rows"], dev_before=t["dev_spearman_before"], dev_after=t["dev_spearman_after"],
                   masked=t["masked_false_negatives"],
                   best_checkpoint=Path(t["best_checkpoint"]).name if t["best_checkpoint"] else None)
        seconds = out / "train_seconds.txt"
        run["train_seconds"] = int(seconds.read_text()) if seconds.is_file() else None
    rfd_file = out / "rfd" / "rfd.json"
    if rfd_file.is_file():
        result = json.loads(rfd_file.read_text())["runs"][0]
        run["rfd"] = {k: result[k] for k in ("rfd_alignment", "rfd_uniformity")}
        run["rfd_run"] = result
    return run


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def budgets(base: str) -> list[int]:
    """The default budget first, then every larger one that has a results folder."""
    found = sorted(int(p.name.removeprefix("pairs")) for p in (RESULTS / "training" / base).glob("pairs*") if p.is_dir())
    return [PAIRS, *found]


def build_table() -> dict:
    summary: dict = {}  # (base, pairs) -> row -> runs
    for base in BASES:
        for pairs in budgets(base):
            for row in ["base", *ROWS]:
                runs = [r for seed in SEEDS if (r := read_run(base, row, seed, pairs))]
                if runs:
                    summary.setdefault((base, pairs), {})[row] = runs
    lines = ["# Training on LLM-made data vs SimCSE baselines (issue #5)", "",
             f"Every row of a table: the same number of training rows ({PAIRS} unless the heading says more), batch {BATCH}, "
             f"one epoch ({PAIRS // BATCH} steps at {PAIRS}), STS-B dev sample "
             "for checkpoint choice. STS: Spearman x100, test splits, 7-task average (STS12-16 'all', STS-B, SICK-R). "
             f"Transfer: logistic-regression probe on a seeded {TRANSFER_MAX_EXAMPLES:,}-row sample of every split "
             "(cheaper than the full SentEval protocol, the same sample for every row; full-protocol numbers of the "
             "base models are in baselines.md). ± is the standard deviation over seeds "
             f"({', '.join(map(str, SEEDS))}); rows without ± ran with seed {SEEDS[0]} only. "
             "RFD (NGCSE): mean over checkpoints of train minus eval (STS-B dev pairs scored >= 4) alignment / uniformity; "
             "larger RFD alignment = training positives harder to pull together than the eval positives.", ""]
    for (base, pairs), rows in summary.items():
        model, _, dtype = BASES[base]
        settings = train_settings(base, pairs)
        budget = "" if pairs == PAIRS else f", {pairs:,} training rows ({pairs // BATCH} steps)"
        budget += ", float32 (a CPU without bf16)" if base.endswith("-fp32") else ""
        lines += [f"## Base: {model}{budget}", "", f"Train settings: `{' '.join(settings)}`; eval dtype {dtype or 'float32'}.", "",
                  "| row | data | STS avg | STS-B | transfer avg | RFD align | RFD unif | dev before → after | masked FN | seeds | train s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row, runs in rows.items():
            first = runs[0]
            data = "-" if row == "base" else Path(ROWS[row][1].split(":", 1)[-1]).name
            if row in REPEAT_ROWS and first.get("rows") and first["rows"] < pairs:
                data += f" ({first['rows']:,} rows x {epochs_for(row, pairs):g} epochs)"
            rfd = first.get("rfd", {})
            lines.append(
                f"| {row} | {data} | **{mean_std([r['sts_avg'] for r in runs])}** | {mean_std([r['stsb'] for r in runs])} | "
                f"{mean_std([r['transfer_avg'] for r in runs])} | "
                f"{rfd.get('rfd_alignment', '-')} | {rfd.get('rfd_uniformity', '-')} | "
                f"{first.get('dev_before', '-')} → {first.get('dev_after', '-')} | {first.get('masked') or '-'} | "
                f"{len(runs)} | {first.get('train_seconds') or '-'} |")
        lines += [""]
        ranked = [(runs[0]["rfd"]["rfd_alignment"], statistics.mean(r["sts_avg"] for r in runs), row)
                  for row, runs in rows.items() if "rfd" in runs[0]]
        if len(ranked) >= 3:
            from scipy.stats import spearmanr

            rho = spearmanr([a for a, _, _ in ranked], [b for _, b, _ in ranked]).statistic
            by_rfd = " < ".join(row for _, _, row in sorted(ranked))
            by_sts = " > ".join(row for _, _, row in sorted(ranked, key=lambda t: -t[1]))
            lines += [f"RFD vs STS: data sets by RFD alignment (easiest first): {by_rfd}; by STS avg (best first): "
                      f"{by_sts}; Spearman(RFD alignment, STS avg) = {rho:+.2f} over {len(ranked)} data sets "
                      "(NGCSE's claim: harder data, i.e. larger RFD, trains better embedders, so a positive value agrees).", ""]
        rfd_runs = [runs[0]["rfd_run"] for row, runs in rows.items() if "rfd_run" in runs[0]]
        if rfd_runs:
            from llmcse.eval.rfd import plot

            png = RESULTS / f"training_{base}{'' if pairs == PAIRS else f'_pairs{pairs}'}_rfd.png"
            plot(rfd_runs, png)
            lines += [f"![RFD trajectories, {model}]({png.name})", ""]
    lines += ["## Commands", "", "```bash", "python benchmarks/training.py --base minilm",
              "python benchmarks/training.py --base minilm --best-seeds 2", "python benchmarks/training.py --base smollm2",
              "python benchmarks/training.py --base smollm2 --pairs 2560 --rows base,unsup-simcse,sup-simcse,synth-nli,ngcse",
              "python benchmarks/training.py --base smollm2 --pairs 2560 --rows sup-simcse,ngcse --seeds 43,44  # --eval-workers 2 on a free core",
              "python benchmarks/training.py --base smollm2 --pairs 2560 --rows sup-simcse-500,synth-nli-seeded,multicsr-seeded,"
              "synth-nli-judged  # issue 23",
              "python benchmarks/training.py --base smollm2-fp32 --pairs 2560 --rows sup-simcse-500 --seeds 42  # issue 23 on an "
              "AVX2-only CPU, one row per process (OMP_NUM_THREADS=1), rows: sup-simcse-500, synth-nli-judged, ...",
              "```", "Each run's exact `llmcse train/eval/rfd` commands are printed by the script; the settings are above."]
    notes = RESULTS / "training_notes.md"
    if notes.is_file():
        lines += ["", notes.read_text().strip()]
    (RESULTS / "training.md").write_text("\n".join(lines) + "\n")
    compact = {str(budget_folder(base, pairs)): {row: [{k: v for k, v in r.items() if k != "rfd_run"} for r in runs]
                                                 for row, runs in rows.items()}
               for (base, pairs), rows in summary.items()}
    (RESULTS / "training.json").write_text(json.dumps({"pairs": PAIRS, "batch": BATCH, "transfer_max_examples": TRANSFER_MAX_EXAMPLES,
                                                       "results": compact}, indent=2) + "\n")
    return compact


def best_rows(base: str, n: int, pairs: int = PAIRS) -> list[str]:
    """The n trained rows with the highest STS average under the first seed."""
    scored = [(r["sts_avg"], row) for row in ROWS if (r := read_run(base, row, SEEDS[0], pairs))]
    return [row for _, row in sorted(scored, reverse=True)[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", choices=list(BASES), action="append")
    parser.add_argument("--rows", help="comma-separated subset of: base," + ",".join(ROWS))
    parser.add_argument("--best-seeds", type=int, metavar="N", help="also run seeds 43 and 44 for the N best rows")
    parser.add_argument("--seeds", help="with --rows: run exactly these seeds (comma-separated) for those rows, "
                                        "e.g. two processes side by side, one row each")
    parser.add_argument("--pairs", type=int, default=PAIRS,
                        help=f"training rows per run (default {PAIRS}); a larger budget is its own table, "
                             "and a data set with fewer rows is skipped")
    parser.add_argument("--eval-workers", type=int, default=1, metavar="N",
                        help="evaluate each model in N processes, the tasks split between them (one per free core)")
    parser.add_argument("--table", action="store_true", help="only rebuild the table")
    args = parser.parse_args()
    if not args.table:
        for base in args.base or list(BASES):
            rows = args.rows.split(",") if args.rows else ["base", *DEFAULT_ROWS]
            if args.seeds:
                run(base, rows, [int(s) for s in args.seeds.split(",")], args.pairs, args.eval_workers)
                continue
            run(base, rows, [SEEDS[0]], args.pairs, args.eval_workers)
            if args.best_seeds:
                run(base, best_rows(base, args.best_seeds, args.pairs), list(SEEDS[1:]), args.pairs, args.eval_workers)
    build_table()
    print((RESULTS / "training.md").read_text())


if __name__ == "__main__":
    main()
