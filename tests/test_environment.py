"""environment.yml and pyproject.toml describe the same environment, so they cannot drift apart."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    return {re.split(r"[=<>!~]", line, maxsplit=1)[0].strip().lower(): line.replace(" ", "") for line in lines}


def test_environment_yml_pins_the_same_versions_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = _pins(project["dependencies"] + extras["dev"] + extras["lab"] + extras["forgetting"])
    text = (ROOT / "environment.yml").read_text()
    pip_section = text.split("- pip:", 1)[1]
    listed = [line.strip()[2:] for line in pip_section.splitlines() if line.strip().startswith("- ")]
    pins = _pins([item for item in listed if not item.startswith("-")])
    assert pins == wanted
    assert any(item.startswith("-e .") for item in listed), "environment.yml must install this package"
    python = re.search(r"-\s*python=(\d+\.\d+)", text).group(1)
    low, high = re.search(r">=(\d+\.\d+),<(\d+\.\d+)", project["requires-python"]).groups()
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    assert as_tuple(low) <= as_tuple(python) < as_tuple(high)


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r"```(?:bash|sh)?\n(make test)\n```", readme).group(1)
    assert command in ci.splitlines()
