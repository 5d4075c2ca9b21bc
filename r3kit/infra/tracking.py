"""Experiment tracking, the ecosystem's way: `train.report_to` names one of TRL's trackers.

    trackio      (default) local SQLite, no account; `trackio show --project r3kit` opens its dashboard
    wandb        Weights & Biases (WANDB_MODE=offline works without an account)
    tensorboard  event files under the run's checkpoints/runs/
    none         no tracker (the tests; R3KIT_REPORT_TO=none sets it for every run of a process)

Each is transformers' own callback. One change to trackio's: its `trackio.init` embeds a live dashboard
(a local web server and an iframe) whenever it runs in a notebook. That is kept where a person is
watching and turned off in batch runs (papermill), where the executed copy would keep an iframe to a
server that is gone, and a write token in its address.
"""

from __future__ import annotations

import functools
import os
from datetime import datetime
from importlib.util import find_spec
from pathlib import Path

from r3kit.infra.io import portable
from r3kit.infra.notebook import interactive

REPORTERS = {"trackio": ("trackio",), "wandb": ("wandb",), "tensorboard": ("tensorboard", "tensorboardX"), "none": ()}
PROJECT = "r3kit"


def default_report_to() -> str:
    return os.environ.get("R3KIT_REPORT_TO", "trackio")


def check_report_to(report_to: str) -> None:
    """A clear error, before any model loads, for an unknown tracker or one whose package is missing."""
    if report_to not in REPORTERS:
        raise ValueError(f"report_to must be one of {tuple(REPORTERS)}, got {report_to!r}")
    needs = REPORTERS[report_to]
    if needs and not any(find_spec(name) is not None for name in needs):
        raise ValueError(f"report_to={report_to!r} needs the {' or '.join(needs)} package, which is not installed: "
                         f"pip install {needs[0]}, or choose report_to='none'")


class _Trackio:
    """The trackio module, with `init(..., embed=embed)`: what transformers' callback calls."""

    def __init__(self, embed: bool):
        import trackio

        self._module, self.init = trackio, functools.partial(trackio.init, embed=embed)

    def __getattr__(self, name):
        return getattr(self._module, name)


def callbacks(report_to: str) -> tuple[list[str], list]:
    """(TrainingArguments.report_to, callbacks to add): trackio goes through its transformers callback with
    the dashboard embedded only in an interactive notebook; the others through report_to as usual."""
    if report_to == "none":
        return [], []
    if report_to != "trackio":
        return [report_to], []
    from transformers.integrations import TrackioCallback

    callback = TrackioCallback()
    if not hasattr(callback, "_trackio"):  # transformers keeps the module there and calls its init in setup()
        raise RuntimeError("transformers' TrackioCallback no longer has `_trackio`: r3kit.infra.tracking needs updating")
    callback._trackio = _Trackio(embed=interactive())
    return [], [callback]


def run_name(out_dir: Path) -> str:
    """The tracker's run name: the run folder as recorded, plus when it started, kept in tracking.txt so a
    resumed run goes on logging to the same tracked run, while a fresh one (same folder) starts another."""
    path = Path(out_dir) / "tracking.txt"
    if path.exists() and any((Path(out_dir) / "checkpoints").glob("checkpoint-*")):
        return path.read_text().strip()
    name = f"{portable(Path(out_dir))} {datetime.now().strftime('%Y-%m-%d %H:%M:%S')}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(name + "\n")
    return name
