"""A tiny name -> object registry with helpful errors (the ir_datasets/peft habit)."""

from __future__ import annotations

import difflib
import importlib
import logging
from collections.abc import Iterator
from typing import Generic, TypeVar

from llmcse.errors import UnknownNameError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def did_you_mean(name: str, valid: list[str]) -> str:
    """``" Did you mean 'x'?"`` for the closest valid name, or an empty string."""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def load_target(target):
    """``"package.module:name"`` -> that object, importing the module now; anything else is returned
    as is. Registries name heavy classes by path so that importing a registry stays light (no torch
    until a loss is built, no transformers until an LLM loads); a plugin may pass the object itself."""
    if not isinstance(target, str):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


class Registry(Generic[T]):
    """Maps lower-case names to entries; a second registration of a name raises.

    Args:
        kind: What the entries are ("task", "model"), used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, entry: T, *, aliases: tuple[str, ...] = ()) -> T:
        key = name.lower()
        if key in self._entries or key in self._aliases:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[key] = entry
        for alias in aliases:
            self._aliases[alias.lower()] = key
        return entry

    def resolve_name(self, name: str) -> str:
        key = name.lower()
        if key in self._entries:
            return key
        if key in self._aliases:
            return self._aliases[key]
        valid = sorted(self._entries)
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}.{did_you_mean(key, valid + sorted(self._aliases))} "
            f"Valid: {', '.join(valid) or '(none found)'}"
        )

    def get(self, name: str) -> T:
        return self._entries[self.resolve_name(name)]

    def __contains__(self, name: str) -> bool:
        key = name.lower()
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self):
        return self._entries.items()
