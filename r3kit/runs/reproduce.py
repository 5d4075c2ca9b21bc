"""One command for a whole run: papermill executes the notebooks of a profile in order into results/<profile>/.

Order (a study profile: 06 once per student, then 07):
[01 make student] -> 02 evaluate vanilla -> 03 mine failures -> 04 train R3 -> 02 evaluate trained
-> [04 train plain GRPO -> 02 evaluate it] -> [04 train retry-reward control -> 02 evaluate control]
-> [09 forgetting check] -> 05 figures -> 08 explore transcripts. Each notebook gets the same parameters
(profile, run_dir, overrides) plus its own (which model to evaluate, which variant to train).
The profile is resolved and validated, and the kernel, notebooks, optional packages and the folder checked,
before anything in the run folder is touched. By default a run starts clean: the files the kit listed as its
own there are deleted and any other file in a stage's place is set aside (run_folder.py), so every output is
regenerated; `resume=True` keeps them, and mining and training then continue from their last chunk and checkpoint. manifest.json (profile, resolved
parameters, package versions, git commit, machine, seconds per notebook) is rewritten after each
notebook, so a failed run still says what ran. A failing notebook stops the run with its name, the
failing cell and the error; what earlier notebooks wrote stays.
Records hold no machine's absolute path (io.portable): papermill is given paths relative to the working
directory and run_dir "" for the profile's default folder, and a resumed run first rewrites the older
records of its folder the same way (io.make_portable). Trackio's database goes to <run folder>/trackio
(`TRACKIO_DIR=results/<profile>/trackio trackio show --project r3kit`). Kernels talk over encrypted sockets
where pyzmq supports it, so they do not warn about plain TCP.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from tqdm.auto import tqdm

from r3kit.data import check_splits
from r3kit.eval.forgetting import require_harness
from r3kit.infra.errors import MissingPackage, NotebookFailed, UserError, did_you_mean
from r3kit.infra.io import checkout_root, make_portable, read_json, write_json
from r3kit.infra.run_folder import Recorder, check_writable, claim
from r3kit.runs.profiles import RunConfig, is_profile_file, project_root, resolve, with_absolute_paths

PACKAGES = ("r3kit", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "unsloth", "unsloth_zoo",
            "papermill", "matplotlib")


def _kernel_config():
    """The kernel's messages encrypted (CurveZMQ) where pyzmq has it: jupyter_client's default leaves them
    plain, and every kernel then warns "running over TCP without encryption"."""
    import zmq
    from traitlets.config import Config

    return Config({"KernelManager": {"transport_encryption": "auto" if zmq.has("curve") else "disabled"}})


@contextmanager
def _environment(**defaults):
    """Set environment variables the user has not set, for the kernels started inside; and put this working
    folder on the kernels' PYTHONPATH, so a task named `mymodule:MyTask` imports there as it does here."""
    saved = {k: os.environ.get(k) for k in (*defaults, "PYTHONPATH")}
    os.environ.update({k: v for k, v in defaults.items() if not os.environ.get(k)})
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), saved["PYTHONPATH"]]))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def default_notebooks() -> Path:
    """The checkout's notebooks/ when running from one, else the copies shipped in the package."""
    local = project_root() / "notebooks"
    if (local / "02_evaluate.ipynb").exists():
        return local
    from importlib.resources import files

    return Path(str(files("r3kit.notebooks")))


