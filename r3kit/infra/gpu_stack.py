"""The GPU stack: for each target, one set of versions that pip resolves in one command, inside what TRL supports.

Why one command: `pip install a; pip install b` lets the second call break what the first chose, and pip only prints
the conflict (exit 0). A single call resolves vLLM, torch, transformers, TRL, Unsloth and torchao together, and a
test dry-runs exactly that call against the registry (`pip install --dry-run --ignore-installed --report`).

The choice (registry metadata and the wheels' sources, read 2026-12-02):
    vLLM 0.31.0  the newest release inside TRL 1.15.0's declared range (0.21.0-0.31.0, trl/import_utils.py; its
                 vllm_client.py imports vllm.distributed.weight_transfer, which vLLM has from 0.28). It pins
                 torch 2.13.0 and accepts transformers >=5.10.4,<5.18.0, so the kit's transformers 5.17.0, TRL
                 1.15.0 and Unsloth 2026.10.9 (torch <2.15) stay as they are on the CPU.
    torchao      follows the torch that will be installed (not the one the machine had): 0.17-0.18 need torch
                 2.11 or newer; peft refuses torchao older than 0.16.
    T4           vLLM 0.31 lists compute capability 7.5 as supported; there it attends with its Triton backend
                 (FlashAttention needs 8.0) and runs float16 (bf16 needs 8.0; the GPU profiles choose float16 on
                 a T4). Its wheel is built for CUDA 13, so the card's driver must support CUDA 13.
The three targets share these versions today; they stay separate entries so that one can move alone.
What has run: each install is resolved against the registry in the tests; none has run on a Colab runtime.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import metadata

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version


@dataclass(frozen=True)
class Stack:
    vllm: str
    torch: str  # what this vLLM pins: the torch that will be installed

    @property
    def torchao(self) -> str:
        return torchao_requirement(self.torch)


TARGETS = {
    "colab-t4": Stack(vllm="0.31.0", torch="2.13.0"),
    "colab-a100": Stack(vllm="0.31.0", torch="2.13.0"),
    "workstation": Stack(vllm="0.31.0", torch="2.13.0"),
}


def torchao_requirement(torch_version: str) -> str:
    """torchao's range for the torch that will be installed."""
    base = Version(Version(torch_version).base_version)
    if base >= Version("2.11"):
        return "torchao>=0.17.0,<0.19.0"
    if base >= Version("2.10"):
        return "torchao==0.16.0"
    raise ValueError(f"torch {torch_version} is older than any torchao that peft accepts (0.16, which needs torch 2.10)")


def trl_vllm_range() -> SpecifierSet:
    """The vLLM versions the installed TRL declares (its `vllm` extra)."""
    for line in metadata.requires("trl") or []:
        req = Requirement(line)
        if req.name == "vllm":
            return req.specifier
    raise ValueError("the installed TRL declares no vllm extra")


def kit_requirements(extras: tuple[str, ...] = ("forgetting",)) -> list[str]:
    """The kit's own requirements (core and `extras`) as the installed r3kit declares them, torch left out (the
    stack names it)."""
    out = []
    for line in metadata.requires("r3kit") or []:
        req = Requirement(line)
        marker = str(req.marker) if req.marker else ""
        extra = re.search(r'extra == "([^"]+)"', marker)
        if (extra is None or extra.group(1) in extras) and req.name != "torch" and req.name != "vllm":
            out.append(str(Requirement(f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}"
                                       f"{req.specifier}")))
    return out


def requirements(target: str) -> list[str]:
    """Everything a target installs, for one pip call."""
    if target not in TARGETS:
        raise ValueError(f"unknown GPU target {target!r}; known: {sorted(TARGETS)}")
    stack = TARGETS[target]
    return [f"vllm=={stack.vllm}", f"torch=={stack.torch}", stack.torchao, *kit_requirements()]


def install_command(target: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "pip", "install", "-q", *requirements(target)]
