"""The package's layering: the layers ARCHITECTURE.md names, imported only downwards; `llm` never imports `agents`; no
import cycle inside `llm`; size limits of modules and functions; the wheel installs exactly `llm` and `agents`; the
agents' CLI command reaches `scout-llm` through an entry point."""

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


#: The layers of ARCHITECTURE.md, bottom to top: module-name prefixes (a folder's prefix covers its modules).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("llm.errors", "llm.base", "llm.config", "llm.prompts", "llm.core", "llm.accounting", "llm.output")),
    ("backends", ("llm.backends",)),
    ("health", ("llm.fleet", "llm.health")),
    ("call", ("llm.call",)),
    ("facade", ("llm.manager", "llm.sync", "llm.utils", "llm.cli", "llm.agent", "llm.__main__", "llm")),
)


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest prefix naming `module`."""
    matches = [(len(prefix), index) for index, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer of ARCHITECTURE.md"
    return max(matches)[1]


def test_every_layer_is_named_in_architecture_md() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for name, prefixes in LAYERS:
        assert f"| {name} |" in text
        for prefix in prefixes:
            if prefix != "llm":
                short = prefix.removeprefix("llm.").replace(".", "/")
                assert f"`{short}/`" in text or f"`{short}.py`" in text, f"{prefix} is not in ARCHITECTURE.md"


#: The one name a lower layer offers from a higher one, loaded on first use: ScoutAgent imports the backend base class
#: as `from llm.base import LLMBackend`.
CONTRACT_REEXPORTS = {("llm.base", "llm.backends.base")}


def lazy_homes(path: Path) -> set[str]:
    """The modules a file names as the homes of names it loads on first use (`{"LLMBackend": "llm.backends.base"}`)."""
    return {value.value for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.Dict)
            for value in node.values if isinstance(value, ast.Constant) and value.value in MODULES}


def test_no_module_imports_a_higher_layer() -> None:
    graph = {name: others | lazy_homes(MODULES[name]) for name, others in llm_graph().items()}
    upward = sorted(f"{name} ({LAYERS[layer_of(name)][0]}) -> {other} ({LAYERS[layer_of(other)][0]})"
                    for name, others in graph.items() for other in others
                    if layer_of(other) > layer_of(name) and (name, other) not in CONTRACT_REEXPORTS)
    assert upward == []


def test_at_most_twelve_modules_directly_in_llm() -> None:
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top


def test_no_module_over_400_lines() -> None:
    long = {str(path.relative_to(ROOT)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}


def test_no_function_over_50_lines() -> None:
    long = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > 50:
                    long[f"{path.relative_to(ROOT)}:{node.name}"] = length
    assert long == {}


def test_the_manager_and_bootstrap_are_not_a_cycle() -> None:
    graph = llm_graph()
    assert "llm.backends.bootstrap" in graph["llm.manager"]
    assert "llm.manager" not in graph["llm.backends.bootstrap"]


def test_llm_base_still_exports_the_backend_base_class() -> None:
    from llm.backends.base import LLMBackend
    from llm.base import LLMBackend as FromBase

    assert FromBase is LLMBackend
    assert "llm.backends.base" not in llm_graph()["llm.base"]  # loaded on first use, not imported


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
