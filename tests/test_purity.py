"""The functional core stays pure: no IO, clocks or threads in src/pqueue/core/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "src" / "pqueue" / "core"
FORBIDDEN = {"os", "io", "threading", "time", "tempfile", "fcntl", "shutil", "pathlib", "socket"}
MODULES = sorted(CORE.glob("*.py"))


def imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_core_has_modules() -> None:
    assert {p.name for p in MODULES} >= {
        "codec.py", "effects.py", "errors.py", "state.py", "transitions.py",
    }


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_core_module_imports_nothing_impure(module: Path) -> None:
    tree = ast.parse(module.read_text(), str(module))
    assert imported_modules(tree) & FORBIDDEN == set()


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_core_module_calls_no_open(module: Path) -> None:
    tree = ast.parse(module.read_text(), str(module))
    calls = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"open", "print", "input", "exec", "eval"}
    ]
    assert calls == []


def test_the_checker_sees_a_forbidden_import() -> None:
    tree = ast.parse("import os.path\nfrom time import monotonic\nfrom . import x\n")
    assert imported_modules(tree) & FORBIDDEN == {"os", "time"}
