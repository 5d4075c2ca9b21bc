"""The configuration of a whole run: one dataclass per stage, gathered in a RunConfig.

Each stage's own config lives beside its code (ModelConfig in models/loading.py, EvalConfig in
eval/evaluate.py, TrainConfig in core/trainer.py, ...); this module adds the two sections that belong to
the run rather than a stage (StudyConfig: the seeds of a study; LaunchConfig: how many processes) and
the RunConfig that holds them all. profiles.py fills a RunConfig from a named profile or a YAML file.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r3kit.core.arms import ARMS
from r3kit.core.mining import MiningConfig
from r3kit.core.trainer import TrainConfig
from r3kit.data import DataConfig
from r3kit.eval.evaluate import EvalConfig
from r3kit.eval.forgetting import ForgettingConfig
from r3kit.eval.preconditions import PreconditionsConfig
from r3kit.eval.selection import SelectionConfig
from r3kit.models.loading import ModelConfig
from r3kit.student.countdown import StudentConfig
from r3kit.tasks import get_task

LAUNCHERS = ("accelerate", "torchrun")


# The comparisons a study makes across arms, paired by seed (runs/study.py), and what it compares; an endpoint is one
# of them, or "<arm> - vanilla: frozen_retrier". reflection_gain_*: arm minus vanilla is the difference-in-differences,
# (own - control) trained - (own - control) vanilla.
COMPARISONS = (("r3", "vanilla"), ("r3", "grpo"), ("r3", "retry_control"), ("grpo", "vanilla"), ("retry_control", "vanilla"))
COMPARED = ("first_try", "second_try", "second_try_last", "on_vanilla_failures", "reflection_gain_over_no_reflection",
            "reflection_gain_over_generic_reflection")


@dataclass
class StudyConfig:
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # training seeds (one run of every arm each)
    students: tuple[int, ...] = (0, 1)  # student seeds; training seed t uses students[t % len(students)]
    arms: tuple[str, ...] = ("r3", "grpo", "retry_control")
    # the comparisons the study is judged on, declared before it runs, named as study.json names its comparisons
    # ("r3 - vanilla: frozen_retrier", "r3 - grpo: second_try"); its table leads with them, every test two-sided
    endpoints: tuple[str, ...] = ()

    def validate(self) -> None:
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"a study needs at least 2 distinct training seeds, got {self.seeds}")
        if not self.students or len(set(self.students)) != len(self.students):
            raise ValueError(f"study.students must be distinct student seeds, got {self.students}")
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown or "r3" not in self.arms:
            raise ValueError(f"study.arms must include 'r3' and come from {ARMS}, got {self.arms}")
        wrong = [e for e in self.endpoints if not self._comparison(str(e))]
        if wrong:
            raise ValueError(f"study.endpoints are named '<arm> - <arm or vanilla>: <measure>' with arms from "
                             f"{self.arms}, the pairs {[f'{a} - {b}' for a, b in COMPARISONS]} and a measure from "
                             f"{[*COMPARED, 'frozen_retrier']} (frozen_retrier: against vanilla); got {wrong}")

    def _comparison(self, name: str) -> bool:
        match = re.fullmatch(r"(\w+) - (\w+): (\w+)", name)
        if not match:
            return False
        a, b, measure = match.groups()
        if a not in self.arms or (b != "vanilla" and b not in self.arms):
            return False
        if measure == "frozen_retrier":
            return b == "vanilla"
        return (a, b) in COMPARISONS and measure in COMPARED

    def student_of(self, seed: int) -> int:
        return self.students[self.seeds.index(seed) % len(self.students)]

    def seeds_of(self, student: int) -> list[int]:
        return [t for t in self.seeds if self.student_of(t) == student]


@dataclass
class LaunchConfig:
    processes: int = 1  # processes on this node (one per GPU; on CPU, gloo processes)
    launcher: str = "accelerate"
    config_file: str | None = None  # an accelerate config (configs/*.yaml); accelerate only
    port: int | None = None  # the rendezvous port; None: a free one

    def validate(self) -> None:
        if self.processes < 1:
            raise ValueError(f"launch.processes must be >= 1, got {self.processes}")
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"launch.launcher must be one of {LAUNCHERS}, got {self.launcher!r}")
        if self.config_file is not None:
            if self.launcher != "accelerate":
                raise ValueError("launch.config_file is an accelerate config: it needs launcher 'accelerate'")
            if not Path(self.config_file).exists():
                raise ValueError(f"launch.config_file {self.config_file!r} does not exist")


SECTIONS = {"model": ModelConfig, "data": DataConfig, "student": StudentConfig, "evaluate": EvalConfig,
            "mine": MiningConfig, "train": TrainConfig, "grpo": TrainConfig, "control": TrainConfig,
            "select": SelectionConfig, "study": StudyConfig, "forgetting": ForgettingConfig, "launch": LaunchConfig,
            "preconditions": PreconditionsConfig}


@dataclass
class RunConfig:
    profile: str
    run_dir: Path
    task: str
    prompt_style: str
    model: ModelConfig
    data: DataConfig
    student: StudentConfig | None
    evaluate: EvalConfig
    mine: MiningConfig
    train: TrainConfig
    control: TrainConfig | None
    grpo: TrainConfig | None = None
    select: SelectionConfig | None = None
    study: StudyConfig | None = None
    forgetting: ForgettingConfig | None = None
    launch: LaunchConfig | None = None  # None: one process
    preconditions: PreconditionsConfig | None = None  # R3's gate, measured before training (None: not measured)
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # as given to resolve (launch.py rebuilds the run)

    def get_task(self):
        return get_task(self.task, style=self.prompt_style)

    def to_dict(self) -> dict[str, Any]:
        out = {"profile": self.profile, "run_dir": str(self.run_dir), "task": self.task, "prompt_style": self.prompt_style}
        for name in SECTIONS:
            value = getattr(self, name)
            out[name] = dataclasses.asdict(value) if value is not None else None
        return out
