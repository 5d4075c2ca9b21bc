"""Colab: the install cell and badges come from the one repository URL, the install is the card's GPU stack in one
pip call (restart when an imported package changed), run folders go to Drive, and the notebooks ship inside the
package (a plain pip install reproduces the smoke profile: tests/test_notebooks.py)."""

import subprocess
import sys
import types
import zipfile
from pathlib import Path

import nbformat
import pytest

from r3kit.infra import gpu_stack
from r3kit.runs import colab

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
A100 = "| NVIDIA A100-SXM4-40GB  On |"
T4 = "|   0  Tesla T4            Off |"


def test_repository_is_named_once_and_every_notebook_and_the_readme_derive_from_it():
    import tomllib

    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    assert colab.repository() == url and colab.source() == f"git+{url}"
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[1].source == colab.install_cell(), f"{path.name}: install cell out of step with pyproject"
        assert colab.badge(path.name) in nb.cells[0].source, f"{path.name}: badge out of step with pyproject"
        assert colab.badge(path.name) in readme, f"README lacks the badge of {path.name}"


def run_cell(monkeypatch, source_line=None, returncode=0):
    """Execute the install cell as Colab would, with pip and setup() recorded instead of run."""
    calls = []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd) or types.SimpleNamespace(returncode=returncode))
    monkeypatch.setattr(colab, "setup", lambda: calls.append("setup") or "installed")
    cell = colab.install_cell()
    if source_line is not None:
        cell = cell.replace(f'R3KIT_SOURCE = "{colab.source()}"', f'R3KIT_SOURCE = "{source_line}"')
    exec(compile(cell, "install-cell", "exec"), {})
    return calls


def test_the_install_cell_installs_r3kit_without_dependencies_then_runs_the_recipe(monkeypatch):
    calls = run_cell(monkeypatch)
    assert calls[0][-4:] == ["install", "-q", "--no-deps", f"r3kit @ {colab.source()}"] and calls[1] == "setup"
    wheel = run_cell(monkeypatch, "/content/r3kit-0.1.0-py3-none-any.whl")
    assert wheel[-2][-1] == "/content/r3kit-0.1.0-py3-none-any.whl"


def test_an_unreachable_repository_names_the_setting_to_change(monkeypatch):
    with pytest.raises(RuntimeError, match="set R3KIT_SOURCE in this cell"):
        run_cell(monkeypatch, "git+https://example.invalid/nope", returncode=1)


def test_setup_installs_the_cards_stack_in_one_pip_call():
    for smi, target in ((T4, "colab-t4"), (A100, "colab-a100")):
        command = colab.install_command(smi)
        assert command[1:4] == ["-m", "pip", "install"] and command[5:] == gpu_stack.requirements(target)
        assert f"vllm=={gpu_stack.TARGETS[target].vllm}" in command and "transformers==5.17.0" in command
        assert "trl==1.15.0" in command and "unsloth==2026.10.9" in command and "--no-deps" not in command


def fake_colab(monkeypatch, before, after, imported=("torch",)):
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab")
    monkeypatch.setattr(colab, "ready", lambda smi="": False)
    states = iter([before, after])
    monkeypatch.setattr(colab, "installed", lambda names: next(states))
    for name in imported:
        monkeypatch.setitem(sys.modules, name, sys.modules.get(name, types.ModuleType(name)))
    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        return types.SimpleNamespace(returncode=0, stdout=T4 if cmd == ["nvidia-smi"] else "")

    return calls, run


def test_setup_asks_for_a_restart_when_an_imported_package_changed(monkeypatch):
    calls, run = fake_colab(monkeypatch, {"torch": "2.9.0", "numpy": "2.0.2"}, {"torch": "2.9.1", "numpy": "2.0.2"})
    with pytest.raises(SystemExit, match="restart the runtime"):
        colab.setup(run=run)
    assert calls[0] == ["nvidia-smi"] and calls[1:] == [colab.install_command(T4)]  # one pip call


def test_setup_needs_no_restart_when_nothing_imported_changed_and_does_nothing_when_ready(monkeypatch):
    calls, run = fake_colab(monkeypatch, {"torch": "2.9.0", "trl": None}, {"torch": "2.9.0", "trl": "1.15.0"})
    assert colab.setup(run=run) == "installed"
    monkeypatch.setattr(colab, "ready", lambda smi="": True)
    assert colab.setup(run=lambda cmd, **k: cmd == ["nvidia-smi"] and types.SimpleNamespace(returncode=0, stdout=T4)
                       or pytest.fail("ran a pip command")) == "ready"


def test_setup_does_nothing_off_colab(monkeypatch):
    for key in [k for k in __import__("os").environ if k.startswith("COLAB_")]:
        monkeypatch.delenv(key)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert "nothing" in colab.setup(run=lambda *a, **k: pytest.fail("ran a command"))


def test_run_folder_is_on_drive_on_colab_and_mounts_it(monkeypatch, tmp_path):
    monkeypatch.setenv("COLAB_RELEASE_TAG", "x")
    monkeypatch.setattr(colab, "DRIVE", tmp_path / "drive")
    monkeypatch.setattr(colab, "DRIVE_RUNS", tmp_path / "drive" / "MyDrive" / "r3kit-runs")
    mounted = []
    folder = colab.run_folder("qwen2.5-1.5b-countdown-t4", mount=mounted.append)
    assert mounted == [str(tmp_path / "drive")] and folder == tmp_path / "drive" / "MyDrive" / "r3kit-runs" / "qwen2.5-1.5b-countdown-t4"
    assert colab.run_folder("p", "/somewhere") == Path("/somewhere")
    assert colab.run_folder("p", use_drive=False).parts[-2:] == ("results", "p")


def test_the_wheel_carries_the_notebooks(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("r3kit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for path in NOTEBOOKS:
        assert f"r3kit/notebooks/{path.name}" in names
    assert "r3kit/runs/colab.py" in names and "r3kit/tasks/countdown.py" in names and "r3kit/data/countdown.py" in names


