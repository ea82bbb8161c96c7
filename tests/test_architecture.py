"""The layers hold: values depend on nothing, policy only on values, nothing outside the
adapters reaches into them (but the platform registry), and no module imports itself back."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bot"

VALUES = {"bot.conversation", "bot.errors", "bot.surface"}
POLICY = {"bot.trimming", "bot.streaming", "bot.formatting", "bot.mrkdwn", "bot.notices",
          "bot.models", "bot.prompts"}
REGISTRY = "bot.platforms"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every bot module this file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name == "bot" or name.startswith("bot.")}


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")}


def test_values_import_only_values() -> None:
    for module, imported in graph().items():
        if module in VALUES:
            assert imported <= VALUES, f"{module} imports {sorted(imported - VALUES)}"


def test_policy_imports_only_values_and_policy() -> None:
    allowed = VALUES | POLICY
    for module, imported in graph().items():
        if module in POLICY:
            assert imported <= allowed, f"{module} imports {sorted(imported - allowed)}"


def test_only_the_registry_reaches_into_the_adapters() -> None:
    for module, imported in graph().items():
        if module.startswith("bot.adapters") or module == REGISTRY:
            continue
        inside = {name for name in imported if name.startswith("bot.adapters")}
        assert not inside, f"{module} imports {sorted(inside)}"


def test_no_import_cycles() -> None:
    edges = graph()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            cycle = path[path.index(module):] + (module,)
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for imported in sorted(edges.get(module, set())):
            visit(imported, (*path, module))
        done.add(module)

    for module in sorted(edges):
        visit(module, ())


def test_the_checks_see_every_module() -> None:
    # A rename that leaves a layer's name behind would make the rules above pass vacuously.
    modules = set(graph())
    assert VALUES | POLICY | {REGISTRY} <= modules
