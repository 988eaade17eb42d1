"""Run the project's commands as subprocesses against fake vendor servers (which keep serving on this loop).

The subprocess sees this checkout first on its path, with the package metadata this checkout's pyproject.toml declares
(name, version, entry points) next to it, as `pip install` would write it: so `scout-llm --version` and the
`scout_llm.commands` entry points are this checkout's, whatever the shared virtualenv was installed from.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import shutil
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Completed:
    code: int
    stdout: str
    stderr: str


@functools.cache
def metadata_dir() -> Path:
    """A directory holding `scout_llm-<version>.dist-info` built from this checkout's pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    where = Path(tempfile.mkdtemp(prefix="scout-llm-metadata-"))
    atexit.register(shutil.rmtree, where, True)
    info = where / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = [f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in entries.items())
             for group, entries in {"console_scripts": project.get("scripts", {}),
                                    **project.get("entry-points", {})}.items()]
    (info / "entry_points.txt").write_text("\n".join(lines))
    return where


def clean_env(**scout: str) -> dict[str, str]:
    """The environment without any SCOUT_* or vendor variables, plus the given ones."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SCOUT_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_", "OLLAMA_", "DEEPSEEK_"))}
    env["SCOUT_OLLAMA_ENABLED"] = "false"
    env["SCOUT_LOCAL_ENABLED"] = "false"  # the in-process model is tested in tests/backends/test_local_e2e.py
    env["PYTHONPATH"] = os.pathsep.join((str(ROOT), str(metadata_dir())))
    env.update(scout)
    return env


#: `python -c` code that runs `python -m llm` with the modules named in argv[1] (comma-separated) made unimportable,
#: as when their package is not installed.
WITHOUT_MODULES = (
    "import runpy, sys\n"
    "for name in filter(None, sys.argv.pop(1).split(',')): sys.modules[name] = None\n"
    "sys.argv[0] = 'scout-llm'\n"
    "runpy.run_module('llm', run_name='__main__', alter_sys=True)\n"
)


def without(modules: str, *args: str) -> list[str]:
    """Arguments for `run`: the CLI with `modules` (e.g. "anthropic") missing."""
    return ["-c", WITHOUT_MODULES, modules, *args]


async def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60,
              stdin: bytes | None = None) -> Completed:
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=cwd, env=env,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(stdin), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Completed(process.returncode, stdout.decode(), stderr.decode())
