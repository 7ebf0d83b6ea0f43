"""When to draw progress bars: one rule for every long loop (generation, filtering, encoding, training)."""

from __future__ import annotations

import logging
import os


def progress_enabled(show_progress_bar: bool | None) -> bool:
    """Explicit choice wins; otherwise show bars at INFO level or lower, never under CI."""
    if show_progress_bar is not None:
        return show_progress_bar
    if os.environ.get("CI"):
        return False
    return logging.getLogger("llmcse").getEffectiveLevel() <= logging.INFO
