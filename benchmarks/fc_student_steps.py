"""The function-calling student's skill against its SFT steps, on the validation split (never test).

For each step count: train the student of a profile (default cpu-demo-function-calling) with that many
steps, then run greedy R3 episodes (attempt, reflect, retry) on the first `--n` validation rows; prints
first-try and second-try accuracy, the first attempts' failure categories, and the wall time of each part.
This is how the profile's student.steps was chosen (the target: partial first-try skill, 20-50%).

    .venv/bin/python benchmarks/fc_student_steps.py --steps 200 400 [--n 200] [--set student.batch_size=32]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from r3kit.cli import parse_sets
from r3kit.eval.evaluate import evaluate
from r3kit.models.loading import load_model, release
from r3kit.runs.pipeline import _rows, held_out_keys
from r3kit.runs.profiles import resolve
from r3kit.student.countdown import make_student


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu-demo-function-calling")
    parser.add_argument("--steps", type=int, nargs="+", default=[400])
    parser.add_argument("--n", type=int, default=200, help="validation rows")
    parser.add_argument("--set", action="append", default=[], help="profile override, e.g. student.batch_size=32")
    parser.add_argument("--out", default="", help="keep the students and transcripts here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.out or scratch
        base = resolve(args.profile, Path(tmp) / "run", parse_sets(args.set))
        rows = _rows(base, "validation")[: args.n]
        exclude = held_out_keys(base)
        for steps in args.steps:
            # the full mix alone, for `steps`, under a cosine schedule: the recipe this benchmark measured
            cfg = dataclasses.replace(base.student, steps=steps, extract_steps=0, lr_schedule="cosine",
                                      stop_at_first_try=None)
            start = time.perf_counter()
            summary = make_student(cfg, Path(tmp) / f"student-{steps}", exclude, task=base.task,
                                   generator=base.data.generator)
            trained = time.perf_counter() - start
            model, tokenizer = load_model(dataclasses.replace(base.model, name=str(Path(tmp) / f"student-{steps}")))
            ecfg = dataclasses.replace(base.evaluate, conditions=("reflection",), n_examples=None)
            result = evaluate(model, tokenizer, base.get_task(), rows, ecfg, out_dir=Path(tmp) / f"eval-{steps}")
            release(model)
            task = base.get_task()
            reasons = Counter(task.reason_category(t["first"]["verdict"]["reason"]) for t in result.transcripts
                              if not t["first"]["verdict"]["ok"])
            m = result.metrics
            out = {"steps": steps, "final_loss": round(summary["final_loss"], 4), "train_seconds": round(trained),
                   "eval_seconds": round(m["wall_seconds"]), "n": len(rows),
                   "first_try": m["first_try"]["accuracy"], "second_try": m["second_try"]["accuracy"],
                   "first_failures": dict(reasons.most_common(8))}
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
