"""Command line: `r3kit reproduce`, `r3kit run`, `r3kit profiles`.

    r3kit reproduce [--profile cpu-demo] [--out DIR] [--set train.steps=50 ...] [--resume] [--verbose]
    r3kit run STAGE [--profile NAME] [--out DIR] [--set ...] [--arm r3] [--seed N] [--which vanilla]
    r3kit run STAGE --config <run folder>/launch/STAGE.json      (what launch.py starts)
    r3kit profiles [--show NAME]

`r3kit run` runs one stage (student, mine, train, evaluate) in this process, or, started by a launcher,
in every process it started:  accelerate launch --multi_gpu --num_processes 8 -m r3kit run mine --profile P
(or torchrun --nproc_per_node 8 -m r3kit run ...). Mining and evaluation split their generation among
the processes; training is data parallel through TRL (see distributed.py, train.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def parse_sets(items: list[str]) -> dict:
    """["train.steps=50", "task=function_calling"] -> {"train": {"steps": 50}, "task": "function_calling"}."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set wants section.field=value, got {item!r}")
        path, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if "." in path:
            section, field = path.split(".", 1)
            out.setdefault(section, {})[field] = value
        else:
            out[path] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="r3kit", description="Reflect, Retry, Reward: reproduction kit")
    commands = parser.add_subparsers(dest="command", required=True)
    rep = commands.add_parser("reproduce", help="run every notebook of a profile with papermill")
    rep.add_argument("--profile", default="cpu-demo")
    rep.add_argument("--out", default=None, help="run folder (default results/<profile>)")
    rep.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    rep.add_argument("--resume", action="store_true", help="keep earlier outputs; the student, mining and training resume")
    rep.add_argument("--kernel", default="python3")
    rep.add_argument("--verbose", action="store_true", help="stream each notebook's output (its progress bars) here")
    one = commands.add_parser("run", help="run one stage (works under accelerate launch and torchrun)")
    one.add_argument("stage", choices=STAGE_NAMES)
    one.add_argument("--profile", default="cpu-demo")
    one.add_argument("--out", default=None, help="run folder (default results/<profile>)")
    one.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    one.add_argument("--config", default=None, help="a launch request (launch.py) instead of --profile/--out/--set")
    one.add_argument("--arm", default="r3", help="train: r3, grpo or retry_control")
    one.add_argument("--seed", type=int, default=None, help="train: the arm's seed (default: the profile's)")
    one.add_argument("--which", default="vanilla", help="evaluate: vanilla, trained, an arm, or <arm>-seed<N>")
    prof = commands.add_parser("profiles", help="list profiles, or show one resolved")
    prof.add_argument("--show", default=None, metavar="NAME")
    args = parser.parse_args(argv)

    from r3kit import profiles

    if args.command == "run":
        try:
            return _run_stage(args)
        except ValueError as error:
            print(f"r3kit: {error}", file=sys.stderr)
            return 2
    try:
        if args.command == "profiles":
            if args.show:
                print(json.dumps(profiles.resolve(args.show).to_dict(), indent=2))
            else:
                print(profiles.describe())
            return 0
        overrides = parse_sets(args.sets)
        if isinstance(overrides.get("launch"), dict) and overrides["launch"].get("config_file"):
            # the notebooks run in the run folder: a config path given from here must survive that
            overrides["launch"]["config_file"] = profiles.absolute_config_file(overrides["launch"]["config_file"])
        profiles.resolve(args.profile, args.out, overrides)  # fail fast, before the heavy imports
        from r3kit.reproduce import NotebookFailed, reproduce

        if args.verbose:  # papermill streams cell output through its logger
            logging.basicConfig(level=logging.INFO, format="%(message)s")

        manifest = reproduce(args.profile, args.out, overrides, resume=args.resume, kernel=args.kernel,
                             log_output=args.verbose)
    except ValueError as error:
        print(f"r3kit: {error}", file=sys.stderr)
        return 2
    except NotebookFailed as error:
        print(f"r3kit: {error}", file=sys.stderr)
        return 1
    print(f"r3kit: {args.profile} done in {manifest['total_seconds']:.0f} s -> {manifest['parameters']['run_dir']}")
    return 0


STAGE_NAMES = ("student", "mine", "train", "evaluate")


def _run_stage(args) -> int:
    from r3kit import launch, pipeline, profiles

    if args.config:
        run = launch.read_request(args.config)
    else:
        run = profiles.resolve(args.profile, args.out, parse_sets(args.sets))
    result = pipeline.run_stage(run, args.stage, arm=args.arm, seed=args.seed, which=args.which)
    from r3kit.distributed import is_main

    if is_main():
        print(f"r3kit: stage {args.stage} done -> {run.run_dir}")
        print(json.dumps(_brief(result), default=str))
    return 0


def _brief(result) -> dict:
    """The headline numbers of a stage's result (not every field: transcripts and logs stay in the files)."""
    if not isinstance(result, dict):
        return {}
    keys = ("counts", "attempt_accuracy", "first_try", "second_try", "steps", "final_loss", "wall_seconds", "saved")
    return {k: result[k] for k in keys if k in result}


if __name__ == "__main__":
    sys.exit(main())
