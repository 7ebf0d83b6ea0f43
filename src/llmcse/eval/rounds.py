"""Round 1 (self-instruct) vs round 0 expansions, on the same report queries of one sweep.

A sweep names its rows ``<set> <weighting>`` (``filtered 1,1,1``) and ``<set> multirep <units>``.
For each round-1 set paired with its round-0 set (``filtered-r1`` with ``filtered``), every
row of the one is compared with the same row of the other, per query, with the paired
bootstrap CI and t-test of ``paired_comparison``; and the best row of each round on the tune
queries with each other (a choice made without the report queries).
"""

from __future__ import annotations


def _rows_of(result: dict, set_name: str) -> list[str]:
    return [r["setting"] for r in result["settings"] if r["setting"].startswith(set_name + " ")]


def _best_on_tune(result: dict, labels: list[str]) -> str | None:
    rows = {r["setting"]: r for r in result["settings"]}
    return max(labels, key=lambda label: rows[label]["tune"]["ndcg_at_10"]) if labels else None


def compare_rounds(result: dict, pairs: dict[str, str]) -> list[dict]:
    """``pairs``: round-1 set name -> its round-0 set name. One entry per compared row pair:
    ``{"round0", "round1", "report_round0", "report_round1", "vs_round0"}`` (paired comparison of
    round 1 against round 0 on the report queries); the last one compares the best rows on tune."""
    from llmcse.eval.retrieval import paired_comparison

    per_query = result.get("report_per_query")
    if not per_query:
        return []
    rows = {r["setting"]: r for r in result["settings"]}

    def entry(r0: str, r1: str, label: str | None = None) -> dict:
        return {"round0": r0, "round1": r1, "label": label or f"{r1} vs {r0}",
                "report_round0": rows[r0]["report"]["ndcg_at_10"], "report_round1": rows[r1]["report"]["ndcg_at_10"],
                "vs_round0": paired_comparison(per_query[r0], per_query[r1])}

    out, round0_rows, round1_rows = [], [], []
    for r1_set, r0_set in pairs.items():
        for label in _rows_of(result, r1_set):
            twin = r0_set + label[len(r1_set):]
            if twin in rows:
                out.append(entry(twin, label))
        round0_rows += _rows_of(result, r0_set)
        round1_rows += _rows_of(result, r1_set)
    best0, best1 = _best_on_tune(result, round0_rows), _best_on_tune(result, round1_rows)
    if best0 and best1:
        out.append(entry(best0, best1, "best on tune of each round"))
    return out


def rounds_table(comparisons: list[dict]) -> str:
    """Markdown: round 0 vs round 1 report nDCG@10 per row, with the paired CI of the difference."""
    from llmcse.eval.sweep import paired_cell

    lines = ["| setting | round 0 | round 1 (report nDCG@10) | round 1 vs round 0: 95% CI, p, better / worse |",
             "|---|---|---|---|"]
    for c in comparisons:
        label = c["label"] if c["label"] != "best on tune of each round" else \
            f"best on tune: `{c['round0']}` vs `{c['round1']}`"
        delta = c["report_round1"] - c["report_round0"]
        lines.append(f"| {label} | {c['report_round0']:.2f} | {c['report_round1']:.2f} ({delta:+.2f}) | "
                     f"{paired_cell(c['vs_round0'])} |")
    return "\n".join(lines) + "\n"
