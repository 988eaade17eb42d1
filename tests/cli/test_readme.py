"""The README runs exactly as written, against fake OpenAI and Anthropic servers.

What runs, and how:
- every ```python block is written to a file and run as `python file.py` (no wrapper: a top-level `await` or
  `async with` is the SyntaxError a reader would get). A block is a complete program.
- every command line of a ```bash block that calls the CLI (`scout-llm ...`, `python -m llm ...`, pipes and
  `VAR=value` prefixes included) runs in bash, with `scout-llm` meaning this checkout's `python -m llm`. It must exit
  0 and print something, unless its comment says `# exit N`.
- bash lines that set up a machine (`make`, `pip`, `git`, `cd`, `sudo`, `python3 -m venv`, `export`, `source`, with
  or without `VAR=value` prefixes) are not run here: they need the network or change the machine. `make demo` and
  `make test` are what CI runs, and the examples run in tests/cli/test_examples.py. Any other bash line fails the
  test, so that nothing goes unrun unnoticed.
- ```text blocks are output (transcripts, the error tree) and are not run.

The README's facts are checked against the code where they can drift: the configuration table is the list
`llm.config.variables()` returns, the error classes and policy settings it names exist, its `make` targets exist.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

import llm.errors
from llm.config import variables
from llm.manager import LLMManager, ManagerPolicy
from tests.cli.runner import ROOT, clean_env, run
from tests.fakes.claude_fake import API_KEY as CLAUDE_KEY
from tests.fakes.claude_fake import FakeClaude
from tests.fakes.openai_fake import API_KEY as OPENAI_KEY
from tests.fakes.openai_fake import FakeOpenAI

README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
BLOCKS = BLOCK.findall(README)
PYTHON = [body for lang, body in BLOCKS if lang == "python"]
SETUP = ("make ", "pip ", "git ", "cd ", "sudo ", "python3 -m venv", "export ", "source ")
CLI = re.compile(r"^(\w+=\S+ )*(scout-llm|python -m llm)\b|\| *scout-llm\b")
ENV_PREFIX = re.compile(r'^(\w+=("[^"]*"|\S+) )+')
EXPECTED_EXIT = re.compile(r"#.*\bexit (\d+)")


def bash_lines() -> list[str]:
    return [line.strip() for lang, body in BLOCKS if lang in ("bash", "sh", "shell") for line in body.splitlines()
            if line.strip() and not line.strip().startswith("#")]


CLI_LINES = [line for line in bash_lines() if CLI.search(line)]


@dataclass
class Fakes:
    env: dict[str, str]
    openai: FakeOpenAI
    claude: FakeClaude

    def requests(self) -> int:
        return len(self.openai.requests) + len(self.claude.requests)


@pytest.fixture
async def fakes(tmp_path: Path) -> AsyncIterator[Fakes]:
    async with FakeOpenAI() as openai_server, FakeClaude() as claude_server:
        env = clean_env(SCOUT_OPENAI_API_KEY=OPENAI_KEY, SCOUT_OPENAI_BASE_URL=openai_server.base_url,
                        SCOUT_ANTHROPIC_API_KEY=CLAUDE_KEY, SCOUT_ANTHROPIC_BASE_URL=claude_server.url,
                        SCOUT_ANTHROPIC_MODEL="claude-haiku-4-5", SCOUT_LOCAL_ENABLED="false")
        yield Fakes({**env, "PATH": f"{cli_shim(tmp_path)}:{env['PATH']}"}, openai_server, claude_server)


@pytest.fixture
def environment(fakes: Fakes) -> dict[str, str]:
    return fakes.env


def cli_shim(tmp_path: Path) -> Path:
    """`scout-llm` and `python` on PATH: this checkout's CLI, the test's interpreter (a script, not a symlink, so
    that the interpreter finds its virtual environment)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, command in (("scout-llm", f'"{sys.executable}" -m llm'), ("python", f'"{sys.executable}"')):
        shim = folder / name
        shim.write_text(f'#!/bin/sh\nexec {command} "$@"\n', encoding="utf-8")
        shim.chmod(0o755)
    return folder


def test_the_readme_has_snippets_of_each_kind() -> None:
    assert len(PYTHON) >= 12 and len(CLI_LINES) >= 6
    assert "make demo" in README and "make test" in README


def test_every_bash_line_is_run_or_a_setup_command() -> None:
    unrun = [line for line in bash_lines() if not CLI.search(line) and not ENV_PREFIX.sub("", line).startswith(SETUP)]
    assert not unrun, f"bash lines neither run by this test nor set-up commands: {unrun}"


def test_every_block_says_its_kind() -> None:
    assert all(lang in ("python", "bash", "text") for lang, _ in BLOCKS), [lang for lang, _ in BLOCKS]


def test_the_users_path_comes_before_the_internals() -> None:
    headings = [line[3:].strip() for line in README.splitlines() if line.startswith("## ")]
    order = ["Prerequisites", "What you will see", "Configure", "Call", "Stream", "Tools", "Errors", "Agents",
             "The CLI", "Internals"]
    positions = [next((i for i, h in enumerate(headings) if h.startswith(name)), -1) for name in order]
    assert -1 not in positions and positions == sorted(positions), headings


def test_the_demo_transcript_shows_every_step_of_the_demo() -> None:
    transcript = README.split("## What you will see", 1)[1].split("\n## ", 1)[0]
    example = (ROOT / "examples/llm_integration_example.py").read_text(encoding="utf-8")
    for title in re.findall(r'step\("([^"]+)"\)', example):
        assert f"=== {title} ===" in transcript
    assert "answered by local / " in transcript and "All steps passed in" in transcript


