"""Where benchmark data lives: ``--data-dir`` > ``$LLMCSE_DATA`` > ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

from llmcse.errors import MissingDataError

ENV_VAR = "LLMCSE_DATA"


def _repo_root() -> Path | None:
    """The source checkout this package runs from (editable installs), if any."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "llmcse").is_dir():
            return parent
    return None


def default_data_dir_candidates() -> list[Path]:
    """``shared/data`` beside the repo checkout, then beside the working directory."""
    candidates = []
    root = _repo_root()
    if root is not None:
        candidates.append(root.parent / "shared" / "data")
    cwd = Path.cwd().resolve()
    for base in (cwd, *cwd.parents[:2]):
        candidates.append(base.parent / "shared" / "data")
    seen, unique = set(), []
    for c in candidates:
        if c not in seen:
            seen.add(c)
            unique.append(c)
    return unique


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """Find the benchmark data folder.

    Args:
        data_dir: An explicit folder (the ``--data-dir`` flag). Wins over everything.

    Returns:
        The folder, resolved to an absolute path.

    Raises:
        MissingDataError: The folder does not exist; the message lists every place looked.
    """
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise MissingDataError(f"data dir {str(path)!r} (from --data-dir) does not exist")
        return path.resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise MissingDataError(f"data dir {env!r} (from ${ENV_VAR}) does not exist")
        return path.resolve()
    candidates = default_data_dir_candidates()
    for c in candidates:
        if c.is_dir():
            return c
    looked = ", ".join(str(c) for c in candidates)
    raise MissingDataError(
        f"no benchmark data found: pass --data-dir DIR or set ${ENV_VAR}; looked in {looked}. "
        "The folder holds sts/, beir/, transfer/, nli/, unlabeled/ (see README, 'Data')."
    )
