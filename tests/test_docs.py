"""The generated documentation (issue 24.8): docs/cli.md comes from the stage registry and the real
parser, the README's results table from the committed JSON, and every link in the docs resolves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import llmcse.pipeline  # noqa: F401 - registers the run command, as building the CLI does
from llmcse import docs
from llmcse.errors import LlmcseError
from llmcse.stages import STAGES, Stage, opt

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def test_the_committed_docs_are_what_the_generator_writes_now():
    out = subprocess.run([sys.executable, "-m", "llmcse.docs", "--check"], capture_output=True, text=True, cwd=REPO)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


@dataclass
class ToyConfig:
    out: str = opt(help="where the toys go")
    count: int = opt(3, "how many toys the toy stage counts")


def test_a_registered_stage_and_its_field_help_appear_in_the_regenerated_cli_reference(monkeypatch):
    toy = Stage(name="toy-count", help="counts toys (a stage registered by a test)", config=ToyConfig,
                run=lambda cfg: None)
    before = docs.render_cli()
    monkeypatch.setitem(STAGES._entries, "toy-count", toy)
    after = docs.render_cli()
    assert "toy-count" not in before
    assert "| [`llmcse toy-count`](#llmcse-toy-count) | counts toys (a stage registered by a test) |" in after
    section = after.split("## llmcse toy-count\n", 1)[1]
    assert "usage: llmcse toy-count [-h] --out OUT [--count COUNT]" in section
    assert re.search(r"--count COUNT\s+how many toys the toy stage counts \(default: 3\)", section)


def test_every_registered_command_has_a_section_in_docs_cli_md():
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^## llmcse (\S+)$", text, re.M))
    assert set(STAGES) <= headings
    assert len(STAGES) >= 19  # 15 stages, prompteol, serve-llm, data and run (once llmcse.cli built its parser)
    assert "### llmcse data list" in text


def test_every_shipped_recipe_is_in_the_recipes_table():
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    recipes = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "recipes").glob("*.toml"))
    assert recipes and [r for r in recipes if f"| `{r}` |" not in text] == []


def _headings(path: Path) -> set[str]:
    body = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {docs._anchor(h) for h in re.findall(r"^#+ (.+)$", body, re.M)}


def test_every_relative_link_in_the_readme_and_docs_points_to_an_existing_file_and_heading():
    broken = []
    for path in DOC_FILES:
        body = re.sub(r"`[^`\n]*`", "", FENCE.sub("", path.read_text(encoding="utf-8")))  # code is not links
        for target in LINK.findall(body):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                broken.append(f"{path.relative_to(REPO)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _headings(linked):
                broken.append(f"{path.relative_to(REPO)}: {target} (no such heading)")
    assert len(DOC_FILES) >= 8 and broken == []


def test_the_readme_table_shows_the_numbers_of_the_committed_json():
    rows = json.loads((REPO / docs.BASELINES_JSON).read_text())
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split(docs.BEGIN, 1)[1].split(docs.END, 1)[0]
    minilm = rows["all-MiniLM-L6-v2"]
    assert "| all-MiniLM-L6-v2 | 78.87 | 82.03 | 83.18 | 50.17 |" in table
    assert f"{minilm['averages']['sts']:.2f}" == "78.87"
    assert "| BM25 (bm25s) | n/a | n/a | n/a | 49.29 |" in table
    assert "[`benchmarks/results/baselines.json`](benchmarks/results/baselines.json)" in table
    assert "[`benchmarks/results/baselines.json`](../benchmarks/results/baselines.json)" in (
        REPO / "docs" / "results.md").read_text(encoding="utf-8")


@pytest.fixture()
def checkout(tmp_path) -> Path:
    """The generator's inputs and outputs, copied: a tree the tests may change."""
    for rel in ("README.md", "docs/results.md", "docs/cli.intro.md", "docs/cli.md", str(docs.BASELINES_JSON)):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    return tmp_path


def test_check_lists_what_a_changed_json_or_intro_makes_stale_and_a_rerun_fixes_it(checkout, capsys):
    path = checkout / docs.BASELINES_JSON
    rows = json.loads(path.read_text())
    rows["all-MiniLM-L6-v2"]["averages"]["sts"] = 80.004
    path.write_text(json.dumps(rows))
    intro = checkout / docs.CLI_INTRO
    intro.write_text(intro.read_text() + "\nA sentence added to the intro.\n")

    assert docs.main(["--check", "--root", str(checkout)]) == 1
    assert capsys.readouterr().out.splitlines() == [f"stale: {p} (regenerate: python -m llmcse.docs)"
                                                   for p in ("docs/cli.md", "README.md", "docs/results.md")]
    assert docs.main(["--root", str(checkout)]) == 0
    assert "| all-MiniLM-L6-v2 | 80.00 | 82.03 | 83.18 | 50.17 |" in (checkout / "README.md").read_text()
    assert "A sentence added to the intro." in (checkout / "docs/cli.md").read_text()
    assert docs.stale_files(checkout) == []


def test_a_readme_without_markers_or_a_cli_md_not_ours_is_one_error_and_nothing_is_written(checkout, capsys):
    readme = checkout / "README.md"
    readme.write_text(readme.read_text().replace(docs.END, ""))
    with pytest.raises(LlmcseError, match=r"README.md: needs one <!-- results:begin --> line"):
        docs.stale_files(checkout)
    assert docs.main(["--root", str(checkout)]) == 2
    assert capsys.readouterr().err.count("\n") == 1

    shutil.copy(REPO / "README.md", readme)
    mine = "# my own notes\n"
    (checkout / docs.CLI_DOC).write_text(mine)
    with pytest.raises(LlmcseError, match="not written by python -m llmcse.docs"):
        docs.write_docs(checkout)
    assert (checkout / docs.CLI_DOC).read_text() == mine