@pytest.mark.parametrize("snippet", PYTHON, ids=[f"python-{i}" for i in range(len(PYTHON))])
async def test_python_snippet_runs_as_a_file(snippet: str, environment: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "snippet.py"
    path.write_text(snippet, encoding="utf-8")
    result = await run([str(path)], environment, tmp_path)
    assert result.code == 0, f"snippet failed:\n{snippet}\n--- stderr:\n{result.stderr}"
    assert result.stdout.strip(), "a README program shows its result"
    assert OPENAI_KEY not in result.stdout + result.stderr and CLAUDE_KEY not in result.stdout + result.stderr


@pytest.mark.parametrize("command", CLI_LINES, ids=[f"cli-{i}" for i in range(len(CLI_LINES))])
async def test_cli_line_runs(command: str, fakes: Fakes, tmp_path: Path) -> None:
    (tmp_path / "pains.json").write_text(json.dumps(["Invoices typed by hand"]))
    expected = EXPECTED_EXIT.search(command)
    result = await run(["-c", "import subprocess, sys; sys.exit(subprocess.call(['bash', '-c', sys.argv[1]]))",
                        command], fakes.env, tmp_path)
    assert result.code == (int(expected.group(1)) if expected else 0), f"{command}\n--- stderr:\n{result.stderr}"
    if not expected:
        assert result.stdout.strip()
    else:  # a refused command says why in one line and sends nothing
        assert len(result.stderr.strip().splitlines()) == 1 and not result.stdout.strip(), result.stderr
        assert fakes.requests() == 0
    assert OPENAI_KEY not in result.stdout + result.stderr and CLAUDE_KEY not in result.stdout + result.stderr


# -- the README's facts against the code ------------------------------------------------------------------------------


def marked(name: str) -> str:
    """The text between `<!-- README: <name>` and `<!-- README: end of the <name> -->`."""
    return README.split(f"<!-- README: {name}", 1)[1].split(f"<!-- README: end of the {name} -->", 1)[0]


def table_rows(text: str) -> list[list[str]]:
    rows = [line.strip().strip("|").split("|") for line in text.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in row] for row in rows]


def expected_config_rows() -> dict[str, tuple[str, str, str]]:
    """`variables()` as the table writes it, one row per setting: `SCOUT_*` name -> (fallbacks, default, expected)."""
    rows: dict[str, tuple[str, str, str]] = {}
    names: dict[str, list[str]] = {}
    for variable in variables():
        names.setdefault(variable.setting, []).append(variable.name)
        first, *fallbacks = names[variable.setting]
        default = f"`{variable.default}`" if variable.default else ""
        rows[f"`{first}`"] = (", ".join(f"`{name}`" for name in fallbacks), default, variable.expected)
    return rows


def test_the_configuration_table_is_the_list_the_settings_read() -> None:
    """One row per setting: its SCOUT_* variable, the vendor variables it falls back to, and the default (in backticks
    when the setting has one, a description otherwise). A failure prints the rows to add, ready to paste."""
    expected = expected_config_rows()
    table = {row[0]: row for row in table_rows(marked("configuration table"))}
    missing = [f"| {name} | {fallbacks} | {default or '—'} | {what} |"
               for name, (fallbacks, default, what) in expected.items() if name not in table]
    assert not missing, "rows the README's configuration table lacks:\n" + "\n".join(missing)
    assert not table.keys() - expected.keys(), f"variables the settings do not read: {table.keys() - expected.keys()}"
    for name, (fallbacks, default, _) in expected.items():
        shown = table[name]
        assert shown[1] == fallbacks, (name, shown[1], fallbacks)
        assert shown[2] == default if default else not shown[2].startswith("`"), (name, shown[2], default)


def test_every_error_class_the_readme_names_is_exported() -> None:
    import llm.prompts

    named = set(re.findall(r"\b(?:LLM|Prompt)\w*Error\b", README))
    missing = {name for name in named if not hasattr(llm, name) and not hasattr(llm.prompts, name)}
    assert not missing, f"the README names error classes that do not exist: {missing}"
    assert {name for name in llm.__all__ if name.endswith("Error")} <= named, "an exported error is undocumented"


def error_tree(text: str) -> str:
    """The block of `text` from the line `LLMError` to the first blank line or fence, dedented."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "LLMError")
    end = next(i for i in range(start, len(lines)) if not lines[i].strip() or lines[i].startswith("```"))
    return textwrap.dedent("\n".join(lines[start:end]))


def test_the_readme_draws_the_error_tree_of_llm_errors() -> None:
    assert error_tree(README) == error_tree(llm.errors.__doc__ or ""), "copy the tree from llm/errors.py's docstring"


def test_every_policy_setting_the_readme_names_is_a_manager_policy_field() -> None:
    policy = {field.name for field in fields(ManagerPolicy)} | set(inspect.signature(LLMManager).parameters)
    named = set(re.findall(r"`((?:breaker|quota|health_check|retry_after|backoff)_\w+)`", README))
    for call in re.findall(r"`LLMManager\(([^)]*)\)`", README):
        named |= set(re.findall(r"(\w+)=", call))
    assert named and not named - policy, f"not ManagerPolicy fields: {named - policy}"


def test_every_make_target_the_readme_names_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"(?m)^([\w-]+):", makefile))
    named = set(re.findall(r"(?m)(?:`|^)make ([a-z][\w-]*)", README))
    assert named and not named - targets, f"make targets the Makefile lacks: {named - targets}"
