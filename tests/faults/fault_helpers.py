"""What the fault tests share: a byte-for-byte picture of a folder (to show nothing changed) and
the CLI run in-process with its exit code and stderr."""

from __future__ import annotations

from pathlib import Path

from llmcse.cli import main


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` -> its bytes (None for folders)."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def cli(argv: list[str], capsys) -> tuple[int, str]:
    """Run ``llmcse argv``: (exit code, stderr); argparse's own errors exit through SystemExit."""
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err
