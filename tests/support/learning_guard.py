"""The learning guard's run (tests/test_learning.py) and its student, shipped so the guard need not train it.

The student is what the guard's run trains at its student stage (cpu-demo's student with 640 SFT steps; about
11 minutes on 2 cores, which the guard would otherwise spend before any RL): the same settings, task, data
generator and held-out rows, checked by `matches(run)` before the guard uses it. Rebuild it after changing
anything the student's training depends on (the guard's message says so):

    .venv/bin/python tests/support/learning_guard.py

Floating-point order differs between CPUs, so a rebuild on another machine can differ in the last bits.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "learning_guard_student"
OVERRIDES = {
    "student": {"steps": 640}, "data": {"n_test": 3000, "n_validation": 500, "n_train": 8000},
    "evaluate": {"conditions": ["reflection"], "n_examples": None, "bounds": False},  # only what the guard asserts
    "train": {"steps": 100, "problems_per_step": 16, "micro_batch_size": 128, "generation_batch_size": 128,
              "save_steps": 50},
    "select": {"metric": "second_try"},
    "preconditions": None,  # the guard tests the code, not whether this student suits R3
}


def guard_run(run_dir):
    from r3kit.runs.profiles import resolve

    return resolve("cpu-demo", run_dir, overrides=OVERRIDES)


def summary() -> dict:
    from r3kit.infra.io import read_json

    return read_json(FOLDER / "student.json")


def matches(run) -> tuple[bool, dict, dict]:
    """(whether the shipped student was trained as `run` would train it, what it records, what `run` needs)."""
    from r3kit.runs.pipeline import held_out_keys
    from r3kit.student.countdown import recorded_identity, training_identity

    shipped = recorded_identity(summary())
    wanted = training_identity(run.student, run.task, run.data.generator, held_out_keys(run))
    return shipped == wanted, shipped, wanted


def install(run_dir: Path) -> None:
    """Copy the shipped student into a run folder, where the student stage finds and keeps it."""
    shutil.copytree(FOLDER / "student", Path(run_dir) / "student")
    shutil.copy(FOLDER / "student.json", Path(run_dir) / "student.json")


def build() -> None:
    from r3kit.runs.pipeline import student_stage

    with tempfile.TemporaryDirectory() as tmp:
        student_stage(guard_run(tmp))
        if FOLDER.exists():
            shutil.rmtree(FOLDER)
        FOLDER.mkdir()
        shutil.copytree(Path(tmp) / "student", FOLDER / "student")
        shutil.copy(Path(tmp) / "student.json", FOLDER / "student.json")
    print(f"wrote {FOLDER}")


if __name__ == "__main__":
    sys.exit(build())