def plan(run: RunConfig) -> list[tuple[str, dict, str]]:
    """(notebook, its own parameters, name of the executed copy) in execution order. A study profile runs
    notebook 06 once per student, then 07."""
    if run.study is not None:
        return [("08_study_student.ipynb", {"student": s}, f"06_study-student-{s}") for s in run.study.students] + [
            ("09_study_summary.ipynb", {}, "07_study_summary")]
    steps = [("01_make_student.ipynb", {}, "01_make_student")] if run.student is not None else []
    steps += [("02_evaluate.ipynb", {"which": "vanilla"}, "02_evaluate-vanilla"),
              ("03_mine_failures.ipynb", {}, "03_mine_failures"),
              ("04_train.ipynb", {"variant": "r3"}, "04_train-r3"),
              ("02_evaluate.ipynb", {"which": "trained"}, "05_evaluate-trained")]
    for arm, cfg in (("grpo", run.grpo), ("retry_control", run.control)):
        if cfg is not None:
            n = len(steps) + (run.student is None)
            steps += [("04_train.ipynb", {"variant": arm}, f"{n + 1:02d}_train-{arm}"),
                      ("02_evaluate.ipynb", {"which": arm}, f"{n + 2:02d}_evaluate-{arm}")]
    tail = [("05_forgetting.ipynb", "forgetting")] if run.forgetting is not None else []
    tail += [("06_figures.ipynb", "figures"), ("07_explore.ipynb", "explore")]
    n = len(steps) + (run.student is None)
    return steps + [(notebook, {}, f"{n + i:02d}_{name}") for i, (notebook, name) in enumerate(tail, 1)]


