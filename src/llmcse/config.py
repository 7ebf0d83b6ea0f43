"""Recipe files: TOML sections mapped onto dataclasses, with checked overrides.

A recipe lists only deviations from the dataclass defaults, each with a comment saying why.
Unknown sections or keys are errors (with a "did you mean"); ``--set section.key=value``
overrides are parsed and type-checked against the field's type. The resolved config and its
hash go into every run folder and results file.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from llmcse.errors import LlmcseError
from llmcse.utils.io import config_hash
from llmcse.utils.registry import did_you_mean


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check (and for --set strings, parse) ``value`` against a field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except LlmcseError as e:
                errors.append(str(e))
        raise LlmcseError(errors[0] if errors else f"{where}: bad value {value!r}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise LlmcseError(f"{where}: expected true or false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise LlmcseError(f"{where}: expected {annotation.__name__}, got {value!r}")
        if isinstance(value, (int, float)) and (annotation is float or isinstance(value, int)):
            return annotation(value)
        if isinstance(value, str):
            try:
                return annotation(value)
            except ValueError:
                pass
        raise LlmcseError(f"{where}: expected {annotation.__name__}, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise LlmcseError(f"{where}: expected a string, got {value!r}")
    return value  # lists/dicts: taken as TOML gives them


def build_section(cls, values: dict[str, Any], section: str):
    """Instantiate dataclass ``cls`` from a dict, rejecting unknown keys and wrong types."""
    types_ = _field_types(cls)
    unknown = [k for k in values if k not in types_]
    if unknown:
        key = unknown[0]
        raise LlmcseError(f"unknown key {section}.{key}.{did_you_mean(key, list(types_))} "
                          f"Valid keys in [{section}]: {', '.join(types_)}")
    return cls(**{k: _coerce(v, types_[k], f"{section}.{k}") for k, v in values.items()})


def parse_override(text: str) -> tuple[str, str, str]:
    """``section.key=value`` -> (section, key, value as text)."""
    path, eq, value = text.partition("=")
    section, dot, key = path.strip().partition(".")
    if not eq or not dot or not section or not key:
        raise LlmcseError(f"--set expects section.key=value, got {text!r}")
    return section, key, value.strip()


def load_recipe(path: str | Path | None, sections: dict[str, type], overrides: list[str] = ()) -> dict[str, Any]:
    """Load a recipe file into one dataclass per section, apply ``--set`` overrides.

    Args:
        path: The TOML file (None: defaults only).
        sections: section name -> dataclass type.
        overrides: ``section.key=value`` strings.

    Returns:
        section name -> dataclass instance.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LlmcseError(f"recipe {path} not found") from None
        except tomllib.TOMLDecodeError as e:
            raise LlmcseError(f"{path}: invalid TOML: {e}") from None
    unknown = [s for s in raw if s not in sections]
    if unknown:
        raise LlmcseError(f"{path}: unknown section [{unknown[0]}].{did_you_mean(unknown[0], list(sections))} "
                          f"Valid: {', '.join(sections)}")
    for text in overrides:
        section, key, value = parse_override(text)
        if section not in sections:
            raise LlmcseError(f"--set {text}: unknown section {section!r}.{did_you_mean(section, list(sections))}")
        raw.setdefault(section, {})[key] = value
    return {name: build_section(cls, raw.get(name, {}), name) for name, cls in sections.items()}


def resolved(config: dict[str, Any]) -> dict[str, Any]:
    """Plain dict of every section (defaults included) plus its hash, for run folders and results."""
    plain = {name: dataclasses.asdict(section) for name, section in config.items()}
    return {"config": plain, "config_hash": config_hash(plain)}
