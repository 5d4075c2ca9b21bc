"""Command line: `r3kit reproduce`, `r3kit run`, `r3kit profiles`.

    r3kit reproduce [--profile cpu-demo] [--out DIR] [--set train.steps=50 ...] [--resume | --overwrite]
                    [--kernel python3] [--verbose]
    r3kit run STAGE [--profile NAME] [--out DIR] [--set ...] [--arm r3] [--seed N] [--which vanilla]
    r3kit run STAGE --config <run folder>/launch/STAGE.json      (what launch.py starts)
    r3kit profiles [--show NAME]
    r3kit budgets [--profile NAME | --profile my.yaml] [--set model.name=...]

`r3kit run` runs one stage (student, mine, train, evaluate) in this process, or, started by a launcher,
in every process it started:  accelerate launch --multi_gpu --num_processes 8 -m r3kit run mine --profile P
(or torchrun --nproc_per_node 8 -m r3kit run ...). Mining and evaluation split their generation among
the processes; training is data parallel through TRL (see infra/distributed.py, core/trainer.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from r3kit.infra.errors import NotebookFailed, UserError

# Each subcommand imports the kit inside its function: r3kit.runs imports torch and TRL (several seconds), which
# `r3kit --help` and a mistyped argument should not wait for.


def parse_sets(items: list[str]) -> dict:
    """["train.steps=50", "task=function_calling"] -> {"train": {"steps": 50}, "task": "function_calling"}."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set wants section.field=value, got {item!r}")
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


EXAMPLES = """examples:
  r3kit reproduce                                   the default run (cpu-demo) into results/cpu-demo
  r3kit reproduce --profile smoke --out /tmp/smoke  seconds: a tiny model through every stage
  r3kit reproduce --set train.steps=10 --set data.n_test=200 --out runs/short
  r3kit reproduce --resume                          continue an interrupted run where it stopped
  r3kit run train --profile smoke --out /tmp/smoke --arm grpo
  r3kit profiles --show cpu-demo
"""


