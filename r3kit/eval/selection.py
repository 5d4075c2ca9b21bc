"""Checkpoint selection on the validation split: which saved weights of a training run to report.

Every checkpoint the trainer saved, and the final weights, are evaluated on the validation split
(never the test split); the one with the best `metric` (ties: the later step) is selected. The test
split then scores the selected weights and, unless `score_last` is off, the last ones, and both are reported
(pipeline.select_stage).
"""

from __future__ import annotations

from dataclasses import dataclass

from r3kit.core.episodes import CONDITIONS

METRICS = ("first_try", "second_try")


@dataclass
class SelectionConfig:
    metric: str = "second_try"  # the paper's headline measure: success within two tries
    n_examples: int | None = None  # None: the whole validation split
    conditions: tuple[str, ...] = ("reflection",)
    score_last: bool = True  # the test split scores the last weights too when an earlier step was chosen

    def validate(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"select.metric must be one of {METRICS}, got {self.metric!r}")
        if self.metric == "second_try" and "reflection" not in self.conditions:
            raise ValueError("select.metric 'second_try' needs the 'reflection' condition in select.conditions")
        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown:
            raise ValueError(f"unknown condition(s) {unknown} in select.conditions; choose from {CONDITIONS}")
        if self.n_examples is not None and self.n_examples < 1:
            raise ValueError(f"select.n_examples must be >= 1 or None, got {self.n_examples}")


def best_step(scores: dict[int, float]) -> int:
    """The step with the highest score; ties go to the later step."""
    if not scores:
        raise ValueError("no checkpoint was scored")
    best = max(scores.values())
    return max(step for step, score in scores.items() if score == best)
