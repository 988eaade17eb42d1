"""The package's layering (issue 11): `llm` never imports `agents`; no import cycle inside `llm`; the wheel installs
exactly `llm` and `agents`; the agents' CLI command reaches `scout-llm` through an entry point."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "llm"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_modules(path: Path) -> set[str]:
    """Every module an `import` statement of the file names, wherever it stands (functions, TYPE_CHECKING blocks).

    `from llm import errors` names the module `llm.errors`; `from llm.base import X` names `llm.base`.
    """
    found: set[str] = set()
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            submodules = {f"{base}.{alias.name}" for alias in node.names} & MODULES.keys()
            found.update(submodules or {base})
    return found


def llm_graph() -> dict[str, set[str]]:
    return {name: {other for other in imported_modules(path) if other in MODULES and other != name}
            for name, path in MODULES.items()}


def test_llm_never_imports_agents() -> None:
    offenders = {name for name, path in ((module_name(p), p) for p in PACKAGE.rglob("*.py"))
                 if any(m == "agents" or m.startswith("agents.") for m in imported_modules(path))}
    assert offenders == set()


def test_importing_every_llm_module_loads_no_agents_module() -> None:
    names = sorted(module_name(path) for path in PACKAGE.rglob("*.py") if path.name != "__main__.py")
    code = ("import importlib, sys\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m == 'agents' or m.startswith('agents.')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_no_import_cycle_inside_llm() -> None:
    graph = llm_graph()
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                cycles.append([*path[path.index(nxt):], nxt])
            elif len(path) < 12:
                visit(nxt, [*path, nxt])

    for start in graph:
        visit(start, [start])
    assert cycles == []


def test_the_manager_and_bootstrap_are_not_a_cycle() -> None:
    graph = llm_graph()
    assert "llm._bootstrap" in graph["llm.manager"]
    assert "llm.manager" not in graph["llm._bootstrap"]


def test_llm_base_still_exports_the_backend_base_class() -> None:
    from llm.backend import LLMBackend
    from llm.base import LLMBackend as FromBase

    assert FromBase is LLMBackend
    assert "llm.backend" not in llm_graph()["llm.base"]  # loaded on first use, not imported


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_wheel_installs_llm_and_agents_only() -> None:
    wheel = pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]  # type: ignore[index]
    assert wheel == {"packages": ["llm", "agents"]}, "no only-include / force-include of top-level files (config.py)"


def test_gap_finder_is_contributed_through_the_entry_point_group() -> None:
    from llm.cli import COMMAND_GROUP, Command

    entries = pyproject()["project"]["entry-points"][COMMAND_GROUP]  # type: ignore[index]
    module, _, attribute = entries["gap-finder"].partition(":")
    assert module.startswith("agents.")
    command = getattr(__import__(module, fromlist=[attribute]), attribute)
    assert isinstance(command, Command) and command.name == "gap-finder"


@pytest.mark.parametrize("name", ["config"])
def test_the_repo_root_shim_still_serves_the_scoutagent_layout(name: str) -> None:
    import config
    import llm.config

    assert config.get_config is llm.config.get_config and (ROOT / f"{name}.py").is_file()
