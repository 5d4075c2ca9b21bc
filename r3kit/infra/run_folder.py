"""A run folder belongs to its user: the kit deletes only files it wrote there, and checks the folder first.

The kit marks a folder it runs in with `.r3kit-run.json`, which lists every file a run wrote (paths relative
to the folder). A fresh run (no --resume) in a folder:
    empty or new            -> marked, used
    marked                  -> the listed files are deleted; any other file in a stage's place (a user's
                               notebook in notebooks/, a file an interrupted run wrote before it could list
                               it) is moved, never deleted, to set-aside-<time>/, and named
    not marked, not empty   -> refused, naming the folder and the choices (another folder, --resume, or
                               --overwrite, which sets the stage outputs aside the same way)
A resumed run keeps everything. The list grows after each notebook, however it ended, so only a killed process
loses the listing of the notebook it stopped in, whose files are then set aside rather than deleted.
Two cases count as the kit's: a file created inside a stage's place while a run is writing there, and a file the
kit wrote that you edited afterwards (copy it out of the run folder to keep it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from r3kit.infra.errors import UserError

MARKER = ".r3kit-run.json"
# Where stages write, relative to the run folder (student-* are a study's per-student folders)
STAGE_OUTPUTS = ("student", "eval", "failures", "train", "figures", "notebooks", "metrics.json", "stages.json",
                 "student.json", "manifest.json", "study.json", "table.md", "trackio", "forgetting",
                 "forgetting.json", "launch", "logs", "preconditions", "preconditions.json")
MIN_FREE_BYTES = 1 << 30  # what a CPU profile's run folder needs, with room to spare (cpu-demo writes about 60 MB)


def _in_stage_place(relative: str) -> bool:
    top = relative.split("/", 1)[0]
    return top in STAGE_OUTPUTS or top.startswith("student-")


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def read_marker(folder: str | Path) -> dict | None:
    path = Path(folder) / MARKER
    if not path.exists():
        return None
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(marker, dict) and marker.get("made_by") == "r3kit" and isinstance(marker.get("written"), list)
    return marker if ok else None


def _write_marker(folder: Path, written: set[str]) -> None:
    tmp = folder / f".{MARKER}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({"made_by": "r3kit", "written": sorted(written)}, indent=1) + "\n")
    os.replace(tmp, folder / MARKER)


def check_writable(folder: str | Path, min_free: int = MIN_FREE_BYTES) -> Path:
    """The folder, resolved, after checking that it is (or can be made) a writable folder with `min_free` bytes
    free; raises UserError naming the problem (a folder it made for the check is removed again)."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, not a folder: choose another --out")
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"cannot create {folder}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to {existing}: permission denied; choose another --out")
    made = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UserError(f"cannot write to {folder}: {error.strerror or error}; choose another --out") from None
    free = shutil.disk_usage(folder).free
    if free < min_free:
        if made:
            folder.rmdir()
        raise UserError(f"{folder} has {free / 2**30:.1f} GiB free; this run needs about {min_free / 2**30:.1f} GiB")
    return folder.resolve()


def _set_aside(folder: Path, relatives: list[str]) -> Path | None:
    if not relatives:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    aside = folder / f"set-aside-{stamp}"
    n = 1
    while aside.exists():  # never onto an earlier set-aside folder
        n += 1
        aside = folder / f"set-aside-{stamp}-{n}"
    for rel in relatives:
        target = aside / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder / rel, target)
    return aside


def _prune_empty(folder: Path) -> None:
    for top in [*(folder / name for name in STAGE_OUTPUTS), *folder.glob("student-*")]:
        if top.is_dir():
            for path in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
            if not any(top.iterdir()):
                top.rmdir()


def claim(folder: str | Path, resume: bool = False, overwrite: bool = False, say=print) -> Path:
    """Make `folder` ready for a run (module docstring); returns it resolved. Deletes only listed files."""
    folder = check_writable(folder)
    marker = read_marker(folder)
    present = _files(folder) - {MARKER}
    if resume:
        _write_marker(folder, set(marker["written"]) & present if marker else set())
        return folder
    if marker is None and present and not overwrite:
        raise UserError(f"{folder} is not empty and was not made by r3kit (no {MARKER}); choose a new --out folder, "
                        "add --resume to continue a run there, or --overwrite to set its stage folders aside "
                        "(nothing is deleted)")
    listed = set(marker["written"]) if marker else set()
    for rel in sorted(listed & present):
        (folder / rel).unlink()
    strays = sorted(rel for rel in present - listed if _in_stage_place(rel))
    aside = _set_aside(folder, strays)
    if aside is not None:
        shown = ", ".join(strays[:3]) + (f" and {len(strays) - 3} more" if len(strays) > 3 else "")
        say(f"r3kit: set aside {len(strays)} file(s) the kit did not list as its own ({shown}) in {aside}")
    _prune_empty(folder)
    _write_marker(folder, set())
    return folder


class Recorder:
    """Lists what a run writes: `record()` after each notebook adds the files that appeared in a stage's place
    since the recorder was made. A file that was there before (a user's, or one an unlisted older run wrote)
    is never listed, so it is set aside, not deleted, by a later fresh run."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.before = _files(self.folder)

    def record(self) -> None:
        marker = read_marker(self.folder) or {"written": []}
        now = _files(self.folder) - {MARKER}
        new = {rel for rel in now - self.before if _in_stage_place(rel)}
        _write_marker(self.folder, (set(marker["written"]) & now) | new)


def mark(folder: str | Path, files) -> Path:
    """Mark `folder` as the kit's, listing `files` (paths relative to it) as written by the kit: for run folders
    made before the marker existed, whose files are known (those a repository commits, say)."""
    folder = Path(folder)
    _write_marker(folder, {Path(f).as_posix() for f in files} & _files(folder))
    return folder / MARKER
