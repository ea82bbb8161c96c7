"""The layers hold: values depend on nothing, policy only on values, nothing outside the
adapters reaches into them (but the platform registry), and no module imports itself back."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bot"

VALUES = {"bot.conversation", "bot.errors", "bot.surface", "bot.handoff", "bot.model_client"}
POLICY = {"bot.trimming", "bot.streaming", "bot.formatting", "bot.mrkdwn", "bot.notices",
          "bot.docs_parse", "bot.html_docs", "bot.rst_docs", "bot.retrieval", "bot.citations",
          "bot.dont_know", "bot.policy", "bot.stats",
          "bot.models", "bot.prompts"}
REGISTRY = "bot.platforms"
# What adapters are handed through bot.ports instead of reaching for it themselves.
BEHIND_PORTS = {"bot.runtime", "bot.store", "bot.database", "bot.responder", "bot.knowledge",
                "bot.llm", "bot.journal", "bot.journal_rows"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _all_imports(path: Path) -> set[str]:
    """Every module this file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def imports_of(path: Path) -> set[str]:
    """Every bot module this file imports."""
    return {name for name in _all_imports(path) if name == "bot" or name.startswith("bot.")}


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


def platform_of(module: str) -> str | None:
    """"slack" for bot.adapters.slack.events, "console" for bot.adapters.console."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["bot", "adapters"] else None


def test_adapters_get_ports_not_the_runtime() -> None:
    for module, imported in graph().items():
        if platform_of(module) is not None:
            reached = imported & BEHIND_PORTS
            assert not reached, f"{module} imports {sorted(reached)}"


def test_platforms_do_not_import_each_other() -> None:
    for module, imported in graph().items():
        mine = platform_of(module)
        if mine is None:
            continue
        others = {name for name in imported if platform_of(name) not in (None, mine)}
        assert not others, f"{module} imports {sorted(others)}"


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
    assert VALUES | POLICY | BEHIND_PORTS | {REGISTRY} <= modules
    assert {platform_of(m) for m in modules} >= {"slack", "discord", "console"}


# The store's implementations: the seam and its engines, the rows behind the store, and the
# knowledge base's own local index. SQL lives here and nowhere else.
STORAGE = {"bot.engine", "bot.postgres", "bot.database", "bot.migrations", "bot.store",
           "bot.journal_rows", "bot.handoff_rows", "bot.instance_rows", "bot.stats_rows",
           "bot.lifecycle", "bot.suggest", "bot.kb_store", "bot.embedding", "bot.kb_eval"}
_SQL = ("SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM", "CREATE TABLE")


def test_no_sql_outside_the_store_implementations() -> None:
    for path in PACKAGE.rglob("*.py"):
        module = module_name(path)
        if module in STORAGE:
            continue
        strings = [node.value for node in ast.walk(ast.parse(path.read_text(), str(path)))
                   if isinstance(node, ast.Constant) and isinstance(node.value, str)]
        sql = [text for text in strings if any(word in text for word in _SQL)]
        drivers = {"sqlite3", "sqlite_utils", "asyncpg"} & {
            name.split(".")[0] for name in _all_imports(path)}
        assert not sql and not drivers, f"{module}: {sql[:1] or sorted(drivers)}"
