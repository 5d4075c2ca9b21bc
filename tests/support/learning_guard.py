"""The learning guard's run (tests/test_learning.py), its student and vanilla's test transcripts, shipped so the
guard spends its time on R3.

The student is what the guard's run trains at its student stage (cpu-demo's student with 640 SFT steps; about
11 minutes on 2 cores, which the guard would otherwise spend before any RL): the same settings, task, data
generator and held-out rows, checked by `matches(run)` before the guard uses it. Beside it, gzipped, is what the
guard's vanilla evaluation writes on the 3000 test problems (`eval/vanilla/transcripts.jsonl`, about 70 s to
compute), recorded with the evaluation settings and test rows it used, which `matches(run)` checks too. Rebuild both
after changing anything they depend on (the guard's message says so); a student that still matches is kept:

    .venv/bin/python tests/support/learning_guard.py

Floating-point order differs between CPUs, so a rebuild on another machine can differ in the last bits.
"""

from __future__ import annotations

import gzip
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


VANILLA = FOLDER / "vanilla_transcripts.jsonl.gz"


def summary() -> dict:
    from r3kit.infra.io import read_json

    return read_json(FOLDER / "student.json")


def vanilla_identity(run, student_loss: float) -> dict:
    """What vanilla's test transcripts depend on: the student (its final SFT loss), the model settings but its
    folder, the evaluation and prompt settings, and the test rows (a SHA-256 of them)."""
    import dataclasses
    import hashlib
    import json

    from r3kit.runs.pipeline import _test_rows

    rows = json.dumps([dict(row) for row in _test_rows(run)], sort_keys=True, default=str)
    model = {k: v for k, v in dataclasses.asdict(run.model).items() if k != "name"}  # the run folder's student
    return json.loads(json.dumps({
        "student_final_loss": student_loss, "task": run.task, "prompt_style": run.prompt_style,
        "model": model, "evaluate": dataclasses.asdict(run.evaluate),
        "test_rows": hashlib.sha256(rows.encode()).hexdigest()}, default=str))


def matches(run) -> tuple[bool, dict, dict]:
    """(whether the shipped student and vanilla transcripts are what `run` would make, what they record, what
    `run` needs)."""
    from r3kit.infra.io import read_json
    from r3kit.runs.pipeline import held_out_keys
    from r3kit.student.countdown import recorded_identity, training_identity

    recorded = FOLDER / "vanilla.json"
    shipped = {"student": recorded_identity(summary()), "vanilla": read_json(recorded) if recorded.exists() else None}
    wanted = {"student": training_identity(run.student, run.task, run.data.generator, held_out_keys(run)),
              "vanilla": vanilla_identity(run, summary()["final_loss"])}
    return shipped == wanted, shipped, wanted


def install(run_dir: Path) -> None:
    """Copy the shipped student into a run folder, where the student stage finds and keeps it, and vanilla's
    test transcripts where its evaluation writes them."""
    shutil.copytree(FOLDER / "student", Path(run_dir) / "student")
    shutil.copy(FOLDER / "student.json", Path(run_dir) / "student.json")
    out = Path(run_dir) / "eval" / "vanilla"
    out.mkdir(parents=True)
    with gzip.open(VANILLA, "rb") as source, open(out / "transcripts.jsonl", "wb") as target:
        shutil.copyfileobj(source, target)


def build() -> None:
    from r3kit.infra.io import read_json, write_json
    from r3kit.runs.pipeline import evaluate_stage, held_out_keys, student_stage
    from r3kit.student.countdown import recorded_identity, training_identity

    with tempfile.TemporaryDirectory() as tmp:
        run = guard_run(tmp)
        keep = (FOLDER / "student.json").exists() and recorded_identity(summary()) == training_identity(
            run.student, run.task, run.data.generator, held_out_keys(run))
        if keep:  # the shipped student is still the one this run trains: reuse it
            shutil.copytree(FOLDER / "student", Path(tmp) / "student")
            shutil.copy(FOLDER / "student.json", Path(tmp) / "student.json")
        student_stage(run)
        evaluate_stage(run, "vanilla")
        staged = Path(tmp) / "shipped"
        shutil.copytree(Path(tmp) / "student", staged / "student")
        shutil.copy(Path(tmp) / "student.json", staged / "student.json")
        with open(Path(tmp) / "eval" / "vanilla" / "transcripts.jsonl", "rb") as source, \
                gzip.GzipFile(staged / VANILLA.name, "wb", mtime=0) as target:
            shutil.copyfileobj(source, target)
        write_json(staged / "vanilla.json", vanilla_identity(run, read_json(staged / "student.json")["final_loss"]))
        if FOLDER.exists():
            shutil.rmtree(FOLDER)
        shutil.copytree(staged, FOLDER)
    print(f"wrote {FOLDER}" + (" (the student kept)" if keep else ""))


if __name__ == "__main__":
    sys.exit(build())
