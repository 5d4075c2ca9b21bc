"""The GPU stack resolves: every install the kit performs is dry-run against the registry's metadata (slow: it
reaches the package index), each target's vLLM lies in the range the installed TRL declares, and TRL's
GRPOTrainer imports next to the chosen vLLM's module layout, in a fresh process."""

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from r3kit.infra import gpu_stack

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _workstation_requirements():
    """What `pip install .[gpu,forgetting]` asks for besides r3kit itself."""
    project = _pyproject()
    return [*project["dependencies"], *project["optional-dependencies"]["gpu"],
            *project["optional-dependencies"]["forgetting"]]


def _installs():
    colab = {tuple(gpu_stack.requirements(t)) for t in gpu_stack.TARGETS if t.startswith("colab")}
    return {**{f"colab {i}": list(reqs) for i, reqs in enumerate(sorted(colab))},
            "workstation (pip install .[gpu,forgetting])": _workstation_requirements()}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(_installs()))
def test_every_install_the_kit_performs_resolves_against_the_registry(name, tmp_path):
    requirements = _installs()[name]
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(report), *requirements], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{name} does not resolve:\n{done.stderr[-3000:]}"
    chosen = {item["metadata"]["name"].lower(): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    stack = gpu_stack.TARGETS["workstation"]
    assert chosen["vllm"] == stack.vllm and Version(chosen["torch"]).base_version == stack.torch
    assert chosen["transformers"] == "5.17.0" and chosen["trl"] == "1.15.0" and chosen["unsloth"] == "2026.10.9"
    assert Requirement(stack.torchao).specifier.contains(chosen["torchao"])


def test_each_targets_vllm_lies_in_the_range_trl_declares():
    declared = gpu_stack.trl_vllm_range()
    assert str(declared) in ("<=0.31.0,>=0.21.0", ">=0.21.0,<=0.31.0")  # what TRL 1.15.0's metadata says
    for target, stack in gpu_stack.TARGETS.items():
        assert declared.contains(stack.vllm), target
    gpu_extra = {Requirement(r).name: Requirement(r) for r in _pyproject()["optional-dependencies"]["gpu"]}
    assert str(gpu_extra["vllm"].specifier) == f"=={gpu_stack.TARGETS['workstation'].vllm}"  # the extra is that stack
    assert gpu_extra["torchao"].specifier == Requirement(gpu_stack.TARGETS["workstation"].torchao).specifier
    torch = next(Requirement(r) for r in _pyproject()["dependencies"] if r.startswith("torch"))
    assert torch.specifier.contains(gpu_stack.TARGETS["workstation"].torch)  # the core range admits vLLM's torch


def test_torchao_follows_the_torch_that_will_be_installed():
    assert gpu_stack.torchao_requirement("2.13.0") == "torchao>=0.17.0,<0.19.0"
    assert gpu_stack.torchao_requirement("2.10.1+cu126") == "torchao==0.16.0"
    with pytest.raises(ValueError, match="older than any torchao that peft accepts"):
        gpu_stack.torchao_requirement("2.9.0")
    for target, stack in gpu_stack.TARGETS.items():  # from the stack's torch, whatever this machine has
        assert stack.torchao in gpu_stack.requirements(target) and f"torch=={stack.torch}" in gpu_stack.requirements(target)


# The vLLM modules TRL 1.15.0 imports at import time (trl/generation/vllm_client.py, vllm_generation.py), as each
# release's wheel has them: 0.28 and later carry vllm.distributed.weight_transfer; 0.11.2 and 0.15.1 do not.
LAYOUT_031 = {
    "vllm/__init__.py": "class LLM: ...\nclass RequestOutput: ...\nclass SamplingParams: ...\n",
    "vllm/sampling_params.py": "class StructuredOutputsParams: ...\n",
    "vllm/utils/__init__.py": "",
    "vllm/utils/network_utils.py": "def get_ip(): return '127.0.0.1'\n",
    "vllm/distributed/__init__.py": "",
    "vllm/distributed/weight_transfer/__init__.py": "",
    "vllm/distributed/weight_transfer/nccl_common.py": "def trainer_init(*a, **k): ...\n",
    "vllm/distributed/weight_transfer/packed_tensor.py": "def packed_nccl_broadcast_producer(*a, **k): ...\n",
}
LAYOUTS = {"0.31.0": LAYOUT_031,
           "0.15.1": {k: v for k, v in LAYOUT_031.items() if "weight_transfer" not in k}}


def _import_grpo_trainer_beside(version: str, folder: Path, warnings_fail: bool = True) -> subprocess.CompletedProcess:
    for path, text in LAYOUTS[version].items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    info = folder / f"vllm-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
    (info / "top_level.txt").write_text("vllm\n")  # how importlib.metadata maps the module to its distribution
    code = textwrap.dedent(f"""
        import warnings
        if {warnings_fail}:
            warnings.simplefilter("error", UserWarning)  # TRL warns about a vLLM outside its range
        from trl import GRPOTrainer
        print("imported")
    """)
    env = {"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_grpo_trainer_imports_next_to_the_chosen_vllm_and_not_next_to_the_old_colab_one(tmp_path):
    """The vLLM stand-in is on the path before TRL is first imported, in a fresh process (so nothing imported
    earlier masks TRL's import-time checks)."""
    chosen = _import_grpo_trainer_beside(gpu_stack.TARGETS["colab-t4"].vllm, tmp_path / "chosen")
    assert chosen.returncode == 0 and "imported" in chosen.stdout, chosen.stderr[-2000:]
    old = _import_grpo_trainer_beside("0.15.1", tmp_path / "old", warnings_fail=False)
    assert old.returncode != 0 and "vllm.distributed.weight_transfer" in old.stderr