def _parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="r3kit", description="Reflect, Retry, Reward: reproduction kit",
                                     epilog=EXAMPLES, formatter_class=formatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{reproduce,run,profiles,budgets}")
    rep = commands.add_parser(
        "reproduce", help="run every notebook of a profile with papermill", formatter_class=formatter,
        description="Run every notebook of a profile, in order, with papermill; the executed notebooks, records "
                    "and figures go to the run folder. The kernel, notebooks, optional packages and the folder "
                    "are checked before anything is written. A fresh run deletes only files the kit wrote "
                    "(listed in the folder's .r3kit-run.json) and refuses a non-empty folder the kit did not make.",
        epilog="examples:\n  r3kit reproduce\n  r3kit reproduce --profile smoke --out /tmp/smoke\n"
               "  r3kit reproduce --profile cpu-demo --set train.steps=10 --out runs/short\n"
               "  r3kit reproduce --resume")
    one = commands.add_parser(
        "run", help="run one stage (works under accelerate launch and torchrun)", formatter_class=formatter,
        description="Run one stage of a profile in this process (or, started by accelerate launch or torchrun, "
                    "in every process it started). Stages read what earlier stages wrote in the run folder and "
                    "continue from their last chunk or checkpoint; nothing is deleted.",
        epilog="examples:\n  r3kit run student --profile smoke --out /tmp/smoke\n"
               "  r3kit run train --profile smoke --out /tmp/smoke --arm grpo --seed 1\n"
               "  accelerate launch --num_processes 2 -m r3kit run mine --profile P --out DIR")
    for sub in (rep, one):
        sub.add_argument("--profile", default="cpu-demo",
                         help="a named set of parameters (`r3kit profiles` lists them; default cpu-demo)")
        sub.add_argument("--out", default=None, metavar="DIR", help="the run folder (default results/<profile>)")
        sub.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                         help="override one parameter, e.g. --set train.steps=50 or --set forgetting=null "
                              "(JSON values; repeat for several; `r3kit profiles --show NAME` lists the fields)")
        sub.add_argument("--verbose", action="store_true",
                         help="show tracebacks of errors (and, for reproduce, stream each notebook's output)")
    rep.add_argument("--resume", action="store_true",
                     help="keep earlier outputs: the student, mining and training continue where they stopped")
    rep.add_argument("--overwrite", action="store_true",
                     help="run in a non-empty folder the kit did not make: its stage folders (notebooks/, train/, "
                          "...) are moved to set-aside-<time>/ in it; nothing is deleted")
    rep.add_argument("--kernel", default="python3",
                     help="the Jupyter kernel that runs the notebooks (`jupyter kernelspec list`; default python3)")
    one.add_argument("stage", choices=STAGE_NAMES, help="the stage: " + ", ".join(STAGE_NAMES))
    one.add_argument("--config", default=None, metavar="FILE",
                     help="a launch request (<run folder>/launch/STAGE.json) instead of --profile/--out/--set")
    one.add_argument("--arm", default="r3", help="train: r3, grpo or retry_control (default r3)")
    one.add_argument("--seed", type=int, default=None, help="train: the arm's seed (default: the profile's)")
    one.add_argument("--which", default="vanilla",
                     help="evaluate: vanilla, trained, an arm, or <arm>-seed<N> (default vanilla)")
    prof = commands.add_parser("profiles", help="list profiles with their measured time, or show one resolved",
                               description="List the profiles, each with the time its committed run measured, "
                                           "or show one profile's every parameter as the run would use it.",
                               epilog="examples:\n  r3kit profiles\n  r3kit profiles --show smoke",
                               formatter_class=formatter)
    prof.add_argument("--show", default=None, metavar="NAME", help="print this profile's resolved parameters")
    prof.add_argument("--verbose", action="store_true", help="show tracebacks of errors")
    adv = commands.add_parser(
        "budgets", help="suggest context and turn budgets for a profile's model and task", formatter_class=formatter,
        description="Count the episode prompt with the model's own tokenizer on training rows and say whether each "
                    "stage's episode (prompt + attempt + reflection + retry) fits model.max_seq_length, with a "
                    "suggested value. Use it when you point a profile at another model or task.",
        epilog="examples:\n  r3kit budgets --profile smoke\n"
               "  r3kit budgets --profile qwen2.5-1.5b-countdown-t4 --set model.name=Qwen/Qwen2.5-3B-Instruct")
    adv.add_argument("--profile", default="cpu-demo", help="a profile name or a profile file (.yaml)")
    adv.add_argument("--out", default=None, metavar="DIR", help="the run folder (where a CPU student was saved)")
    adv.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                     help="override one parameter, as for reproduce (e.g. --set model.name=ORG/MODEL)")
    adv.add_argument("--rows", type=int, default=64, help="how many training rows to measure (default 64)")
    adv.add_argument("--verbose", action="store_true", help="show tracebacks of errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.getcwd() not in sys.path:  # as `python -m` does: a task named mymodule:MyTask imports from here
        sys.path.insert(0, os.getcwd())
    try:
        return _COMMANDS[args.command](args)
    except (ValueError, ImportError, OSError) as error:  # user errors: one line (--verbose: the traceback)
        if args.verbose:
            raise
        hint = "" if isinstance(error, UserError) else " (--verbose shows the traceback)"
        print(f"r3kit: {error}{hint}", file=sys.stderr)
        return 2
    except NotebookFailed as error:
        print(f"r3kit: {error}", file=sys.stderr)
        return 1


def _profiles(args) -> int:
    from r3kit.runs import profiles
    from r3kit.runs.reproduce import measured_seconds

    if args.show:
        print(json.dumps(profiles.resolve(args.show).to_dict(), indent=2))
        return 0
    names = profiles.profile_names()
    width = max(map(len, names))
    for name in names:
        measured = measured_seconds(name)
        took = (f"{measured[0] / 60:.0f} min on {measured[1]} CPUs" if measured and measured[1] else
                f"{measured[0] / 60:.0f} min" if measured else "not measured")
        print(f"{name:<{width}}  {took:<17}  {profiles.PROFILES[name]['description']}")
    return 0


def _reproduce(args) -> int:
    from r3kit.runs import profiles

    overrides = profiles.with_absolute_paths(parse_sets(args.sets), Path.cwd())  # the kernels run in the run folder
    profiles.resolve(args.profile, args.out, overrides)  # fail fast, before the heavy imports
    from r3kit.runs.reproduce import reproduce

    if args.verbose:  # papermill streams cell output through its logger
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    manifest = reproduce(args.profile, args.out, overrides, resume=args.resume, kernel=args.kernel,
                         log_output=args.verbose, overwrite=args.overwrite)
    print(f"r3kit: {args.profile} done in {manifest['total_seconds']:.0f} s -> {manifest['parameters']['run_dir']}")
    return 0


STAGE_NAMES = ("student", "mine", "preconditions", "train", "evaluate")


def _run_stage(args) -> int:
    if args.config and not Path(args.config).is_file():
        raise UserError(f"--config {args.config}: no such file (launch requests are <run folder>/launch/STAGE.json)")
    from r3kit.runs import launch, pipeline, profiles

    if args.config:
        run = launch.read_request(args.config)
    else:
        run = profiles.resolve(args.profile, args.out, parse_sets(args.sets))
    from r3kit.infra.run_folder import check_writable

    check_writable(run.run_dir)  # before any model loads
    result = pipeline.run_stage(run, args.stage, arm=args.arm, seed=args.seed, which=args.which)
    from r3kit.infra.distributed import is_main

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


def _budgets(args) -> int:
    from r3kit.runs import pipeline, profiles

    run = profiles.resolve(args.profile, args.out, parse_sets(args.sets), budgets=False)
    for line in pipeline.advise_budgets(run, args.rows)["lines"]:
        print(line)
    return 0


_COMMANDS = {"reproduce": _reproduce, "run": _run_stage, "profiles": _profiles, "budgets": _budgets}


if __name__ == "__main__":
    sys.exit(main())
