"""The import rules of docs/architecture.md, read from the source (no module is imported).

Every ``import`` / ``from ... import`` in study/, trials/ and dashboards/ counts, including
imports inside functions (a lazy import is still a dependency); imports under
``if TYPE_CHECKING:`` do not (they never run). The rules:

* trials/ imports neither study/ nor dashboards/ (a Ray worker needs only trials/);
* dashboards/ never imports study/ (it works on what the store hands it);
* no import cycle between modules (importing a package's submodule is an edge to that
  submodule, not to the package's ``__init__``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("study", "trials", "dashboards")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, skipping the bodies of ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports(child)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    drop = node.level - 1 if is_package else node.level
                    anchor = anchor[: len(anchor) - drop] if drop else anchor
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    # ``from package import submodule`` depends on the submodule.
                    candidate = f"{base}.{alias.name}"
                    targets.append(candidate if candidate in modules else base)
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]  # a name inside a module
                if target and target != name:
                    edges[name].add(target)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _crossing(edges: dict[str, set[str]], source: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} -> {target}"
        for module, targets in edges.items()
        if module.split(".")[0] == source
        for target in targets
        if target.split(".")[0] in forbidden
    )


def test_the_walker_sees_lazy_and_relative_imports() -> None:
    edges = _edges(_modules())
    assert "study.store._store" in edges["study.store"]  # relative, in a package __init__
    assert "trials.trainable" in edges["study.runner"]  # inside a function
    assert "study.spec" in edges["study.searcher"]
    assert not any(target.startswith("typing") for target in edges["study.searcher"])


def test_trials_imports_neither_study_nor_dashboards() -> None:
    assert _crossing(_edges(_modules()), "trials", ("study", "dashboards")) == []


def test_dashboards_never_imports_study() -> None:
    assert _crossing(_edges(_modules()), "dashboards", ("study",)) == []


def test_no_import_cycles() -> None:
    assert _cycles(_edges(_modules())) == []


def test_architecture_doc_names_every_module() -> None:
    # docs/architecture.md is where a newcomer looks up where a change belongs: every module
    # and subpackage directly under study/, trials/ and dashboards/ must be named there.
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = []
    for package in PACKAGES:
        for entry in sorted((ROOT / package).iterdir()):
            if entry.name.startswith("__") or entry.name == "py.typed":
                continue
            if entry.is_dir() and (entry / "__init__.py").exists():
                if f"`{entry.name}/`" not in doc:
                    missing.append(f"{package}/{entry.name}/")
            elif entry.suffix == ".py" and f"`{entry.name}`" not in doc:
                missing.append(f"{package}/{entry.name}")
    assert not missing, f"docs/architecture.md does not name: {missing}"
