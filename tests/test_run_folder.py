"""The kit deletes only what it wrote: a run folder's marker, what a fresh run removes, what it sets aside."""

import json

import pytest

from r3kit.infra.errors import UserError
from r3kit.infra.run_folder import MARKER, Recorder, check_writable, claim, mark, read_marker


def _write(folder, *relatives):
    for rel in relatives:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(rel)


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MARKER)


def test_a_new_or_empty_folder_is_marked(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "new" / "deep", tmp_path / "empty"):
        claim(folder)
        assert read_marker(folder) == {"made_by": "r3kit", "written": []}


def test_a_non_empty_folder_the_kit_did_not_make_is_refused_and_left_as_it_was(tmp_path):
    _write(tmp_path, "notebooks/my_analysis.ipynb", "train/my_data.csv")
    with pytest.raises(UserError, match=rf"{tmp_path} is not empty and was not made by r3kit .*--resume.*--overwrite"):
        claim(tmp_path)
    assert _files(tmp_path) == ["notebooks/my_analysis.ipynb", "train/my_data.csv"]


def test_overwrite_sets_the_stage_folders_aside_and_deletes_nothing(tmp_path):
    _write(tmp_path, "notebooks/my_analysis.ipynb", "train/my_data.csv", "my_notes.txt")
    said = []
    claim(tmp_path, overwrite=True, say=said.append)
    files = _files(tmp_path)
    assert "my_notes.txt" in files  # outside the stages' places: not touched
    aside = [f for f in files if f.startswith("set-aside-")]
    assert sorted(f.split("/", 1)[1] for f in aside) == ["notebooks/my_analysis.ipynb", "train/my_data.csv"]
    assert not (tmp_path / "notebooks").exists() and "set aside 2 file(s)" in said[0]


def test_a_fresh_run_deletes_only_the_files_the_kit_listed(tmp_path):
    claim(tmp_path)
    recorder = Recorder(tmp_path)
    _write(tmp_path, "notebooks/01_make_student.ipynb", "train/r3/log.csv", "metrics.json")
    recorder.record()
    assert read_marker(tmp_path)["written"] == ["metrics.json", "notebooks/01_make_student.ipynb", "train/r3/log.csv"]
    _write(tmp_path, "notebooks/my_analysis.ipynb", "my_notes.txt")  # the user's, added after the run
    claim(tmp_path, say=lambda _: None)
    files = _files(tmp_path)
    assert "my_notes.txt" in files
    assert [f.split("/", 1)[1] for f in files if f.startswith("set-aside-")] == ["notebooks/my_analysis.ipynb"]
    assert not any(f in files for f in ("metrics.json", "train/r3/log.csv", "notebooks/01_make_student.ipynb"))
    assert read_marker(tmp_path)["written"] == []


def test_files_of_an_interrupted_notebook_are_set_aside_not_deleted(tmp_path):
    claim(tmp_path)
    Recorder(tmp_path)  # the run starts; its notebook writes a checkpoint and is killed before record()
    _write(tmp_path, "train/r3/checkpoints/checkpoint-1/trainer_state.json")
    claim(tmp_path, say=lambda _: None)
    files = _files(tmp_path)
    assert [f.split("/", 1)[1] for f in files if f.startswith("set-aside-")] == [
        "train/r3/checkpoints/checkpoint-1/trainer_state.json"]
    assert not (tmp_path / "train").exists()  # a fresh run cannot resume from it by accident


def test_resume_keeps_everything(tmp_path):
    _write(tmp_path, "notebooks/my_analysis.ipynb", "train/r3/log.csv")
    claim(tmp_path, resume=True)
    assert _files(tmp_path) == ["notebooks/my_analysis.ipynb", "train/r3/log.csv"]
    assert read_marker(tmp_path)["written"] == []  # not listed, so never deleted later


def test_mark_lists_only_files_that_are_there(tmp_path):
    _write(tmp_path, "metrics.json")
    mark(tmp_path, ["metrics.json", "gone.json"])
    assert json.loads((tmp_path / MARKER).read_text())["written"] == ["metrics.json"]


def test_folders_that_cannot_hold_a_run_are_refused_before_anything_is_made(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_writable(tmp_path / "a_file")
    with pytest.raises(UserError, match="cannot create .*a_file is a file"):
        check_writable(tmp_path / "a_file" / "run")
    with pytest.raises(UserError, match=r"GiB free; this run needs about"):
        check_writable(tmp_path / "run", min_free=1 << 60)
    assert not (tmp_path / "run").exists()


def test_set_aside_folders_never_overwrite_each_other_and_a_broken_marker_is_no_marker(tmp_path):
    claim(tmp_path)
    for _ in range(2):  # two fresh runs within one second
        (tmp_path / "notebooks").mkdir(exist_ok=True)
        (tmp_path / "notebooks" / "mine.ipynb").write_text("the user's")
        claim(tmp_path, say=lambda _: None)
    assert sorted(p.read_text() for p in tmp_path.glob("set-aside-*/notebooks/mine.ipynb")) == ["the user's"] * 2
    (tmp_path / MARKER).write_text('{"made_by": "r3kit"}')
    assert read_marker(tmp_path) is None


def test_records_show_a_task_file_relative_to_the_checkout():
    from r3kit.infra.io import checkout_root, portable

    root = checkout_root()
    assert portable(f"{root}/notebooks/your_task/sort_task.py:SortTask") == "notebooks/your_task/sort_task.py:SortTask"
