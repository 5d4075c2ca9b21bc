"""Small file helpers. Every write goes to a temporary file first and is renamed into place, so a crash
never leaves a half-written file where a finished one was.

Records hold no machine's absolute path: `portable` rewrites a path inside the checkout relative to the
checkout ("results/cpu-demo/student") and one under the home folder as "~/...", so a run folder reads the
same on every machine. JSON written here goes through it; a path the user chose elsewhere (a Drive folder,
say) stays as given.
Under a launcher (several processes; distributed.py) only the main process writes: on other ranks a write
returns the path and leaves the file alone, so N ranks that compute the same record never race for it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from r3kit.infra.distributed import is_main


def _atomic_write(path: str | Path, text: str) -> Path:
    path = Path(path)
    if not is_main():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def checkout_root() -> Path | None:
    """The checkout holding this package (where results/ and notebooks/ live), or None for an installed package."""
    here = Path(__file__).resolve().parents[2]  # r3kit/infra/io.py -> the checkout
    return here if (here / "pyproject.toml").exists() else None


def _bases() -> list[tuple[Path, str | None]]:
    home = [(Path.home(), "~"), (Path.home().resolve(), "~")]
    root = checkout_root()
    return ([(root, None)] if root is not None else []) + home


def portable(value: Any) -> Any:
    """`value` with every absolute path (a Path, or text that is exactly one: no spaces, no path lists) inside
    the checkout made relative to it, and one under the home folder written as ~/...; containers are walked,
    everything else is unchanged."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value) and value.rpartition(":")[0].endswith(".py"):
        where, _, cls = value.rpartition(":")  # a task by its file: path/to/task.py:Class
        return f"{portable(where)}:{cls}"
    is_path = isinstance(value, Path) or (isinstance(value, str) and os.path.isabs(value)
                                          and not any(c.isspace() or c == os.pathsep for c in value))
    if not is_path:
        return value
    path = Path(value)
    for base, shown in _bases():
        if base == Path(path.anchor):
            continue
        try:
            rel = path.relative_to(base)
        except ValueError:
            continue
        return (Path(shown, rel) if shown else rel).as_posix()
    return str(value)


def write_json(path: str | Path, data: Any) -> Path:
    return _atomic_write(path, json.dumps(portable(data), indent=2, default=str) + "\n")


# The kit's own JSON records in a run folder (model, checkpoint, tracker and dataset files are not touched)
RECORDS = ("manifest.json", "metrics.json", "stages.json", "student.json", "study.json", "config.json", "summary.json",
           "selection.json")
NOT_RECORDS = {"student", "model", "adapter", "checkpoints", "live_lora", "dataset", "chunks", "trackio", "wandb", "runs"}


def make_portable(folder: str | Path) -> list[Path]:
    """Rewrite the kit's JSON records under `folder` through `portable` (a run folder made by an older version
    or on another machine); returns the files changed. Unreadable JSON is left as it is."""
    changed = []
    for path in sorted(Path(folder).rglob("*.json")):
        if path.name not in RECORDS or NOT_RECORDS & set(path.relative_to(folder).parts[:-1]):
            continue
        try:
            data = read_json(path)
        except (OSError, ValueError):
            continue
        if portable(data) != data:
            write_json(path, data)
            changed.append(path)
    return changed


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    return _atomic_write(path, "".join(json.dumps(row, default=str) + "\n" for row in rows))


def read_jsonl(path: str | Path) -> list[Any]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]
