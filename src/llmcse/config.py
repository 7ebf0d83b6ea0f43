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


def load_recipe(path: str | Path | None, sections: dict[str, type], overrides: list[str] = (),
                tables: dict[str, dict[str, str]] | None = None,
                wired: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Load a recipe file into one dataclass per section, apply ``--set`` overrides.

    Args:
        path: The TOML file (None: defaults only).
        sections: section name -> dataclass type.
        overrides: ``section.key=value`` strings (``section.table.key=value`` for a sub-table's key).
        tables: sub-table name -> {its key -> the section field it sets}: ``[generate.llm] spec = ...``
            sets ``generate.llm``.
        wired: section -> {field: placeholder}: fields the caller sets itself (a run's files); a recipe
            that sets one is refused.

    Returns:
        section name -> dataclass instance.
    """
    raw = _read_toml(path)
    unknown = [s for s in raw if s not in sections]
    if unknown:
        raise LlmcseError(f"{path}: unknown section [{unknown[0]}].{did_you_mean(unknown[0], list(sections))} "
                          f"Valid: {', '.join(sections)}")
    sources = value_sources(path, overrides, tables)
    for name, values in raw.items():
        if not isinstance(values, dict):  # `generate = 5` at the top level: not a [section]
            raise LlmcseError(f"{path}: {name} = {values!r}: expected a [{name}] section")
    def tables_of(name: str) -> dict[str, dict[str, str]]:  # a sub-table [x.llm] only where x has an llm field
        return {t: keys for t, keys in (tables or {}).items() if t in _field_types(sections[name])}

    raw = {name: _flatten(values, name, tables_of(name), f"{path}: ") for name, values in raw.items()}
    for text in overrides:
        section, key, value = parse_override(text)
        if section not in sections:
            raise LlmcseError(f"--set {text}: unknown section {section!r}.{did_you_mean(section, list(sections))}")
        raw.setdefault(section, {}).update(_flatten({key: value}, section, tables_of(section), "--set "))
    for name, values in raw.items():
        for key in (wired or {}).get(name, {}):
            if key in values:
                raise LlmcseError(f"{sources.get(f'{name}.{key}', '')}{name}.{key} is set by the run (its own files "
                                  "and data dir); remove it")
    return {name: build_section(cls, {**(wired or {}).get(name, {}), **raw.get(name, {})}, name,
                                {k: sources.get(f"{name}.{k}", "") for k in raw.get(name, {})})
            for name, cls in sections.items()}


def _read_toml(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LlmcseError(f"recipe {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise LlmcseError(f"{path}: invalid TOML: {e}") from None


def _flatten(values: dict[str, Any], section: str, tables: dict[str, dict[str, str]], source: str) -> dict[str, Any]:
    """``{"llm": {"spec": s, "batch_size": 8}}`` or ``{"llm.batch_size": "8"}`` -> ``{"llm": s, "batch_size": 8}``
    (a sub-table's keys mapped to the section's fields by ``tables``); other keys as they are."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        head, dot, rest = key.partition(".")
        if dot and head in tables:
            value, key = {rest: value}, head
        if key in tables and isinstance(value, dict):
            for sub, v in value.items():
                if sub not in tables[key]:
                    raise LlmcseError(f"{source}unknown key {section}.{key}.{sub}.{did_you_mean(sub, list(tables[key]))}"
                                      f" Valid keys in [{section}.{key}]: {', '.join(tables[key])}")
                out[tables[key][sub]] = v
        else:
            out[key] = value
    return out


def value_sources(path: str | Path | None, overrides: list[str] = (),
                  tables: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """``section.key`` -> where its value comes from (``"r.toml: "`` or ``"--set "``), for error messages."""
    raw = tomllib.loads(Path(path).read_text(encoding="utf-8")) if path is not None else {}
    sources = {}
    for section, values in raw.items():
        if isinstance(values, dict):
            for key, value in values.items():
                if tables and key in tables and isinstance(value, dict):
                    sources.update({f"{section}.{tables[key].get(sub, sub)}": f"{path}: " for sub in value})
                else:
                    sources[f"{section}.{key}"] = f"{path}: "
    for text in overrides:
        section, key, _ = parse_override(text)
        head, dot, rest = key.partition(".")
        if dot and tables and head in tables:
            key = tables[head].get(rest, rest)
        sources[f"{section}.{key}"] = "--set "
    return sources


def resolved(config: dict[str, Any]) -> dict[str, Any]:
    """Plain dict of every section (defaults included) plus its hash, for run folders and results."""
    plain = {name: dataclasses.asdict(section) for name, section in config.items()}
    return {"config": plain, "config_hash": config_hash(plain)}
