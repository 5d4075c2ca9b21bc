"""Small file helpers. Every write goes to a temporary file first and is renamed into place, so a crash
never leaves a half-written file where a finished one was."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _atomic_write(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, data: Any) -> Path:
    return _atomic_write(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    return _atomic_write(path, "".join(json.dumps(row, default=str) + "\n" for row in rows))


def read_jsonl(path: str | Path) -> list[Any]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]
