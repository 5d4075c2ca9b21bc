"""The command line: every user error is one line naming the problem (no traceback), checked before any file
is touched; --help explains every option with examples."""

import pytest

from r3kit.cli import main


def _user_files(folder):
    for rel in ("notebooks/my_analysis.ipynb", "train/my_data.csv"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(f"the user's {rel}")
    return {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()}


def _one_line_error(capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("r3kit: ") and "Traceback" not in err, err
    assert expected in err, err
    return err


def test_a_run_with_a_missing_kernel_keeps_every_user_file(tmp_path, capsys):
    before = _user_files(tmp_path)
    _one_line_error(capsys, ["reproduce", "--profile", "smoke", "--out", str(tmp_path), "--kernel", "nosuchkernel"],
                    "no Jupyter kernel named 'nosuchkernel'")
    after = {p.relative_to(tmp_path).as_posix(): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


def test_a_non_empty_folder_the_kit_did_not_make_is_refused(tmp_path, capsys):
    before = _user_files(tmp_path)
    _one_line_error(capsys, ["reproduce", "--profile", "smoke", "--out", str(tmp_path)],
                    "was not made by r3kit")
    assert {p.relative_to(tmp_path).as_posix(): p.read_text() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("argv, expected", [
    (["reproduce", "--profile", "cpu-dem"], "unknown profile 'cpu-dem' (did you mean 'cpu-demo'?)"),
    (["reproduce", "--set", "train.step=3"], "unknown train parameter(s) ['step'] (did you mean 'steps'?)"),
    (["reproduce", "--set", "trian.steps=3"], "unknown override 'trian' (did you mean 'train'?)"),
    (["reproduce", "--set", "task=countdwn"], "unknown task 'countdwn' (did you mean 'countdown'?)"),
    (["reproduce", "--set", "train.steps"], "--set wants section.field=value"),
    (["reproduce", "--set", "train.steps=many"], "train.steps must be int, got 'many'"),
    (["run", "train", "--profile", "cpu-dem"], "did you mean 'cpu-demo'?"),
    (["run", "evaluate", "--config", "no/such/request.json"], "no such file"),
    (["profiles", "--show", "smok"], "did you mean 'smoke'?"),
])
def test_every_user_error_is_one_line_without_a_traceback(capsys, argv, expected):
    _one_line_error(capsys, argv, expected)


def test_a_file_where_the_run_folder_should_be_is_one_line(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    _one_line_error(capsys, ["reproduce", "--profile", "smoke", "--out", str(tmp_path / "a_file")],
                    "is a file, not a folder")
    _one_line_error(capsys, ["run", "student", "--profile", "smoke", "--out", str(tmp_path / "a_file" / "run")],
                    "a_file")


def test_verbose_keeps_the_traceback():
    with pytest.raises(ValueError, match="unknown profile"):
        main(["reproduce", "--profile", "cpu-dem", "--verbose"])


def test_help_explains_every_option_with_examples(capsys):
    from r3kit.cli import _parser

    commands = next(a for a in _parser()._actions if a.dest == "command").choices
    assert set(commands) == {"reproduce", "run", "profiles", "budgets"}
    for name, sub in commands.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help and len(action.help) > 15, f"{name} {action.option_strings or action.dest}"
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert "examples:" in capsys.readouterr().out, name


def test_profiles_show_the_time_a_committed_run_measured(capsys):
    assert main(["profiles"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert " min on 2 CPUs" in lines["cpu-demo"] and "not measured" in lines["smoke"]


def test_splits_the_data_ranges_cannot_supply_stop_the_run_before_any_file_or_training(tmp_path, capsys):
    narrow = ["--set", "student.max_num=4", "--set", "student.max_target=10", "--set", "data.n_train=500"]
    _one_line_error(capsys, ["reproduce", "--profile", "smoke", "--out", str(tmp_path / "a"), *narrow],
                    "lower data.n_train")
    _one_line_error(capsys, ["run", "student", "--profile", "smoke", "--out", str(tmp_path / "b"), *narrow],
                    "lower data.n_train")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "student").exists()
