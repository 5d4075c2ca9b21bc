"""Records: atomic writes, and no machine's absolute path in anything a run folder records, including
every file committed under results/."""

import json
import re
import subprocess
from pathlib import Path

from r3kit.infra.io import checkout_root, make_portable, portable, read_json, write_json

ROOT = Path(__file__).resolve().parents[1]
# "/a/b..." not preceded by a word character, ")" or ":" or "/" (so not 12/4/2, (3+4)/2/1 or https://...)
ABSOLUTE = re.compile(r"(?<![\w):/.\]~])/(?:[\w.+-]+/)+[\w.+-]*")


def test_paths_are_recorded_relative_to_the_checkout_or_home():
    home = Path.home()
    record = {"model": str(checkout_root() / "results" / "x" / "student"), "saved": checkout_root() / "a",
              "cache": str(home / ".cache" / "r3kit"), "elsewhere": "/data/runs/x", "answer": "(3+4)/2", "n": 3,
              "list": [str(checkout_root()), {"deep": str(checkout_root() / "b")}]}
    assert portable(record) == {"model": "results/x/student", "saved": "a", "cache": "~/.cache/r3kit",
                                "elsewhere": "/data/runs/x", "answer": "(3+4)/2", "n": 3, "list": [".", {"deep": "b"}]}


def test_text_that_is_not_exactly_one_path_is_left_alone_and_an_installed_package_keeps_checkout_paths(monkeypatch):
    home = str(Path.home())
    assert portable(f"{home}/.venv/bin/python -m r3kit") == f"{home}/.venv/bin/python -m r3kit"
    assert portable(f"{home}/a:{home}/b") == f"{home}/a:{home}/b"
    monkeypatch.setattr("r3kit.infra.io.checkout_root", lambda: None)
    inside = ROOT / "results"
    expected = "~/" + inside.relative_to(Path.home()).as_posix() if inside.is_relative_to(Path.home()) else str(inside)
    assert portable(str(inside)) == expected and portable(f"{home}/.cache/x") == "~/.cache/x"


def test_write_json_records_portable_paths_and_make_portable_fixes_old_records(tmp_path):
    write_json(tmp_path / "summary.json", {"saved": str(checkout_root() / "results" / "r" / "adapter")})
    assert read_json(tmp_path / "summary.json") == {"saved": "results/r/adapter"}
    old = {"run_dir": str(checkout_root() / "results" / "r"), "steps": 3}
    for name in ("manifest.json", "train/r3/config.json", "train/r3/checkpoints/checkpoint-1/trainer_state.json",
                 "student/config.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(json.dumps(old))
    changed = make_portable(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in changed) == ["manifest.json", "train/r3/config.json"]
    assert read_json(tmp_path / "manifest.json") == {"run_dir": "results/r", "steps": 3}
    assert json.loads((tmp_path / "student" / "config.json").read_text()) == old  # model folders are not records
    assert make_portable(tmp_path) == []


def test_the_absolute_path_pattern_finds_paths_and_ignores_arithmetic_and_urls():
    assert ABSOLUTE.findall('"/work/main/results/x" and /home/u/.venv/lib/tqdm/auto.py:21')
    for text in ("(3+4)/2/1", "12/4/2", "https://colab.research.google.com/github/r3kit", "28-(28-9)/9", "a / b / c",
                 "~/.cache/r3kit"):
        assert not ABSOLUTE.findall(text), text


def test_no_committed_result_holds_an_absolute_path():
    files = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    records = [f for f in files if f.endswith((".json", ".jsonl", ".ipynb", ".md", ".csv"))]
    assert any(f.endswith(".ipynb") for f in records) and any(f.endswith("manifest.json") for f in records)
    found = {}
    for name in records:
        text = (ROOT / name).read_text()
        if name.endswith(".ipynb"):  # what the run recorded: outputs and metadata, not the notebook's own code
            nb = json.loads(text)
            outputs = [{**o, "data": {k: v for k, v in o.get("data", {}).items() if not k.startswith("image/")}}
                       for c in nb["cells"] for o in c.get("outputs", [])]  # base64 images are not text
            text = json.dumps([nb["metadata"], outputs])
        hits = ABSOLUTE.findall(text)
        if hits:
            found[name] = hits[:3]
    assert not found, f"absolute paths in {len(found)} committed result files, e.g. {dict(list(found.items())[:4])}"


def test_the_checkout_root_is_the_folder_holding_pyproject():
    assert checkout_root() == ROOT and (ROOT / "pyproject.toml").exists() and (ROOT / "r3kit" / "infra" / "io.py").exists()
