"""Command line: `r3kit reproduce`, `r3kit profiles`.

    r3kit reproduce [--profile cpu-demo] [--out DIR] [--set train.steps=50 ...] [--resume] [--verbose]
    r3kit profiles [--show NAME]
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
    rep.add_argument("--resume", action="store_true", help="keep earlier outputs; mining and training resume")
    rep.add_argument("--kernel", default="python3")
    rep.add_argument("--verbose", action="store_true", help="stream each notebook's output (its progress bars) here")
    prof = commands.add_parser("profiles", help="list profiles, or show one resolved")
    prof.add_argument("--show", default=None, metavar="NAME")
    args = parser.parse_args(argv)

    from r3kit import profiles

    try:
        if args.command == "profiles":
            if args.show:
                print(json.dumps(profiles.resolve(args.show).to_dict(), indent=2))
            else:
                print(profiles.describe())
            return 0
        overrides = parse_sets(args.sets)
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


if __name__ == "__main__":
    sys.exit(main())
