"""A run's report: ``report.md`` and a self-contained ``report.html`` (plots embedded as PNG data).

Sections, each present when its inputs exist in the run folder: data (kept / rejected by
reason, examples), filtering (thresholds, drops by reason), training (loss and dev Spearman
curves), evaluation (base vs trained per task), and for retrieval recipes the expansions, their
filters, round 1 and the sweep. Each section is one function; a stage names its own as its
report hook (``llmcse.stages``).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]


def _counts_table(header: list[str], counts: dict[str, int]) -> list[str]:
    """A reason/count table, most frequent first, followed by a blank line; nothing for no counts."""
    if not counts:
        return []
    return _table(header, [[k, v] for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]) + [""]


def _training_plot(log_history: list[dict]) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    dev = [(e["step"], e["eval_dev_spearman_cosine"]) for e in log_history if "eval_dev_spearman_cosine" in e]
    if not losses and not dev:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if losses:
        ax.plot(*zip(*losses), marker="o", label="training loss")
        ax.set_ylabel("loss")
    ax.set_xlabel("step")
    if dev:
        ax2 = ax.twinx()
        ax2.plot(*zip(*dev), marker="s", color="C1", label="dev Spearman")
        ax2.set_ylabel("dev Spearman (cosine)")
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def generate_section(run_dir: Path, images: dict[str, bytes]) -> list[str]:
    gen = _load(run_dir / "generated.summary.json")
    if not gen:
        return []
    return ["## Generated data", "",
            f"{gen['seeds_done']} seeds, {gen['kept']} records kept ({gen['kept_fraction']}), "
            f"{gen['rejected']} seeds rejected (recipe `{gen['recipe']}`, prompt `{gen['prompt_id']}` "
            f"v{gen['prompt_version']}).", ""] + _counts_table(["rejected attempt reason", "count"],
                                                                gen["field_rejections_by_reason"])


def filter_section(run_dir: Path, images: dict[str, bytes]) -> list[str]:
    filt = _load(run_dir / "kept.report.json")
    if not filt:
        return []
    t = filt["thresholds"]
    md = ["## Filtering", "",
          f"{filt['kept']} of {filt['total']} records kept ({filt['kept_fraction']}); thresholds "
          f"({t['from']}): positive >= {t['t_pos']}, negative <= {t['t_neg']}.", ""]
    md += _counts_table(["dropped because", "count"], filt["dropped_by_reason"])
    examples = filt.get("examples_kept", [])[:3]
    if examples:
        md += ["Kept examples:", ""] + _table(["seed", "positive", "negative"],
                                              [[e.get("seed"), e.get("positive"), e.get("negative")] for e in examples]) + [""]
    dropped = [(reason, e) for reason, items in filt.get("examples_dropped", {}).items() for e in items[:1]]
    if dropped:
        md += ["Dropped examples:", ""] + _table(["reason", "seed", "positive", "negative"],
                                                 [[r, e.get("seed"), e.get("positive"), e.get("negative")]
                                                  for r, e in dropped]) + [""]
    return md


def train_section(run_dir: Path, images: dict[str, bytes]) -> list[str]:
    train = _load(run_dir / "model" / "llmcse_training.json")
    if not train:
        return []
    md = ["## Training", "",
          f"Recipe `{train['recipe']}`, {train['rows']} rows, {train['steps']} steps, global batch "
          f"{train['global_batch']}; {train['eval_task']} Spearman {train['dev_spearman_before']} -> "
          f"{train['dev_spearman_after']}.", ""]
    png = _training_plot(train.get("log_history", []))
    if png:
        images["training.png"] = png
        md += ["![training curves](training.png)", ""]
    return md


def eval_section(run_dir: Path, images: dict[str, bytes]) -> list[str]:
    before_after = run_dir / "eval" / "before_after.md"
    if not before_after.exists():
        return []
    return ["## Evaluation", "", before_after.read_text(encoding="utf-8").strip(), ""]


def rfd_section(run_dir: Path, images: dict[str, bytes]) -> list[str]:
    rfd_png = run_dir / "rfd" / "rfd.png"
    if not rfd_png.exists():
        return []
    images["rfd.png"] = rfd_png.read_bytes()
    return ["## Relative Fitting Difficulty", "", "![RFD](rfd.png)", ""]


def expand_section(run_dir: Path, images: dict[str, bytes]) -> list[str]:
    exp = _load(run_dir / "expansions.summary.json")
    if not exp:
        return []
    return ["## Synthetic queries and keywords", "",
            f"{exp['documents']} documents expanded: mean {exp['mean_queries']} queries and {exp['mean_keywords']} "
            f"keywords each; {exp['with_all_queries']} with every query asked for, {exp['without_queries']} with none; "
            f"{exp['truncated_documents']} truncated.", ""] + _counts_table(["rejected output reason", "count"],
                                                                            exp.get("rejections_by_reason", {}))


def filter_expansions_section(run_dir: Path, images: dict[str, bytes]) -> list[str]:
    """The keyword check and the round-trip filter of round 0."""
    md: list[str] = []
    rt = _load(run_dir / "expansions.rt.report.json")
    if rt and rt.get("keyword_check"):
        kw = rt["keyword_check"]
        md += [f"Keyword check: kept {kw['kept']} of {kw['keywords']} keywords; "
               f"{kw['documents_left_without_keywords']} documents lost all of theirs.", ""]
        md += _counts_table(["rejected keyword reason", "count"], kw["rejected_by_reason"])
    if rt and rt.get("top_k"):
        md += [f"Round-trip filter ({rt['model']}): kept {rt['kept']} of {rt['queries']} queries ({rt['kept_fraction']}); "
               f"{rt['documents_left_without_queries']} documents lost all of theirs.", ""]
    return md


def sweep_section(run_dir: Path, images: dict[str, bytes]) -> list[str]:
    md: list[str] = []
    sweep = run_dir / "sweep" / "sweep.md"
    if sweep.exists():
        md += ["## Retrieval", "", sweep.read_text(encoding="utf-8").strip(), ""]
    rounds = run_dir / "sweep" / "rounds.md"
    if rounds.exists():
        md += ["## Round 1 vs round 0", "", rounds.read_text(encoding="utf-8").strip(), ""]
    return md


def round1_section(run_dir: Path, images: dict[str, bytes]) -> list[str]:
    """Self-instruct (recipes/retrieval-self-instruct.toml): training pairs, tuning, round-1 expansion and filter."""
    md: list[str] = []
    pairs = _load(run_dir / "self_instruct.pairs.report.json")
    tune = _load(run_dir / "generator" / "tune_generator.json")
    if pairs or tune:
        md += ["## Self-instruct tuning", ""]
    if pairs:
        md += [f"{pairs['pairs']} training pairs ({pairs['query_pairs']} queries, {pairs['keyword_pairs']} keyword "
               f"lists) from {pairs['documents']} documents, prompts of {pairs['template']}.", ""]
    if tune:
        loss = "" if tune.get("first_loss") is None else f", loss {tune['first_loss']:.3f} -> {tune['final_loss']:.3f}"
        md += [f"`{tune['base']}` tuned on {tune['examples']} pairs ({tune['dropped_too_long']} too long): "
               f"{tune['steps']} steps{loss}, {tune['seconds_this_run']} s in the last run.", ""]
    exp = _load(run_dir / "expansions.r1.summary.json")
    if exp:
        md += [f"Round 1 (tuned generator): {exp['documents']} documents expanded, mean {exp['mean_queries']} queries "
               f"and {exp['mean_keywords']} keywords each; {exp['without_queries']} with no query.", ""]
    rt = _load(run_dir / "expansions.r1.rt.report.json")
    if rt and rt.get("top_k"):
        md += [f"Round 1 round-trip filter: kept {rt['kept']} of {rt['queries']} queries ({rt['kept_fraction']}).", ""]
    return md


# the report's sections in pipeline order; ``llmcse run`` passes the stage registry's hooks, the same
# functions in the same order (tests/test_stages.py checks that they agree)
DEFAULT_SECTIONS = (generate_section, filter_section, train_section, eval_section, expand_section,
                    filter_expansions_section, round1_section, sweep_section, rfd_section)


def build_report(run_dir: str | Path, sections: Sequence[Callable[[Path, dict], list[str]]] | None = None
                 ) -> tuple[Path, Path]:
    """Write report.md and report.html into ``run_dir``; returns their paths. ``sections``: functions
    (run folder, images) -> markdown lines, each empty when its stage's outputs are not there."""
    run_dir = Path(run_dir)
    md: list[str] = [f"# llmcse run report: `{run_dir.name}`", ""]
    images: dict[str, bytes] = {}
    for section in DEFAULT_SECTIONS if sections is None else sections:
        md += section(run_dir, images)

    for name, data in images.items():  # beside report.md, so the markdown's image links work too
        (run_dir / name).write_bytes(data)
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    html_path.write_text(markdown_to_html("\n".join(md), images), encoding="utf-8")
    return md_path, html_path


def markdown_to_html(text: str, images: dict[str, bytes]) -> str:
    """The small markdown subset the report uses (headings, paragraphs, tables, images, `code`)."""
    import re

    def inline(s: str) -> str:
        s = html.escape(s)
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", s)

    body, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("!["):
            alt, name = re.match(r"!\[(.*?)\]\((.*?)\)", line).groups()
            data = base64.b64encode(images.get(name, b"")).decode()
            body.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                if not set(lines[i]) <= set("|-: "):
                    rows.append([c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", lines[i])[1:-1]])
                i += 1
            head, *rest = rows
            body.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>" +
                        "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rest) + "</table>")
            continue
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
        i += 1
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
             "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;"
             "text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>llmcse report</title><style>{style}</style>" \
           f"</head><body>{''.join(body)}</body></html>\n"
