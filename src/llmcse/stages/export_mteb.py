"""``export-mteb``: MTEB result files from an ``llmcse eval`` results.json (``eval.mteb.export_mteb``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llmcse.stages.base import Flag, Stage, StageResult, opt


@dataclass
class ExportMtebConfig:
    results: str = opt(help="results.json of llmcse eval, or the --output-dir holding it")
    out: str = opt(help="an MTEB results cache folder: files go to OUT/results/<model>/<revision>/")
    model_name: str | None = opt(None, "MTEB model name org/name (default: the hub id of a hub or bundled model, "
                                       "else local/<name>)")
    revision: str | None = opt(None, "model revision folder (default: MTEB's no_revision_available)")


@dataclass
class ExportMtebResult(StageResult):
    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # llmcse task -> why MTEB has no file for it


def run(cfg: ExportMtebConfig) -> ExportMtebResult:
    from llmcse.eval.mteb import export_mteb

    export = export_mteb(cfg.results, cfg.out, model_name=cfg.model_name, revision=cfg.revision)
    return ExportMtebResult({"export": export}, export.written, export.skipped)


def summary(cfg: ExportMtebConfig, result: ExportMtebResult) -> str:
    from llmcse.eval.mteb import summary as mteb_summary

    return mteb_summary(result.summary["export"], cfg.out)


STAGE = Stage(
    name="export-mteb", help="MTEB result files (MTEB's task names, splits and scores) from an llmcse results.json",
    config=ExportMtebConfig, run=run, summary=summary,
    library_checks_files=True,  # export_mteb names a missing file, a folder without results.json, a foreign file
    flags={"results": Flag(names=("results",))},
    epilog="example:\n  llmcse eval --model all-MiniLM-L6-v2 --tasks sts --output-dir runs/minilm\n"
           "  llmcse export-mteb runs/minilm --out runs/mteb-cache\n"
           "  python -c \"import mteb; print(mteb.ResultCache('runs/mteb-cache').load_results())\"",
)
