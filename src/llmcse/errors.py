"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class LlmcseError(Exception):
    """Base class: a problem with the user's input or setup, never a bug in llmcse."""


class DataFormatError(LlmcseError, ValueError):
    """A data file is malformed. The message always starts with ``file:line:``."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class MissingDataError(LlmcseError, FileNotFoundError):
    """A data set or data directory could not be found where it was looked for."""


class UnknownNameError(LlmcseError, KeyError):
    """An unknown registry name (task, model alias, ...). ``str()`` gives the full message."""

    def __str__(self) -> str:  # KeyError would repr() the message, adding quotes
        return str(self.args[0])
