"""Mining and evaluation in one process and in two (torchrun, gloo on CPU): wall time, the ratio, and a check
that both wrote the same files.

Trains a short student of the profile (its size is what matters for speed, not its skill), then runs
`r3kit run mine` and `r3kit run evaluate` once as a plain process (torch on all cores) and once under
torchrun with two processes (one core each), each in its own copy of the run folder. Reports each stage's
own time (model loaded, generation split and gathered, files written) and the process wall time (with
Python, Unsloth and model start-up), and writes JSON and a figure.

    .venv/bin/python benchmarks/processes_scaling.py [--train 400] [--test 300] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from r3kit.runs.launch import free_port, write_request
from r3kit.runs.profiles import resolve

STAGES = (("mine", []), ("evaluate", ["--which", "vanilla"]))


def _stage_seconds(run_dir: Path, stage: str) -> float:
    return json.loads((run_dir / "stages.json").read_text())["mine" if stage == "mine" else "evaluate_vanilla"]


def _same_files(a: Path, b: Path) -> bool:
    names = [p.relative_to(a) for p in sorted((a / "failures" / "chunks").iterdir())]
    names.append(Path("eval/vanilla/transcripts.jsonl"))
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu-demo")
    parser.add_argument("--train", type=int, default=400, help="problems to mine")
    parser.add_argument("--test", type=int, default=300, help="problems to evaluate")
    parser.add_argument("--student-steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=50, help="generation batch size of mining and evaluation")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    from r3kit.runs.pipeline import student_stage

    # transformers generation is split by batch (each batch exactly as one process would run it), so the
    # batches must outnumber the processes: 50 problems a batch here, not the profile's 250-500.
    overrides = {"data": {"n_train": args.train, "n_test": args.test}, "student": {"steps": args.student_steps},
                 "evaluate": {"n_examples": None, "batch_size": args.batch}, "mine": {"batch_size": args.batch}}
    results: dict = {"profile": args.profile, "train_problems": args.train, "test_problems": args.test,
                     "cpu_count": os.cpu_count(), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        base = resolve(args.profile, Path(tmp) / "base", overrides)
        student_stage(base)
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        for processes in (1, 2):
            run_dir = Path(tmp) / f"p{processes}"
            shutil.copytree(base.run_dir, run_dir)
            request = write_request(resolve(args.profile, run_dir, overrides), run_dir / "launch" / "request.json")
            record = {}
            for stage, extra in STAGES:
                tail = ["-m", "r3kit", "run", stage, "--config", str(request), *extra]
                if processes == 1:
                    argv, threads = [sys.executable, *tail], str(os.cpu_count())
                else:
                    argv = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                            "--master_port", str(free_port()), *tail]
                    threads = str(max(1, (os.cpu_count() or 2) // 2))
                start = time.perf_counter()
                done = subprocess.run(argv, env={**env, "OMP_NUM_THREADS": threads}, capture_output=True, text=True)
                wall = time.perf_counter() - start
                if done.returncode:
                    raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
                record[stage] = {"stage_seconds": round(_stage_seconds(run_dir, stage), 2), "wall_seconds": round(wall, 2)}
                print(json.dumps({"processes": processes, "stage": stage, **record[stage]}), flush=True)
            results["runs"][str(processes)] = record
        results["identical_outputs"] = _same_files(Path(tmp) / "p1", Path(tmp) / "p2")
    results["speedup"] = {stage: {kind: round(results["runs"]["1"][stage][kind] / results["runs"]["2"][stage][kind], 3)
                                  for kind in ("stage_seconds", "wall_seconds")} for stage, _ in STAGES}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "processes_scaling.json").write_text(json.dumps(results, indent=2) + "\n")
    _figure(results, out / "processes_scaling.png")
    print(json.dumps({"speedup": results["speedup"], "identical_outputs": results["identical_outputs"]}))


def _figure(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=False)
    for ax, (stage, _) in zip(axes, STAGES):
        for offset, (kind, label) in enumerate((("stage_seconds", "the stage itself"), ("wall_seconds", "with start-up"))):
            values = [results["runs"][p][stage][kind] for p in ("1", "2")]
            bars = ax.bar([x + offset * 0.38 for x in (0, 1)], values, width=0.36, label=label)
            ax.bar_label(bars, fmt="%.0f s", fontsize=8)
        ax.set_xticks([0.19, 1.19], ["1 process", "2 processes"])
        ratio = results["speedup"][stage]["stage_seconds"]
        ax.set_title(f"{stage}: one / two = {ratio:.2f}x (stage)")
        ax.set_ylabel("seconds")
    axes[0].legend(fontsize=8, loc="lower center")
    fig.suptitle(f"{results['profile']} student, {results['train_problems']} mined, {results['test_problems']} evaluated, "
                 f"{results['cpu_count']} CPU cores; identical outputs: {results['identical_outputs']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
