"""requirements_llm.txt (the seed's `pip install -r requirements_llm.txt`) lists exactly the runtime dependencies of
`scout-llm[all]` in pyproject.toml, with the same lower bounds."""

from __future__ import annotations

import re
import tomllib

from tests.cli.runner import ROOT

REQUIREMENT = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?(.*)$")


def _parse(line: str) -> tuple[str, str]:
    match = REQUIREMENT.match(line.replace(" ", ""))
    assert match, line
    return match.group(1).lower().replace("_", "-"), match.group(3)


def _all_extra() -> dict[str, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    wanted = re.search(r"\[(.*)\]", extras["all"][0])
    assert wanted
    specs: dict[str, set[str]] = {}
    for line in [*project["dependencies"], *(dep for name in wanted.group(1).split(",") for dep in extras[name])]:
        name, spec = _parse(line)
        specs.setdefault(name, set()).add(spec)
    return specs


def test_requirements_file_is_the_all_extra() -> None:
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements_llm.txt").read_text().splitlines()]
    listed = dict(_parse(line) for line in lines if line)
    specs = _all_extra()
    assert set(listed) == set(specs), f"add {sorted(set(specs) - set(listed))}, drop {sorted(set(listed) - set(specs))}"
    for name, spec in listed.items():
        assert spec in specs[name], f"{name}{spec}: pyproject.toml says {sorted(specs[name])}"
