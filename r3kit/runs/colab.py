"""Colab: install the GPU stack in one resolver-checked pip call, and keep run folders on Drive.

Each notebook's first code cell installs r3kit itself (no dependencies, seconds) from `R3KIT_SOURCE`,
the repository named once in pyproject.toml's [project.urls] (or a fork, or an uploaded wheel), then
calls `setup()`, which installs the card's stack (r3kit/infra/gpu_stack.py: vLLM 0.31.0 with the torch it pins,
torchao for that torch, and the kit's own pins: transformers 5.17.0, TRL 1.15.0, peft, accelerate,
datasets, Unsloth 2026.10.9, trackio, lm-eval) in ONE pip call, so pip resolves them together; the same
call is dry-run against the registry in the tests. Colab's own torch is replaced by the one vLLM pins.
When a package the kernel has already imported changed version, the runtime must restart: setup()
says so and stops the notebook; run it again from the top afterwards (the second time it finds
everything installed and returns at once).
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

from r3kit.infra import gpu_stack

DRIVE = Path("/content/drive")
DRIVE_RUNS = DRIVE / "MyDrive" / "r3kit-runs"


def repository() -> str:
    """The kit's repository URL, from the installed package's metadata (pyproject's [project.urls])."""
    urls = metadata.metadata("r3kit").get_all("Project-URL") or []
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository":
            return url.strip()
    raise ValueError("r3kit's metadata names no Repository URL ([project.urls] in pyproject.toml)")


def source() -> str:
    """What the notebooks' install cell gives pip by default."""
    return f"git+{repository()}"


def on_colab() -> bool:
    return "google.colab" in sys.modules or any(key.startswith("COLAB_") for key in os.environ)


def is_t4(nvidia_smi_text: str) -> bool:
    return "Tesla T4" in nvidia_smi_text


def target(nvidia_smi_text: str) -> str:
    """The GPU stack's target for the card nvidia-smi names."""
    return "colab-t4" if is_t4(nvidia_smi_text) else "colab-a100"


def install_command(nvidia_smi_text: str) -> list[str]:
    """The one pip call that installs the stack for this card."""
    return gpu_stack.install_command(target(nvidia_smi_text))


def installed(names) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def ready(nvidia_smi_text: str = "") -> bool:
    """Whether this card's stack is already installed in this runtime (every requirement met)."""
    wanted = [Requirement(spec) for spec in gpu_stack.requirements(target(nvidia_smi_text))]
    have = installed([req.name for req in wanted])
    return all(have[req.name] is not None and req.specifier.contains(have[req.name], prereleases=True) for req in wanted)


def needs_restart(before: dict[str, str | None], after: dict[str, str | None], imported: set[str]) -> list[str]:
    """Packages the kernel had imported whose version changed: their old code is still in memory."""
    module = {"pillow": "PIL"}
    return sorted(name for name in before
                  if before[name] is not None and before[name] != after[name] and module.get(name, name) in imported)


def setup(run=subprocess.run) -> str:
    """Install the GPU stack on Colab (see the module docstring); elsewhere do nothing. Returns what it did."""
    if not on_colab():
        return "not on Colab: nothing to install"
    smi = run(["nvidia-smi"], capture_output=True, text=True).stdout
    if ready(smi):
        return "ready"
    watched = ("torch", "numpy", "pillow", "transformers", "triton", "peft", "accelerate", "datasets", "trl")
    before = installed(watched)
    command = install_command(smi)
    print("$", " ".join(command[2:]), flush=True)
    if run(command).returncode != 0:
        raise RuntimeError(f"pip failed: {' '.join(command[2:])}")
    changed = needs_restart(before, installed(watched), set(sys.modules))
    if changed:
        message = (f"Installed. {', '.join(changed)} changed version after this runtime imported it: restart the runtime "
                   "(Runtime > Restart session), then run this notebook again from the top.")
        print(message)
        raise SystemExit(message)
    return "installed"


def run_folder(profile: str, run_dir: str = "", use_drive: bool = True, mount=None) -> Path:
    """Where a Colab run keeps its files: `run_dir` if given; on Colab with `use_drive`, Google Drive
    (mounted here if it is not), so a disconnected runtime loses nothing and a rerun resumes; else results/."""
    if run_dir:
        return Path(run_dir)
    if use_drive and on_colab():
        if not (DRIVE / "MyDrive").exists():
            if mount is None:
                from google.colab import drive  # type: ignore[import-not-found]

                mount = drive.mount
            mount(str(DRIVE))
        return DRIVE_RUNS / profile
    from r3kit.infra.io import checkout_root  # setup() runs before the GPU stack is installed: import nothing heavy

    return (checkout_root() or Path.cwd()) / "results" / profile


# ---- what the notebooks carry, derived from the one repository URL (tests keep them in step) ---------------
INSTALL_CELL = '''# On Colab only: install r3kit (from R3KIT_SOURCE), then the GPU stack in one pip call. Elsewhere nothing.
R3KIT_SOURCE = "{source}"  # the kit's repository, a fork (git+https://...), or an uploaded wheel (/content/r3kit-....whl)
import sys
if "google.colab" in sys.modules:
    import subprocess
    spec = R3KIT_SOURCE if R3KIT_SOURCE.endswith(".whl") else f"r3kit @ {{R3KIT_SOURCE}}"
    if subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", spec]).returncode:
        raise RuntimeError(f"could not install r3kit from R3KIT_SOURCE = {{R3KIT_SOURCE!r}}: set R3KIT_SOURCE in this cell "
                           "to the kit's repository (git+https://...) or to a wheel you uploaded")
    from r3kit.runs.colab import setup
    print(setup())'''


def install_cell() -> str:
    return INSTALL_CELL.format(source=source())


def badge(notebook: str) -> str:
    """The 'Open in Colab' badge of notebooks/<notebook> on the repository's main branch."""
    path = repository().removeprefix("https://github.com/").removesuffix(".git")
    return (f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{path}/blob/main/notebooks/{notebook})")
