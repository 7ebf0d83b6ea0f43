"""Recipe files: TOML sections mapped onto dataclasses, with checked overrides.

A recipe lists only deviations from the dataclass defaults, each with a comment saying why.
Unknown sections or keys are errors (with a "did you mean"); ``--set section.key=value``
overrides are parsed and type-checked against the field's type. The resolved config and its
hash go into every run folder and results file.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass
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
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (annotation is float or isinstance(value, int)):
            number = annotation(value)
        elif isinstance(value, str):
            try:
                number = annotation(value)
            except ValueError:
                pass
        if number is None or not math.isfinite(number):  # TOML and float() both accept inf and nan
            expected = "int" if annotation is int else "a finite number" if number is not None else "a number"
            raise LlmcseError(f"{where}: expected {expected}, got {value!r}")
        return number
    if annotation is str:
        if isinstance(value, str):
            return value
        raise LlmcseError(f"{where}: expected a string, got {value!r}")
    if origin is list:
        if isinstance(value, str):  # --set run.stages=train,eval: the section splits it
            return value
        if not isinstance(value, list):
            raise LlmcseError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(annotation) or (Any,)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    return value  # dicts / Any: taken as TOML gives them


def build_section(cls, values: dict[str, Any], section: str, sources: dict[str, str] | None = None):
    """Instantiate dataclass ``cls`` from a dict, rejecting unknown keys and wrong types.

    ``sources``: key -> where its value came from (``"r.toml: "``, ``"--set "``), to prefix errors.
    """
    types_ = _field_types(cls)
    unknown = [k for k in values if k not in types_]
    if unknown:
        key = unknown[0]
        raise LlmcseError(f"unknown key {section}.{key}.{did_you_mean(key, list(types_))} "
                          f"Valid keys in [{section}]: {', '.join(types_)}")
    sources = sources or {}
    return cls(**{k: _coerce(v, types_[k], f"{sources.get(k, '')}{section}.{k}") for k, v in values.items()})


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric setting: ``low``/``high`` bounds (None: unbounded), open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is not allowed
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or (value < self.high or (not self.high_open and value == self.high))

    def describe(self, noun: str = "a number") -> str:
        if self.high is None:
            return f"{noun} {'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{noun} {'<' if self.high_open else '<='} {self.high:g}"
        return f"{noun} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


def check_values(config: dict[str, Any], rules: dict[str, Range | tuple], sources: dict[str, str] | None = None) -> None:
    """Check ``section.key`` values (None is left alone: it means "unset") against a Range or a tuple of
    choices. ``sources``: ``section.key`` -> where the value came from, to prefix the error."""
    for name, rule in rules.items():
        section, _, key = name.partition(".")
        value = getattr(config.get(section), key, None)
        if value is None or isinstance(value, bool):
            continue
        if value not in rule:
            noun = "an integer" if isinstance(value, int) else "a number"
            expected = rule.describe(noun) if isinstance(rule, Range) else "one of " + ", ".join(map(repr, rule))
            raise LlmcseError(f"{(sources or {}).get(name, '')}{name} = {value!r}: expected {expected}")


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
    sources = value_sources(path, overrides)
    for text in overrides:
        section, key, value = parse_override(text)
        if section not in sections:
            raise LlmcseError(f"--set {text}: unknown section {section!r}.{did_you_mean(section, list(sections))}")
        raw.setdefault(section, {})[key] = value
    for name, values in raw.items():
        if not isinstance(values, dict):  # `generate = 5` at the top level: not a [section]
            raise LlmcseError(f"{path}: {name} = {values!r}: expected a [{name}] section")
    return {name: build_section(cls, raw.get(name, {}), name,
                                {k: sources.get(f"{name}.{k}", "") for k in raw.get(name, {})})
            for name, cls in sections.items()}


def value_sources(path: str | Path | None, overrides: list[str] = ()) -> dict[str, str]:
    """``section.key`` -> where its value comes from (``"r.toml: "`` or ``"--set "``), for error messages."""
    raw = tomllib.loads(Path(path).read_text(encoding="utf-8")) if path is not None else {}
    sources = {f"{s}.{k}": f"{path}: " for s, keys in raw.items() if isinstance(keys, dict) for k in keys}
    return sources | {".".join(parse_override(o)[:2]): "--set " for o in overrides}


def resolved(config: dict[str, Any]) -> dict[str, Any]:
    """Plain dict of every section (defaults included) plus its hash, for run folders and results."""
    plain = {name: dataclasses.asdict(section) for name, section in config.items()}
    return {"config": plain, "config_hash": config_hash(plain)}
