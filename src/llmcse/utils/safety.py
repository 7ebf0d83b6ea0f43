"""Guards that run before a command touches anything: inputs exist, outputs never overwrite inputs,
and a resumable output folder or file is only continued by the same job that started it.

Commands write side files beside their output (``<stem>.dropped.jsonl``, ``<stem>.report.json``,
``<name>.shards/`` ...). ``side_files`` lists every such name llmcse uses, so "output is an input"
also catches ``filter --in g.jsonl --out g.jsonl`` and ``filter --in k.dropped.jsonl --out k.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from llmcse.errors import LlmcseError, MissingDataError

# side files named after the output's stem (generate, filter, expand, filter-expansions write these)
STEM_SUFFIXES = (".rejected.jsonl", ".summary.json", ".identity.json", ".dropped.jsonl", ".report.json",
                 ".scores.jsonl")
# side files named after the output's full name (expand)
NAME_SUFFIXES = (".runs.jsonl", ".shards")


def side_files(path: str | Path) -> list[Path]:
    """The side files llmcse may write beside output ``path``."""
    path = Path(path)
    return [path.with_name(path.stem + s) for s in STEM_SUFFIXES] + [path.with_name(path.name + s) for s in NAME_SUFFIXES]


def require_input(path: str | Path | None, what: str) -> None:
    """A missing input is an error (exit 2) naming the path, never an empty data set."""
    if path is None:
        return
    if not Path(path).exists():
        raise MissingDataError(f"{what} {path}: file not found")


def _key(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def refuse_overwriting_inputs(inputs: Iterable[str | Path | None], outputs: Iterable[str | Path | None] = (),
                              output_dirs: Iterable[str | Path | None] = ()) -> None:
    """Refuse a command whose outputs would overwrite one of its inputs.

    Args:
        inputs: files (or folders) the command reads; None entries are ignored.
        outputs: files the command writes; their side files count as written too.
        output_dirs: folders the command fills; an input inside one (or equal to it) is refused.

    An output named like a side file of an input (``g.rejected.jsonl`` of ``g.jsonl``) is refused
    too, existing or not: it is the input's job's data, or will be when that job resumes.
    """
    inputs = [Path(p) for p in inputs if p]
    outputs = [Path(p) for p in outputs if p]
    for inp in inputs:
        belongs = {_key(s): s for s in side_files(inp)}  # names an input's own job uses, existing or not
        for out in outputs:
            if _key(out) == _key(inp):
                clash = f"output {out} is also an input: writing it would replace what is being read"
            elif _key(out) in belongs:
                clash = f"output {out} is a file that belongs to input {inp} (its job writes it beside {inp.name})"
            else:
                hit = next((s for s in side_files(out) if _key(s) == _key(inp) or (_key(s) in belongs and s.exists())),
                           None)
                if hit is None:
                    continue
                clash = f"output {out} would overwrite {hit} (it writes that file beside itself)" + \
                    ("" if _key(hit) == _key(inp) else f", which belongs to input {inp}")
            raise LlmcseError(f"{clash}; choose another output path")
        for folder in (Path(p) for p in output_dirs if p):
            if _key(inp) == _key(folder) or _key(folder) in _key(inp).parents:
                raise LlmcseError(f"input {inp} is inside output folder {folder}, which this command fills; "
                                  "choose another output folder")


def first_record(path: Path) -> dict | None:
    """The first JSON record of a JSONL file (None: no file, or nothing readable in it)."""
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    return None
                return record if isinstance(record, dict) else None
    return None


def check_identity(out: str | Path, path: Path, identity: dict, start_over: Iterable[str | Path],
                   legacy: dict | None = None) -> None:
    """Remember what made output ``out`` (``path`` holds ``identity``); refuse to continue it with another.

    The first run writes ``path``; a rerun with the same identity continues; one that differs is
    refused, naming the keys that differ. ``start_over``: what to delete to start afresh (for the hint).
    ``legacy``: for an output made before identity files existed, the identity read back from its
    records (None: nothing there yet); it is checked the same way, then adopted.
    """
    from llmcse.utils.io import atomic_write_json

    old, keys = legacy, set(legacy or ())  # a legacy record does not say everything: check what it says
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise LlmcseError(f"{path}: unreadable ({e}); delete it to adopt {out} as it is") from None
        keys = set(old) | set(identity)
    if old is not None:
        before, now = _flat({k: old.get(k) for k in keys}), _flat({k: identity.get(k) for k in keys})
        differing = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if differing:
            changes = "; ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in differing)
            raise LlmcseError(f"{out} was made with other settings ({changes}); use another --out, "
                              f"or delete {', '.join(map(str, start_over))} to start over")
    if not path.exists():
        atomic_write_json(path, identity)


def _flat(identity: dict) -> dict:
    """``{"sampling": {"temperature": 0.8}}`` -> ``{"sampling.temperature": 0.8}``: a refusal names the setting."""
    flat = {}
    for key, value in identity.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat
