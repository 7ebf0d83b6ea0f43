"""A stage, defined once: its typed config, what it runs, the files it reads and writes, its summary
and its report section. The CLI (``llmcse.cli``), the recipe runner (``llmcse.pipeline``) and the Python
API (``llmcse.api``) are all built from these definitions, so a flag, a recipe key and a keyword
argument are the same config field, with the same default (stated once, in the dataclass) and the
same checks (``Stage.rules``).

A stage file (``stages/generate.py``, ...) wraps a library function (``run_generate``, ...); it never
re-implements one.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from llmcse.config import Range, build_section, check_values
from llmcse.errors import LlmcseError


def opt(default: Any = dataclasses.MISSING, help: str = "", **kwargs) -> Any:
    """A dataclass field with its help text (the CLI's ``--help``, the docs): ``x: int = opt(3, "why")``."""
    if isinstance(default, (list, dict)):
        value = default
        kwargs["default_factory"] = lambda: type(value)(value)  # a fresh copy per instance
        default = dataclasses.MISSING
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass(frozen=True)
class Flag:
    """How one config field looks on the command line, where the plain ``--field-name`` is not right."""

    names: tuple[str, ...] = ()  # option strings; a single name without "-" makes a positional argument
    help: str | None = None  # wins over the field's own help (kept from before the registry for old flags)
    choices: tuple | None = None  # CLI-only choices (a recipe may take more, e.g. a template path)
    required: bool = False
    metavar: str | None = None
    nargs: str | None = None
    negate: bool = False  # a switch that sets False (--keep-double-quotes for single_quotes)
    skip: bool = False  # no generated flag: internal, or declared by the stage's own CLI extras


@dataclass
class LLMOptions:
    """How an LLM back end runs (``[generate.llm]`` in a recipe): not what the stage computes, so the
    run folder's stage hash ignores them unless set. The spec, timeout and retries are the stage's own
    fields (``llm``, ``request_timeout``, ``max_retries``)."""

    batch_size: int = opt(32, "prompts per batch for hf: back ends")
    concurrency: int = opt(8, "requests in flight for openai: back ends")
    dtype: str = opt("auto", "hf: back ends (auto: bf16 where fast)")


LLM_TABLE = {"spec": "llm", "batch_size": "batch_size", "dtype": "dtype", "concurrency": "concurrency",
             "request_timeout": "request_timeout", "max_retries": "max_retries"}  # [x.llm] key -> field
LLM_FLAGS = {"batch_size": Flag(names=("--llm-batch-size",))}
LLM_RULES = {"batch_size": Range(1), "concurrency": Range(1), "dtype": ("auto", "float32", "bfloat16")}


def load_backend(cfg) -> Any:
    """The LLM of a stage config with ``LLMOptions``, or None where the library's own loading (in
    ``run_generate`` & co., only when there is work left) gives the same back end: the defaults."""
    defaults = LLMOptions()
    if not cfg.llm or all(getattr(cfg, f.name) == getattr(defaults, f.name) for f in dataclasses.fields(LLMOptions)):
        return None
    from llmcse.llm import load_llm

    if cfg.llm.startswith("hf:"):
        from llmcse.utils.executor import resolve

        if resolve()[0] == "ray":  # each Ray actor loads the model; the driver only says how
            from llmcse.synth.scaleout import LLMSource

            return LLMSource(cfg.llm, {"batch_size": cfg.batch_size, "dtype": cfg.dtype})
        return load_llm(cfg.llm, batch_size=cfg.batch_size, dtype=cfg.dtype)
    if cfg.llm.startswith("openai:"):
        return load_llm(cfg.llm, concurrency=cfg.concurrency, timeout=cfg.request_timeout, max_retries=cfg.max_retries)
    return load_llm(cfg.llm)


def library_config(cfg, cls: type):
    """The library's own dataclass from a stage config that extends it (extra fields dropped), so what
    the library records (reports, hashes) is what it recorded before the stage registry."""
    return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


@dataclass
class StageResult:
    """What a stage returns: ``summary`` is the library's own report (also written beside the outputs)."""

    summary: dict = field(repr=False)


@dataclass(frozen=True)
class Stage:
    """One stage. ``config`` is the dataclass of its settings (None: a plain command such as ``serve-llm``,
    which builds its own parser with ``add_arguments``).

    Files: ``inputs`` and ``outputs`` name config fields holding input / output files (a field may hold
    a path, a list of paths or a NAME -> path dict); ``output_dirs`` maps a folder field to the files
    the stage writes in it (empty: the whole folder is the stage's). Before a stage runs, every input
    must exist and no output may overwrite an input (``check_files``).
    """

    name: str
    help: str
    config: type | None = None
    run: Callable[[Any], Any] | None = None  # run(config) -> a StageResult subclass
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    output_dirs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    summary: Callable[[Any, Any], str] | None = None  # (config, result) -> what the CLI prints
    report: Callable[[Path, dict], list[str]] | None = None  # (run folder, images) -> report.md lines
    section: str | None = None  # its recipe section where that is not its name with "_" ([self_instruct])
    rules: Mapping[str, Range | tuple] = field(default_factory=dict)  # field -> allowed range or choices
    flags: Mapping[str, Flag] = field(default_factory=dict)
    check: Callable[[Any], None] | None = None  # cheap checks before anything loads (dry runs too)
    resolve: Callable[[Any, set[str]], Any] | None = None  # (config, keys the user set) -> config
    cli_extras: Callable[[Any], None] | None = None  # adds flags that are not config fields
    from_args: Callable[[Any, dict], None] | None = None  # folds those flags into the config values
    executor: bool = False  # its work is cut into shards: --executor local|ray, --ray-address, --actors
    cli_checks: bool = True  # False: the library checks each flag and --set value itself, with its own messages
    set_example: str = ""  # for the --set usage message
    library_checks_files: bool = False  # True: the library refuses missing inputs / overwrites with its own words
    epilog: str = ""
    aliases: tuple[str, ...] = ()
    add_arguments: Callable[[Any], Any] | None = None  # plain commands: (subparsers) -> their parser, func set

    # ------------------------------------------------------------------ config
    def fields(self) -> list[dataclasses.Field]:
        return list(dataclasses.fields(self.config)) if self.config else []

    def field_types(self) -> dict[str, Any]:
        hints = typing.get_type_hints(self.config)
        return {f.name: hints[f.name] for f in self.fields()}

    def defaults(self) -> dict[str, Any]:
        """field -> default (MISSING for a required one)."""
        out = {}
        for f in self.fields():
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
            else:
                out[f.name] = dataclasses.MISSING
        return out

    def section_name(self) -> str:
        return self.section or self.name.replace("-", "_")

    def make_config(self, values: dict[str, Any], sources: Mapping[str, str] | None = None,
                    explicit: set[str] | None = None, checked: set[str] | None = None):
        """The typed config from field values (type-checked, ranges checked); ``explicit``: the keys the
        user set (the rest may take a recipe's deviation, see ``train``); ``checked``: the keys whose
        rules are checked here (None: all; the CLI's flags were checked by argparse). Errors are
        ``LlmcseError``."""
        section = self.section_name()
        missing = [k for k, v in self.defaults().items() if v is dataclasses.MISSING and values.get(k) is None]
        if missing:
            raise LlmcseError(f"{self.name} needs {', '.join(missing)}")
        cfg = build_section(self.config, values, section, dict(sources or {}))
        rules = {f"{section}.{k}": r for k, r in self.rules.items() if checked is None or k in checked}
        check_values({section: cfg}, rules, {f"{section}.{k}": v for k, v in (sources or {}).items()})
        if self.resolve:
            cfg = self.resolve(cfg, set(values) if explicit is None else explicit)
        return cfg

    # ------------------------------------------------------------------ files
    def files(self, cfg) -> tuple[list[tuple[str, str]], list[Path], list[Path]]:
        """(inputs as (field, path), output files, output folders) of a config."""
        inputs = [(name, p) for name in self.inputs for p in _paths(getattr(cfg, name))]
        outputs = [Path(p) for name in self.outputs for p in _paths(getattr(cfg, name))]
        folders = []
        for name, inside in self.output_dirs.items():
            folder = getattr(cfg, name)
            if folder:
                outputs += [Path(folder) / n for n in inside]
                folders += [] if inside else [Path(folder)]
        return inputs, outputs, folders

    def check_files(self, cfg, option: Callable[[str], str] = str) -> None:
        """Every input exists (a missing one is never read as empty) and no output would overwrite an
        input or a file beside it (``filter --in g.jsonl --out g.jsonl``). ``option``: field -> the name
        an error uses (the CLI's flag)."""
        from llmcse.utils.safety import refuse_overwriting_inputs, require_input

        inputs, outputs, folders = self.files(cfg)
        for name, path in inputs:
            require_input(path, option(name))
        refuse_overwriting_inputs([p for _, p in inputs], outputs, folders)

    def execute(self, cfg, option: Callable[[str], str] = str):
        """What ``llmcse <stage>`` and ``llmcse.<stage>()`` both do: check files and settings, then run."""
        if not self.library_checks_files:
            self.check_files(cfg, option)
        if self.check:
            self.check(cfg)
        return self.run(cfg)


def _paths(value) -> list[str]:
    if not value:
        return []
    if isinstance(value, dict):
        return [str(v) for v in value.values()]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]
