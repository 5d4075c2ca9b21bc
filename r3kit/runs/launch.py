"""Run a stage in several processes from one process (a notebook, `r3kit reproduce`), through a launcher.

Papermill runs a notebook in one kernel, which cannot become N processes. So when a profile's `launch`
section asks for more than one process, the stage functions (pipeline.mine_stage, train_stage,
evaluate_stage) do not run in the kernel: they start

    accelerate launch --num_processes N [--config_file F] -m r3kit run STAGE --config <run folder>/launch/STAGE.json
    torchrun --nproc_per_node N -m r3kit run STAGE --config ...                (launcher="torchrun")

stream its output line by line into the notebook (the executed notebook stays the record of the run),
and read back the files the main process wrote. The launched processes rebuild exactly this RunConfig
from the JSON (its resolved parameters: a study's per-seed run too), in the same working directory.
A user on a node can also type the same command by hand: `r3kit run` works under either launcher and
as a plain single process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from r3kit.infra.distributed import world
from r3kit.runs.config import LAUNCHERS, LaunchConfig  # noqa: F401 (re-exported: the launch section)
from r3kit.runs.profiles import from_dict

LAUNCHED = "R3KIT_LAUNCHED"  # set in the launched processes: they never launch again


def wanted(run) -> bool:
    """True when `run` asks for several processes and this process was not itself started by a launcher."""
    return (run.launch is not None and run.launch.processes > 1 and world()[1] == 1
            and not os.environ.get(LAUNCHED))


def write_request(run, path: str | Path) -> Path:
    """The JSON a launched `r3kit run --config` rebuilds `run` from: its resolved parameters (so the processes
    run exactly this run, a study's per-seed run included). Relative paths in it mean what they mean here:
    the launcher starts the processes in this working directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    request = {"profile": run.profile, "overrides": run.overrides, "parameters": run.to_dict()}
    path.write_text(json.dumps(request, indent=2, default=str) + "\n")
    return path


def read_request(path: str | Path):
    """The RunConfig a request file describes (profiles.from_dict), validated."""

    request = json.loads(Path(path).read_text())
    return from_dict(request["parameters"], request.get("overrides"))


def free_port() -> int:
    """A TCP port free on this machine now (for a launcher's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(cfg: LaunchConfig, stage: str, config_path: str | Path, extra: list[str] = ()) -> list[str]:
    """The launcher command line that runs `r3kit run STAGE` in cfg.processes processes."""
    cfg.validate()
    port = str(cfg.port or free_port())
    tool = shutil.which(cfg.launcher, path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    if tool is None:
        raise ValueError(f"launcher {cfg.launcher!r} not found next to {sys.executable} or on PATH")
    if cfg.launcher == "torchrun":
        head = [tool, "--nnodes", "1", "--nproc_per_node", str(cfg.processes), "--master_port", port]
    else:
        head = [tool, "launch", "--num_processes", str(cfg.processes), "--num_machines", "1", "--main_process_port", port]
        # Without a config file accelerate starts N processes only with --multi_gpu (torch.distributed.run underneath;
        # on a machine without GPUs the processes use gloo on the CPU).
        head += (["--config_file", cfg.config_file] if cfg.config_file
                 else ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"])
    return [*head, "-m", "r3kit", "run", stage, "--config", str(config_path), *extra]


def in_processes(run, stage: str, extra: list[str] = (), log=print) -> None:
    """Run `stage` of `run` under the profile's launcher, streaming its output through `log`; a RuntimeError
    naming the exit code and the last lines if it fails."""
    path = write_request(run, Path(run.run_dir) / "launch" / f"{stage}.json")
    argv = command(run.launch, stage, path, list(extra))
    log("launching: " + " ".join(argv))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", LAUNCHED: "1"}
    tail: list[str] = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1) as proc:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail = (tail + [line])[-20:]
            log(line)
        code = proc.wait()
    if code != 0:
        raise RuntimeError(f"{run.launch.launcher} run of stage {stage!r} in {run.launch.processes} processes exited "
                           f"with {code}; its last lines:\n" + "\n".join(tail))
