"""The package's import layers, read from its source (ast, nothing imported): no import circles, nothing
inside edgekit imports edgekit.api (the CLI modules aside: they are above it), and no private name is
imported from another module. Every import counts: function-level (lazy) ones run too, and one under
`if TYPE_CHECKING:` is still a dependency of the design (a type names the module it comes from)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgekit"
ROOT = "edgekit"
CLI = ("edgekit.cli", "edgekit.__main__")  # and every module of the edgekit.cli package


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _edges(modules: dict[str, Path]) -> dict[str, list[tuple[str, ast.ImportFrom | ast.Import, str]]]:
    """module -> [(imported module, statement, name taken or "")] for imports of edgekit modules."""
    edges: dict[str, list[tuple[str, ast.ImportFrom | ast.Import, str]]] = {}
    for module, path in modules.items():
        out = edges.setdefault(module, [])
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == ROOT or alias.name.startswith(ROOT + "."):
                        out.append((_known(alias.name, modules), node, ""))
                continue
            base = _base(module, path, node)
            if base != ROOT and not base.startswith(ROOT + "."):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub, node, "") if sub in modules else (_known(base, modules), node, alias.name))
    return edges


def _known(name: str, modules: dict[str, Path]) -> str:
    while name not in modules and "." in name:
        name = name.rpartition(".")[0]
    return name


def _circles(edges: dict[str, list[tuple[str, object, str]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a module importing itself): Tarjan."""
    graph = {m: sorted({t for t, _, _ in out if t in edges}) for m, out in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            connect(module)
    return found


def _is_cli(module: str) -> bool:
    return module in CLI or module.startswith("edgekit.cli.")


def test_no_import_circles() -> None:
    edges = _edges(_modules())
    circles = _circles(edges)
    described = []
    for circle in circles:
        ties = [f"{m} -> {t}" for m in circle for t in sorted({t for t, _, _ in edges[m]}) if t in circle]
        described.append(f"{len(circle)} modules: " + "; ".join(ties))
    assert not circles, "import circles:\n" + "\n".join(described)


def test_nothing_inside_edgekit_imports_the_api() -> None:
    edges = _edges(_modules())
    upward = [
        f"{module} (line {node.lineno}) imports {target}"
        for module, out in edges.items()
        if not module.startswith("edgekit.api") and not _is_cli(module)
        for target, node, _ in out
        if target == "edgekit.api" or target.startswith("edgekit.api.")
    ]
    assert not upward, "edgekit.api is the top layer; these reach up into it:\n" + "\n".join(upward)


def test_no_private_names_imported_across_modules() -> None:
    edges = _edges(_modules())
    private = [
        f"{module} (line {node.lineno}) takes {name} from {target}"
        for module, out in edges.items()
        for target, node, name in out
        if name.startswith("_") and not name.startswith("__") and target != module
    ]
    private += [
        f"{module} (line {node.lineno}) imports the private module {target}"
        for module, out in edges.items()
        for target, node, _ in out
        if any(part.startswith("_") and not part.startswith("__") for part in target.split("."))
    ]
    assert not private, "private names are private to their module:\n" + "\n".join(private)


def test_the_reader_sees_the_package() -> None:
    """The checks above are only as good as the graph: it must hold the modules and their imports."""
    modules = _modules()
    edges = _edges(modules)
    assert "edgekit.api" in modules and "edgekit.cli" in modules
    assert any(t == "edgekit.api" for t, _, _ in edges["edgekit.cli.exporting"])
    assert sum(len(out) for out in edges.values()) > 200