def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[name] = None
    def git(*args: str) -> str | None:  # None outside a checkout, without git, or when git is too slow to answer
        try:
            done = subprocess.run(["git", *args], cwd=project_root(), capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD") or None
    # results/ is left out: a fresh run clears its own committed outputs before this is recorded
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results") if commit else None
    dirty = None if status is None else bool(status)
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None

    machine = {"platform": platform.platform(), "python": platform.python_version(), "processor": platform.machine(),
               "cpus": os.cpu_count(), "gpu": gpu}
    return {"versions": versions, "git_commit": commit, "git_dirty": dirty, "machine": machine}


def _shown(path: Path) -> str:
    """`path` relative to the working directory when inside it (papermill records the paths it is given)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def require_kernel(kernel: str) -> None:
    """A UserError naming the installed kernels when no Jupyter kernel is called `kernel`."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if kernel not in specs:
        raise UserError(f"no Jupyter kernel named {kernel!r}{did_you_mean(kernel, specs)}; installed: "
                        f"{sorted(specs) or 'none'} (add one with: python -m ipykernel install --user --name {kernel})")


def preflight(run: RunConfig, steps: list, notebooks_dir: Path, kernel: str) -> None:
    """Everything a run needs that can be checked before any file is touched: papermill, the kernel, the
    notebooks, lm-eval where the profile runs the forgetting check, generated splits of the sizes asked for, and a
    writable folder with room."""
    from importlib.util import find_spec

    if find_spec("papermill") is None:
        raise MissingPackage("r3kit reproduce runs notebooks with papermill, which is not installed: "
                             "pip install 'r3kit[lab]'")
    require_kernel(kernel)
    missing = sorted({nb for nb, _, _ in steps if not (notebooks_dir / nb).exists()})
    if missing:
        raise UserError(f"notebooks not found in {notebooks_dir}: {missing}")
    if run.forgetting is not None:  # before the first notebook, not after training
        require_harness()
    try:
        check_splits(run.data)
    except ValueError as error:
        raise UserError(str(error)) from None
    check_writable(run.run_dir)


def reproduce(profile: str, out: str | Path | None = None, overrides: dict | None = None, resume: bool = False,
              notebooks_dir: str | Path | None = None, kernel: str = "python3", progress: bool = True,
              log_output: bool = False, overwrite: bool = False) -> dict:
    """Run every notebook of `profile` into its run folder (module docstring). Checks come first; a fresh run
    then deletes only what the kit wrote in the folder (run_folder.py)."""
    overrides = with_absolute_paths(overrides or {}, Path.cwd())  # the kernels run in the run folder
    run = resolve(profile, out, overrides)
    notebooks_dir = Path(notebooks_dir) if notebooks_dir else default_notebooks()
    steps = plan(run)
    preflight(run, steps, notebooks_dir, kernel)
    import papermill

    run_dir = claim(run.run_dir, resume=resume, overwrite=overwrite,
                    say=lambda line: tqdm.write(line) if progress else None)
    if resume:  # records an earlier version or another machine wrote, with the paths as this version writes them
        make_portable(run_dir)
    recorder = Recorder(run_dir)
    # a profile file is named by its full path: the kernels run in the run folder
    shown_profile = str(Path(profile).resolve()) if is_profile_file(profile) else profile
    # "" is the profile's default folder (results/<profile>): the executed copy records no machine's path
    # (in a checkout only: elsewhere the default is relative to the working directory, which the kernel changes)
    given = "" if checkout_root() and run_dir == resolve(profile, None, overrides).run_dir.resolve() else str(run_dir)
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    manifest = {"profile": profile, "overrides": overrides or {}, "parameters": run.to_dict(), **environment(),
                "started": datetime.now(UTC).isoformat(timespec="seconds"), "notebooks": []}
    start = time.perf_counter()
    bar = tqdm(steps, desc=f"reproduce {profile}", unit="notebook", disable=not progress)
    for notebook, own, name in bar:
        bar.set_postfix_str(name)
        output = run_dir / "notebooks" / f"{name}.ipynb"
        parameters = {"profile": shown_profile, "run_dir": given, "overrides": overrides or {}, **own}
        began = time.perf_counter()
        entry = {"notebook": notebook, "output": str(output.relative_to(run_dir)), "parameters": own}
        try:
            # trackio's database in the run folder (the kernel's working folder); no widgets (notebook.py) and no
            # library progress bars: papermill saves a widget as its first frame
            # what libraries print to stderr goes to logs/<notebook>.log (notebook.py), not into the record
            with _environment(TRACKIO_DIR="trackio", R3KIT_BATCH="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                              HF_DATASETS_DISABLE_PROGRESS_BARS="1", R3KIT_STDERR_LOG=f"logs/{name}.log"):
                papermill.execute_notebook(_shown(notebooks_dir / notebook), _shown(output), parameters=parameters,
                                           kernel_name=kernel, cwd=str(run_dir), progress_bar=False,
                                           log_output=log_output, config=_kernel_config())
        except papermill.PapermillExecutionError as error:
            entry.update(status="failed", seconds=round(time.perf_counter() - began, 1),
                         error=f"cell {error.exec_count}: {error.ename}: {error.evalue}")
            manifest["notebooks"].append(entry)
            manifest["total_seconds"] = round(time.perf_counter() - start, 1)
            write_json(run_dir / "manifest.json", manifest)
            raise NotebookFailed(f"{notebook} ({name}) failed in cell {error.exec_count}: {error.ename}: "
                                 f"{error.evalue}\nThe executed copy with the traceback: {output}") from None
        finally:  # whatever stopped it (a failed cell, a dead kernel, Ctrl-C), the files it wrote are listed
            recorder.record()
        entry.update(status="ok", seconds=round(time.perf_counter() - began, 1))
        bar.write(f"{name}: ok in {entry['seconds']:.0f} s -> {output}")
        manifest["notebooks"].append(entry)
        manifest["total_seconds"] = round(time.perf_counter() - start, 1)
        write_json(run_dir / "manifest.json", manifest)
    manifest["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_json(run_dir / "manifest.json", manifest)
    recorder.record()
    return manifest


def measured_seconds(profile: str) -> tuple[float, int | None] | None:
    """(seconds its stages took, the machine's CPU count) from the committed run of `profile` in this checkout
    (stages.json of the run and of each study student), or None where no run measured it."""
    root = checkout_root()
    folder = root / "results" / profile if root else None
    if folder is None or not (folder / "manifest.json").exists():
        return None
    seconds = sum(float(v) for path in [folder / "stages.json", *folder.glob("student-*/stages.json")]
                  if path.exists() for v in read_json(path).values())
    manifest = read_json(folder / "manifest.json")
    return max(seconds, float(manifest.get("total_seconds") or 0.0)), (manifest.get("machine") or {}).get("cpus")
