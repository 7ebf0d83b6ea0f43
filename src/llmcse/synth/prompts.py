"""Prompt templates for synthesis recipes, kept in TOML files that users copy and edit."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from llmcse.errors import LlmcseError
from llmcse.llm.base import ChatMessage

TEMPLATE_DIR = Path(__file__).parent / "templates"
RECIPE_FIELDS = {"nli": ("positive", "negative"), "sts3": ("positive", "intermediate", "negative")}
# Every template kind: the pair recipes above, and document expansion (llmcse expand: {seed} is the document).
TEMPLATE_FIELDS = {**RECIPE_FIELDS, "expand": ("query", "keywords")}


@dataclass(frozen=True)
class Demo:
    input: str
    output: str


@dataclass(frozen=True)
class FieldPrompt:
    """How to ask for one field (e.g. the positive) of a record."""

    name: str
    instruction: str  # contains {seed}
    demos: tuple[Demo, ...]

    def messages(self, seed: str, system: str | None) -> list[ChatMessage]:
        """Demos as earlier chat turns, then the seed."""
        msgs: list[ChatMessage] = [{"role": "system", "content": system}] if system else []
        for demo in self.demos:
            msgs.append({"role": "user", "content": self.instruction.format(seed=demo.input)})
            msgs.append({"role": "assistant", "content": demo.output})
        msgs.append({"role": "user", "content": self.instruction.format(seed=seed)})
        return msgs

    @property
    def demo_texts(self) -> set[str]:
        """This field's demo inputs and outputs (what a pasted-from-the-prompt check compares with)."""
        return {t for d in self.demos for t in (d.input, d.output)}


@dataclass(frozen=True)
class PromptTemplate:
    id: str
    version: int
    recipe: str
    system: str | None
    fields: dict[str, FieldPrompt]
    path: str

    @property
    def demo_texts(self) -> set[str]:
        """Every demo input and output: an LLM output equal to one of them is a copy."""
        return {t for f in self.fields.values() for t in f.demo_texts}


def load_template(name_or_path: str) -> PromptTemplate:
    """Load a shipped template by recipe name (``nli``, ``sts3``) or any TOML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = TEMPLATE_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        shipped = ", ".join(p.stem for p in sorted(TEMPLATE_DIR.glob("*.toml")))
        raise LlmcseError(f"prompt template {name_or_path!r} not found; shipped: {shipped}, or pass a .toml file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise LlmcseError(f"{path}: invalid TOML: {e}") from None
    unknown = set(raw) - {"id", "version", "recipe", "system", "fields"}
    if unknown:
        raise LlmcseError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: id, version, recipe, system, fields")
    for key in ("id", "version", "recipe", "fields"):
        if key not in raw:
            raise LlmcseError(f"{path}: missing required key {key!r}")
    recipe = raw["recipe"]
    if recipe not in TEMPLATE_FIELDS:
        raise LlmcseError(f"{path}: recipe {recipe!r} unknown; choose one of {', '.join(TEMPLATE_FIELDS)}")
    fields = {}
    for name in TEMPLATE_FIELDS[recipe]:
        spec = raw["fields"].get(name)
        if spec is None:
            raise LlmcseError(f"{path}: recipe {recipe!r} needs [fields.{name}]")
        if "{seed}" not in spec.get("instruction", ""):
            raise LlmcseError(f"{path}: [fields.{name}].instruction must contain {{seed}}")
        demos = tuple(Demo(d["input"], d["output"]) for d in spec.get("demos", []))
        fields[name] = FieldPrompt(name, spec["instruction"], demos)
    return PromptTemplate(raw["id"], int(raw["version"]), recipe, raw.get("system"), fields, str(path))
