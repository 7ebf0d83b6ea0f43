"""argparse flags from a stage's config dataclass, and the config back from the parsed flags.

Each field becomes ``--field-name`` (``Stage.flags`` renames or hides one) with the field's type, its
default, its help (``opt(help=...)``, else the comment beside the field in the library's dataclass) and
the stage's rule as an argparse check (a Range) or as choices. Every stage command also takes
``--set KEY=VALUE`` for any field, checked the same way as a recipe value, and ``--dry-run``.
The flags the user gave are recorded (``args.given``): a training recipe fills only the others.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import io
import math
import tokenize
import types
import typing
from typing import Any

from llmcse.config import Range
from llmcse.errors import LlmcseError
from llmcse.stages.base import Flag, Stage


def _given(namespace) -> set[str]:
    if "given" not in vars(namespace):
        namespace.given = set()
    return namespace.given


class _Store(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        _given(namespace).add(self.dest)


class _Switch(argparse.Action):
    """A flag without a value that stores ``const`` (``--keep-double-quotes`` -> single_quotes = False)."""

    def __init__(self, option_strings, dest, const=None, **kwargs):
        super().__init__(option_strings, dest, nargs=0, const=const, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const)
        _given(namespace).add(self.dest)


class _Bool(argparse.BooleanOptionalAction):
    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        _given(namespace).add(self.dest)


class _Append(argparse.Action):
    """Repeatable; the first use replaces the default list instead of adding to it."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest) or []) if self.dest in _given(namespace) else []
        setattr(namespace, self.dest, items + [values])
        _given(namespace).add(self.dest)


def number_type(kind: type, rule: Range | None = None):
    """An argparse ``type=``: int or finite float, within ``rule``; messages as ``llmcse.utils.validate``'s."""

    def parse(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") \
                from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if rule is not None and value not in rule:
            shown = value if kind is int else f"{value:g}"
            raise argparse.ArgumentTypeError(f"must be {rule.describe('').strip()}, got {shown}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


@functools.lru_cache(maxsize=None)
def source_comments(cls: type) -> dict[str, str]:
    """field -> the comment beside it (or on the lines right above it) in the class's source: the
    field docs of the library's dataclasses, shown as ``--help`` where no ``opt(help=...)`` is given."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        names = {f.name for f in dataclasses.fields(klass)}
        above: list[str] = []
        line_of: dict[int, str] = {}  # line number -> field defined there
        comments: dict[int, str] = {}
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
        for number, line in enumerate(source.splitlines(), 1):
            stripped = line.strip()
            name = stripped.split(":", 1)[0].strip() if ":" in stripped else ""
            if name in names and not stripped.startswith("#"):
                line_of[number] = name
                text = comments.get(number) or " ".join(above)
                if text:
                    docs[name] = text
                above = []
            elif stripped.startswith("#"):
                above.append(comments.get(number, ""))
            else:
                above = []
    return docs


def field_help(stage: Stage, f: dataclasses.Field) -> str:
    flag = stage.flags.get(f.name, Flag())
    return flag.help or f.metadata.get("help") or source_comments(stage.config).get(f.name, "")


def _escaped(text: str) -> str:
    return text.replace("%", "%%")  # argparse %-formats help texts


def option_name(stage: Stage, name: str) -> str:
    """The flag a field has on the command line (for error messages): ``input`` -> ``--in``."""
    flag = stage.flags.get(name)
    if flag and flag.names:
        return flag.names[0]
    return "--" + name.replace("_", "-")


def _base_type(annotation) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def add_config_flags(parser: argparse.ArgumentParser, stage: Stage) -> None:
    """One flag per config field (see the module docstring), then ``--set`` and ``--dry-run``."""
    types_, defaults = stage.field_types(), stage.defaults()
    for f in stage.fields():
        flag = stage.flags.get(f.name, Flag())
        if flag.skip:
            continue
        kind, default, rule = _base_type(types_[f.name]), defaults[f.name], stage.rules.get(f.name)
        help_ = _escaped(field_help(stage, f))
        names = flag.names or ("--" + f.name.replace("_", "-"),)
        kwargs: dict[str, Any] = {"default": None if default is dataclasses.MISSING else default, "help": help_}
        if len(names) == 1 and not names[0].startswith("-"):  # positional
            parser.add_argument(f.name, action=_Store, nargs=flag.nargs, help=help_, metavar=flag.metavar)
            continue
        kwargs["dest"] = f.name
        if flag.metavar:
            kwargs["metavar"] = flag.metavar
        if kind is bool:
            if flag.negate or names[0].startswith("--no-"):
                parser.add_argument(*names, action=_Switch, const=False, **kwargs)
            else:
                parser.add_argument(*names, action=_Bool, **kwargs)
            continue
        if typing.get_origin(kind) is list:
            parser.add_argument(*names, action=_Append, required=flag.required, **kwargs)
            continue
        if kind is dict:
            continue
        if not stage.cli_checks and isinstance(rule, Range):
            rule = None  # the library checks it, with its own message
        if kind in (int, float):
            kwargs["type"] = number_type(kind, rule if isinstance(rule, Range) else None)
        choices = flag.choices() if callable(flag.choices) else flag.choices
        choices = choices or (rule if isinstance(rule, tuple) else None)
        if choices:
            kwargs["choices"] = list(choices)
        required = flag.required or default is dataclasses.MISSING
        if not required and not any(default is v for v in (None, "", False)) and "default" not in help_:
            kwargs["help"] = f"{help_} (default: %(default)s)".lstrip()
        parser.add_argument(*names, action=_Store, required=required, **kwargs)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set_",
                        help=f"set any {stage.name} setting by its name, checked like a recipe value (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")


def config_from_args(stage: Stage, args: argparse.Namespace):
    """The stage's config from parsed flags plus ``--set key=value`` (a recipe key; ``section.key`` works
    too); an unknown key or a bad value is an ``LlmcseError`` naming it."""
    given = vars(args).get("given", set())
    names = {f.name for f in stage.fields()}
    values = {name: getattr(args, name) for name in names if name in given}
    if stage.from_args:
        stage.from_args(args, values)
    sources: dict[str, str] = {}
    section = stage.section_name()
    for text in args.set_:
        if "=" not in text:
            example = stage.set_example or f"{next(iter(names), 'key')}=..."
            raise LlmcseError(f"--set expects KEY=VALUE (a {stage.name} setting, e.g. {example}), got {text!r}")
        key, value = (part.strip() for part in text.split("=", 1))
        head, dot, rest = key.partition(".")
        if dot and head in (section, stage.name):
            key = rest
        elif dot and head != "llm":  # llm.batch_size: the recipe's [generate.llm] table
            raise LlmcseError(f"--set {text}: llmcse {stage.name} only has {section}.* settings")
        key = _llm_table_key(stage, key)
        values[key], sources[key] = value, "--set "
    # --set values are checked like a recipe's, unless the library checks them itself (its messages)
    return stage.make_config(values, sources, explicit=set(values), checked=set(sources) if stage.cli_checks else set())


def _llm_table_key(stage: Stage, key: str) -> str:
    """``llm.batch_size`` (the recipe's ``[generate.llm]`` table) -> the field ``batch_size``."""
    from llmcse.stages.base import LLM_TABLE

    head, dot, rest = key.partition(".")
    if dot and head == "llm" and rest in LLM_TABLE and LLM_TABLE[rest] in {f.name for f in stage.fields()}:
        return LLM_TABLE[rest]
    return key


def add_worker_flags(parser: argparse.ArgumentParser, workers_help: str, shard_help: str) -> None:
    """``--workers N`` (N Ray actors on this machine: ``--executor ray --actors N``, see
    ``llmcse.utils.executor.options_from_args``) or ``--shard K/N`` (be one of N workers), never both."""
    from llmcse.utils.validate import positive_int

    group = parser.add_mutually_exclusive_group()
    group.add_argument("--workers", type=positive_int, default=1, help=workers_help)
    group.add_argument("--shard", metavar="K/N", help=shard_help)
