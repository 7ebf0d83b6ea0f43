"""The run report renders in a real headless browser (Chromium from the OS packages)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium); .ci/run installs it")
def test_report_html_renders_in_headless_chromium(tmp_path):
    from llmcse.eval.report import build_report

    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "llmcse_training.json").write_text(
        '{"recipe": "synth-nli", "rows": 10, "steps": 4, "global_batch": 4, "eval_task": "stsb:dev", '
        '"dev_spearman_before": 80.0, "dev_spearman_after": 81.5, "log_history": '
        '[{"step": 2, "loss": 2.1}, {"step": 2, "eval_dev_spearman_cosine": 0.81}, {"step": 4, "loss": 1.7}, '
        '{"step": 4, "eval_dev_spearman_cosine": 0.815}]}')
    (run / "eval").mkdir()
    (run / "eval" / "before_after.md").write_text("| task | base | trained | change |\n|---|---|---|---|\n| stsb | 82.03 | 82.50 | +0.47 |\n")
    _, page = build_report(run)
    shot = tmp_path / "shot.png"
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "<h2>Training</h2>" in dom and "<td>82.50</td>" in dom  # parsed and laid out by the browser
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,1200",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000  # a real picture: text, table and the embedded plot
