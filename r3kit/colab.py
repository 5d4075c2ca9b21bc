"""Colab: install the GPU stack the way Unsloth's own Colab notebooks do, and keep run folders on Drive.

Each notebook's first code cell installs r3kit itself (no dependencies, seconds) from `R3KIT_SOURCE`,
the repository named once in pyproject.toml's [project.urls] (or a fork, or an uploaded wheel), then
calls `setup()`, which follows the install cell of Unsloth's GRPO notebooks (unslothai/notebooks at
bdda2efc, e.g. nb/Qwen3_(4B)-GRPO.ipynb):
    1. vLLM by card: a T4 (found in nvidia-smi's text) gets vllm 0.11.2, newer cards 0.15.1; numpy and
       pillow stay at Colab's versions; with them torchvision, bitsandbytes, xformers and Unsloth;
    2. triton; torchao without dependencies, its range chosen by the torch version;
    3. then r3kit's own pins where Unsloth's notebook pins others: transformers 5.17.0, and trl 1.15.0,
       peft, accelerate and datasets without dependencies (r3kit's trainer needs TRL's rollout_func).
torch itself is never named: what is installed is whatever vLLM's wheel needs on Colab's CUDA.
When a package the kernel has already imported changed version, the runtime must restart: setup()
says so and stops the notebook; run it again from the top afterwards (the second time it finds
everything installed and returns at once).
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import subprocess
import sys
from pathlib import Path

UNSLOTH = ("unsloth==2026.10.9", "unsloth_zoo==2026.10.9")
# trackio: train.report_to's default; lm-eval: the forgetting check of the GPU profiles
R3KIT_PINS = ("transformers==5.17.0", "trackio==0.43.0", "lm-eval[math]==0.4.13")
R3KIT_NO_DEPS = ("trl==1.15.0", "peft==0.21.2", "accelerate==1.15.0", "datasets==4.8.5")
VLLM_T4, VLLM_NEWER = "vllm==0.11.2", "vllm==0.15.1"
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


def install_commands(nvidia_smi_text: str, versions: dict[str, str | None]) -> list[list[str]]:
    """pip commands of the recipe, for a card (nvidia-smi's text) and the installed `versions`
    (numpy, pillow, torch as Colab has them)."""
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    keep = [f"{name}=={versions[name]}" for name in ("numpy", "pillow") if versions.get(name)]
    vllm = VLLM_T4 if is_t4(nvidia_smi_text) else VLLM_NEWER
    torch_version = tuple(int(x) for x in (versions.get("torch") or "0.0").split("+")[0].split(".")[:2])
    torchao = "torchao>=0.16.0" if torch_version >= (2, 10) else "torchao>=0.16.0,<0.18.0"
    return [
        [*pip, "--upgrade", vllm, *keep, "torchvision", "bitsandbytes", "xformers", *UNSLOTH],
        [*pip, "triton"],
        [*pip, "--no-deps", "--upgrade", torchao],
        [*pip, *R3KIT_PINS],
        [*pip, "--no-deps", *R3KIT_NO_DEPS],
    ]


def installed(names) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def ready() -> bool:
    """Whether the recipe already ran in this runtime (every pinned package at its version, vLLM there)."""
    pins = [re.sub(r"\[.*\]", "", spec).split("==") for spec in (*UNSLOTH, *R3KIT_PINS, *R3KIT_NO_DEPS)]
    have = installed([name for name, _ in pins] + ["vllm"])
    return all(have[name] == version for name, version in pins) and have["vllm"] is not None


def needs_restart(before: dict[str, str | None], after: dict[str, str | None], imported: set[str]) -> list[str]:
    """Packages the kernel had imported whose version changed: their old code is still in memory."""
    module = {"pillow": "PIL"}
    return sorted(name for name in before
                  if before[name] is not None and before[name] != after[name] and module.get(name, name) in imported)


def setup(run=subprocess.run) -> str:
    """Install the GPU stack on Colab (see the module docstring); elsewhere do nothing. Returns what it did."""
    if not on_colab():
        return "not on Colab: nothing to install"
    if ready():
        return "ready"
    watched = ("torch", "numpy", "pillow", "transformers", "triton", "peft", "accelerate", "datasets", "trl")
    before = installed(watched)
    smi = run(["nvidia-smi"], capture_output=True, text=True).stdout
    for command in install_commands(smi, before):
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
    from r3kit.profiles import project_root

    return project_root() / "results" / profile


# ---- what the notebooks carry, derived from the one repository URL (tests keep them in step) ---------------
INSTALL_CELL = '''# On Colab only: install r3kit (from R3KIT_SOURCE), then the GPU stack as Unsloth's Colab notebooks do. Elsewhere nothing.
R3KIT_SOURCE = "{source}"  # the kit's repository, a fork (git+https://...), or an uploaded wheel (/content/r3kit-....whl)
import sys
if "google.colab" in sys.modules:
    import subprocess
    spec = R3KIT_SOURCE if R3KIT_SOURCE.endswith(".whl") else f"r3kit @ {{R3KIT_SOURCE}}"
    if subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", spec]).returncode:
        raise RuntimeError(f"could not install r3kit from R3KIT_SOURCE = {{R3KIT_SOURCE!r}}: set R3KIT_SOURCE in this cell "
                           "to the kit's repository (git+https://...) or to a wheel you uploaded")
    from r3kit.colab import setup
    print(setup())'''


def install_cell() -> str:
    return INSTALL_CELL.format(source=source())


def badge(notebook: str) -> str:
    """The 'Open in Colab' badge of notebooks/<notebook> on the repository's main branch."""
    path = repository().removeprefix("https://github.com/").removesuffix(".git")
    return (f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{path}/blob/main/notebooks/{notebook})")
