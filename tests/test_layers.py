"""The package layering rule, checked on every import in src/llmcse (module level and lazy).

Lower layers never import higher ones, so each layer can be read, tested and reused without the
ones above it (a model-spec helper must not drag in training code). The declared order:

    core       errors, utils/*, config       (utils imports only errors; config imports errors + utils)
    data       -> core
    llm        -> core, data
    embed      -> core, data
    synth      -> core, data, llm, embed
    train      -> core, data, embed, synth, llm
    retrieval  -> core, data, embed
    eval       -> core, data, embed, retrieval, train, synth
    top        pipeline, cli, stages, api, docs, llmcse/__init__  -> anything

``from llmcse import __version__`` (or one of the errors) is allowed anywhere: the top package
holds only those, so importing it adds no edge. The walk reads the source with ``ast``: it sees
imports inside functions and under ``if TYPE_CHECKING:`` too, which an import-time trace would miss.
A registry entry naming its implementation as a ``"llmcse.pkg.module:function"`` string is a lazy
import as well (it is imported when the entry is used), so those strings must follow the order too;
an upper layer that plugs into a lower one registers itself there (peft's ``register_peft_method``).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import llmcse

SRC = Path(llmcse.__file__).parent
CORE = {"errors", "utils", "config"}
TOP = {"__init__", "pipeline", "cli", "stages", "api", "docs"}
ALLOWED = {
    "errors": set(),
    "utils": {"errors"},
    "config": {"errors", "utils"},
    "data": CORE,
    "llm": CORE | {"data"},
    "embed": CORE | {"data"},
    "synth": CORE | {"data", "llm", "embed"},
    "train": CORE | {"data", "embed", "synth", "llm"},
    "retrieval": CORE | {"data", "embed"},
    "eval": CORE | {"data", "embed", "retrieval", "train", "synth"},
}
# What any module may import from the top package itself (it holds only the version and the errors).
TOP_PACKAGE_NAMES = {"__version__", "LlmcseError", "DataFormatError", "MissingDataError"}
# "llmcse.eval.run:evaluate_sts_task": how registries name what they import only when used.
REGISTRY_REFERENCE = re.compile(r"^(llmcse(?:\.\w+)+):\w+$")


@dataclass(frozen=True)
class Edge:
    source: str  # importing module, e.g. "llmcse.synth.expand"
    target: str  # imported module, e.g. "llmcse.llm.base"
    line: int
    names: tuple[str, ...] = ()  # for "from llmcse import x": the names taken
    via: str = ""  # "" for an import statement, else the registry string that names the target

    def where(self) -> str:
        how = f" (registry string {self.via!r})" if self.via else ""
        return f"{module_path(self.source)}:{self.line}: {self.source} -> {self.target}{how}"


def module_path(module: str) -> str:
    """src-relative file of a module name (a package's is its __init__.py)."""
    rel = Path(*module.split("."))
    path = SRC.parent / rel
    return str((path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).relative_to(SRC.parent.parent))


def all_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def package_of(module: str) -> str:
    """The layer unit: "llmcse" -> "__init__", "llmcse.synth.expand" -> "synth", "llmcse.errors" -> "errors"."""
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    """Every llmcse import in one file, wherever it sits (module level, functions, TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    edges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            edges += [Edge(module, a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "llmcse"]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, is_package)
            if target.split(".")[0] != "llmcse":
                continue
            # "from llmcse.data import readers" imports the submodule; "from llmcse.data import X" the package
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            rest = tuple(a.name for a in node.names if f"{target}.{a.name}" not in modules)
            edges += [Edge(module, s, node.lineno) for s in subs]
            if rest:
                edges.append(Edge(module, target, node.lineno, rest))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("llmcse")):
            edges.append(Edge(module, node.args[0].value, node.lineno))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = REGISTRY_REFERENCE.match(node.value)
            if match and match.group(1) in modules:
                edges.append(Edge(module, match.group(1), node.lineno, via=node.value))
    return [e for e in edges if e.target != module]


def all_edges() -> list[Edge]:
    modules = all_modules()
    return [e for m, p in modules.items() for e in imports_of(m, p, modules)]


def import_edges() -> list[Edge]:
    return [e for e in all_edges() if not e.via]


def dependency_edges() -> list[Edge]:
    """Import edges that make one module depend on another. ``from llmcse import __version__`` does not:
    it reads a constant the top package sets before anything else (its API loads lazily, on first use)."""
    return [e for e in import_edges() if not (e.target == "llmcse" and e.names and set(e.names) <= TOP_PACKAGE_NAMES)]


def layer_violation(edge: Edge) -> str | None:
    src, dst = package_of(edge.source), package_of(edge.target)
    if src == dst or src in TOP:
        return None
    if src not in ALLOWED:
        return f"{edge.where()}: package {src!r} is not in the layer table (add it to ALLOWED / TOP and docs/layout.md)"
    if dst == "__init__":
        extra = sorted(set(edge.names) - TOP_PACKAGE_NAMES)
        if not edge.names or extra:
            return (f"{edge.where()}: imports {extra or 'the llmcse package'} from the top package; "
                    f"below the top only {sorted(TOP_PACKAGE_NAMES)} may come from there")
        return None
    if dst not in ALLOWED[src]:
        allowed = ", ".join(sorted(ALLOWED[src])) or "nothing in llmcse"
        return f"{edge.where()}: {src} may import only {allowed}, not {dst}"
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:  # the graphs are a few dozen nodes: recursion depth is no concern
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def describe_cycles(edges: list[Edge], key) -> list[str]:
    graph: dict[str, set[str]] = {}
    for e in edges:
        a, b = key(e.source), key(e.target)
        if a != b:
            graph.setdefault(a, set()).add(b)
    messages = []
    for component in cycles(graph):
        members = set(component)
        inside = [e.where() for e in edges if key(e.source) in members and key(e.target) in members
                  and key(e.source) != key(e.target)]
        messages.append(f"cycle between {', '.join(component)}:\n    " + "\n    ".join(inside))
    return messages


def test_the_walk_sees_lazy_relative_and_registry_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom llmcse.errors import LlmcseError\n\n"
                      "def f():\n    from llmcse.embed import models\n    from . import sibling\n"
                      "ENTRY = ('llmcse.embed.models:load_embedder', 'see llmcse.embed.models:x for more')\n")
    modules = {"llmcse.synth.m": module, "llmcse.embed.models": module, "llmcse.synth.sibling": module}
    edges = imports_of("llmcse.synth.m", module, modules)
    assert sorted((e.target, e.line, e.via) for e in edges) == [
        ("llmcse.embed.models", 5, ""), ("llmcse.embed.models", 7, "llmcse.embed.models:load_embedder"),
        ("llmcse.errors", 2, ""), ("llmcse.synth.sibling", 6, "")]


def test_a_forbidden_edge_is_named_with_its_file_and_line():
    message = layer_violation(Edge("llmcse.retrieval.expansion", "llmcse.synth.expand", 166))
    assert message == ("src/llmcse/retrieval/expansion.py:166: llmcse.retrieval.expansion -> llmcse.synth.expand: "
                       "retrieval may import only config, data, embed, errors, utils, not synth")
    assert layer_violation(Edge("llmcse.embed.prompteol", "llmcse", 478, ("__version__",))) is None
    assert "top package" in layer_violation(Edge("llmcse.embed.prompteol", "llmcse", 478, ("encode",)))


def test_cycle_finder_reports_only_real_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_package_is_declared():
    packages = {package_of(m) for m in all_modules()}
    assert packages - set(ALLOWED) - TOP == set()


def test_imports_follow_the_layer_order():
    problems = [v for v in map(layer_violation, import_edges()) if v]
    assert not problems, "imports against the layer order (docs/layout.md):\n" + "\n".join(problems)


def test_registry_strings_follow_the_layer_order():
    """A lower layer naming an upper one's function in a string still depends on it; register from above instead."""
    problems = [v for v in map(layer_violation, (e for e in all_edges() if e.via)) if v]
    assert not problems, "registry references against the layer order (docs/layout.md):\n" + "\n".join(problems)


def test_no_cycle_between_packages():
    problems = describe_cycles(dependency_edges(), lambda m: package_of(m))
    assert not problems, "\n".join(problems)


def test_no_cycle_between_modules():
    problems = describe_cycles(dependency_edges(), lambda m: m)
    assert not problems, "\n".join(problems)


def test_importing_the_package_stays_light():
    """``import llmcse`` (and the CLI's parser) must not load torch or transformers: ``llmcse --help`` is instant."""
    code = ("import sys, llmcse, llmcse.cli; "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
