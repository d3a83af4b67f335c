"""The store owns the database: outside ``study/store`` no module of ``study`` imports
``sqlite3`` or names one of the store's tables in a string (a query, a probe). Comments and
docstrings may mention a table; code goes through the store. Parsed, not imported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from study.store import _models

ROOT = Path(__file__).resolve().parents[2]
TABLES = {table.name for table in _models.Base.metadata.sorted_tables}  # zs_studies, zs_trials, ...
SQL_WORDS = re.compile(r"\b(FROM|INTO|UPDATE|JOIN|TABLE)\s+(\w+)", re.IGNORECASE)


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def offences(paths: list[Path] | None = None) -> list[str]:
    found = []
    if paths is None:
        everything = sorted((ROOT / "study").rglob("*.py"))
        paths = [p for p in everything if (ROOT / "study" / "store") not in p.parents]
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "sqlite3" for a in node.names):
                found.append(f"{where}:{node.lineno}: imports sqlite3")
            if isinstance(node, ast.ImportFrom) and node.module == "sqlite3":
                found.append(f"{where}:{node.lineno}: imports from sqlite3")
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docs
            ):
                named = {m.group(2) for m in SQL_WORDS.finditer(node.value)}
                if node.value in TABLES or named & TABLES:
                    found.append(f"{where}:{node.lineno}: names table {node.value[:60]!r}")
    return found


def test_the_tables_are_known() -> None:
    assert {"zs_studies", "zs_trials", "zs_epochs", "zs_runs"} <= TABLES


def test_the_rule_flags_the_store_itself() -> None:
    # The store's own models name their tables: the rule sees that.
    flagged = offences([ROOT / "study" / "store" / "_models.py"])
    assert any("names table 'zs_trials'" in line for line in flagged), flagged


def test_no_sql_outside_the_store() -> None:
    assert offences() == []
