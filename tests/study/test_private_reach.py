"""No private reach-ins across packages: a name or module that starts with ``_`` is imported only
from inside the package that owns it.

``dashboards._curves`` is dashboards' own business; ``study`` and ``benchmarks`` use what
``dashboards`` re-exports. The same holds inside the service: ``study.store._models`` is the
store's (its migrations included), ``study.cli._base`` the CLI's. Tests are white-box and are
not checked. Like test_layering.py, this parses the sources (no import runs), lazy imports
inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.study.test_layering import ROOT, _imports, _module_name

CHECKED = ("study", "trials", "dashboards", "benchmarks")
OURS = ("study", "trials", "dashboards", "benchmarks")

# A dependency's private module is reached only by the one module of ours that owns that
# dependency, each with its reason written there.
THIRD_PARTY_OWNERS = {
    # Ray has no public switch for its SIGTERM and native failure handlers while it starts.
    ("study.ray_session", "ray"),
    # torch's default extension build directory, to find a stale JIT-build lock.
    ("trials.zoneout._cpu_ext", "torch.utils.cpp_extension"),
    # optuna-dashboard saves a note publicly but reads one only privately (sections are kept).
    ("dashboards._optuna_bridge", "optuna_dashboard"),
    # Optuna's trial tables, read without the ORM (a study of 10,000 trials loads in seconds
    # less); study.optuna_study, Optuna's owner, is its only importer.
    ("study._optuna_trials", "optuna.storages"),
}


def _sources() -> dict[str, Path]:
    found = {}
    for top in CHECKED:
        for path in sorted((ROOT / top).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    base = node.module or ""
    if not node.level:
        return base
    anchor = module.split(".")
    drop = node.level - 1 if path.name == "__init__.py" else node.level
    anchor = anchor[: len(anchor) - drop] if drop else anchor
    return ".".join([*anchor, base] if base else anchor)


def _owner(dotted: str) -> str | None:
    """The package that owns the first private part of ``dotted`` (None: nothing private)."""
    parts = dotted.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def _inside(module: str, owner: str) -> bool:
    return module == owner or module.startswith(owner + ".")


def reach_ins() -> list[str]:
    found = []
    for module, path in _sources().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _absolute(module, path, node)
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                owner = _owner(target)
                if owner is None or _inside(module, owner):
                    continue
                if owner.split(".")[0] not in OURS and (module, owner) in THIRD_PARTY_OWNERS:
                    continue
                if owner:
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    found.append(f"{where}: {module} imports {target} (private to {owner})")
    return found


def test_the_rule_sees_a_reach_in() -> None:
    assert _owner("dashboards._curves.learning_curves") == "dashboards"
    assert _owner("study.store._models") == "study.store"
    assert _owner("dashboards") is None
    assert _inside("study.store.migrations.env", "study.store")
    assert not _inside("study.cli._run", "study.store")
    assert not _inside("benchmarks.bench_report", "dashboards")


def test_no_private_reach_ins_across_packages() -> None:
    assert reach_ins() == []
