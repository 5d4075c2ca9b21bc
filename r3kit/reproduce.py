"""One command for a whole run: papermill executes the notebooks of a profile in order into results/<profile>/.

Order (a study profile: 06 once per student, then 07):
[01 make student] -> 02 evaluate vanilla -> 03 mine failures -> 04 train R3 -> 02 evaluate trained
-> [04 train retry-reward control -> 02 evaluate control] -> 05 figures. Each notebook gets the same
parameters (profile, run_dir, overrides) plus its own (which model to evaluate, which variant to train).
The profile is resolved and validated before the first notebook starts. By default the run folder's
earlier outputs are removed first, so every file is regenerated; `resume=True` keeps them, and mining
and training then continue from their last chunk and checkpoint. manifest.json (profile, resolved
parameters, package versions, git commit, machine, seconds per notebook) is rewritten after each
notebook, so a failed run still says what ran. A failing notebook stops the run with its name, the
failing cell and the error; what earlier notebooks wrote stays.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from tqdm.auto import tqdm

from r3kit.io import write_json
from r3kit.profiles import RunConfig, project_root, resolve

STAGE_OUTPUTS = ("student", "eval", "failures", "train", "figures", "notebooks", "metrics.json", "stages.json",
                 "student.json", "manifest.json", "study.json", "table.md")
PACKAGES = ("r3kit", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "unsloth", "unsloth_zoo",
            "papermill", "matplotlib")


class NotebookFailed(RuntimeError):
    pass


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
        return [("06_study_student.ipynb", {"student": s}, f"06_study-student-{s}") for s in run.study.students] + [
            ("07_study_summary.ipynb", {}, "07_study_summary")]
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
    return steps + [("05_figures.ipynb", {}, f"{len(steps) + (run.student is None) + 1:02d}_figures")]


def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        # results/ is left out: a fresh run clears its own committed outputs before this is recorded
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
                                    cwd=project_root(), capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    import os

    machine = {"platform": platform.platform(), "python": platform.python_version(), "processor": platform.machine(),
               "cpus": os.cpu_count(), "gpu": gpu}
    return {"versions": versions, "git_commit": commit, "git_dirty": dirty, "machine": machine}


def reproduce(profile: str, out: str | Path | None = None, overrides: dict | None = None, resume: bool = False,
              notebooks_dir: str | Path | None = None, kernel: str = "python3", progress: bool = True,
              log_output: bool = False) -> dict:
    import papermill

    run = resolve(profile, out, overrides)
    notebooks_dir = Path(notebooks_dir) if notebooks_dir else default_notebooks()
    steps = plan(run)
    missing = sorted({nb for nb, _, _ in steps if not (notebooks_dir / nb).exists()})
    if missing:
        raise ValueError(f"notebooks not found in {notebooks_dir}: {missing}")
    run_dir = run.run_dir.resolve()
    if not resume:
        for target in [*(run_dir / name for name in STAGE_OUTPUTS), *run_dir.glob("student-*")]:
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    manifest = {"profile": profile, "overrides": overrides or {}, "parameters": run.to_dict(), **environment(),
                "started": datetime.now(UTC).isoformat(timespec="seconds"), "notebooks": []}
    start = time.perf_counter()
    bar = tqdm(steps, desc=f"reproduce {profile}", unit="notebook", disable=not progress)
    for notebook, own, name in bar:
        bar.set_postfix_str(name)
        output = run_dir / "notebooks" / f"{name}.ipynb"
        parameters = {"profile": profile, "run_dir": str(run_dir), "overrides": overrides or {}, **own}
        began = time.perf_counter()
        entry = {"notebook": notebook, "output": str(output.relative_to(run_dir)), "parameters": own}
        try:
            papermill.execute_notebook(str(notebooks_dir / notebook), str(output), parameters=parameters,
                                       kernel_name=kernel, cwd=str(run_dir), progress_bar=False,
                                       log_output=log_output)
        except papermill.PapermillExecutionError as error:
            entry.update(status="failed", seconds=round(time.perf_counter() - began, 1),
                         error=f"cell {error.exec_count}: {error.ename}: {error.evalue}")
            manifest["notebooks"].append(entry)
            manifest["total_seconds"] = round(time.perf_counter() - start, 1)
            write_json(run_dir / "manifest.json", manifest)
            raise NotebookFailed(f"{notebook} ({name}) failed in cell {error.exec_count}: {error.ename}: "
                                 f"{error.evalue}\nThe executed copy with the traceback: {output}") from None
        entry.update(status="ok", seconds=round(time.perf_counter() - began, 1))
        bar.write(f"{name}: ok in {entry['seconds']:.0f} s -> {output}")
        manifest["notebooks"].append(entry)
        manifest["total_seconds"] = round(time.perf_counter() - start, 1)
        write_json(run_dir / "manifest.json", manifest)
    manifest["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_json(run_dir / "manifest.json", manifest)
    return manifest
