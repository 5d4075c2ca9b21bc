"""Your own task and your own profile: a task class named by its import path (a module, a file, or an installed
entry point) and a profile file reach every process the kit starts; bad ones fail with one clear message."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from r3kit import tasks
from r3kit.data import DataConfig, load_split
from r3kit.infra.errors import UserError
from r3kit.runs.launch import free_port
from r3kit.runs.profiles import resolve
from r3kit.tasks import get_task

EXAMPLE = Path(__file__).parents[1] / "notebooks" / "your_task"


@pytest.fixture
def task_folder(tmp_path, monkeypatch):
    """A folder holding the example task as a module of its own (mysort.py), importable from there."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(EXAMPLE / "sort_task.py", folder / "mysort.py")
    monkeypatch.syspath_prepend(str(folder))
    return folder


def _profile(folder, text):
    path = folder / "my.yaml"
    path.write_text(text)
    return path


def test_a_task_by_module_or_file_path_has_its_prompts_rows_and_verifier(task_folder):
    by_module = get_task("mysort:SortTask", style="compact")
    by_file = get_task(f"{task_folder / 'mysort.py'}:SortTask")
    assert by_module.name == by_file.name == "sort"
    assert by_module.first_messages({"numbers": [3, 1, 2]}) == [{"role": "user", "content": "sort 3, 1, 2"}]
    assert by_file.verify("<answer>1, 2, 3</answer>", {"numbers": [3, 1, 2]}).ok
    assert by_file.verify("<answer>1, 3, 2</answer>", {"numbers": [3, 1, 2]}).reason == "the given numbers, out of order"
    cfg = DataConfig(task="mysort:SortTask", n_test=10, n_train=30)
    test, train = load_split(cfg, "test"), load_split(cfg, "train")
    assert len(test) == 10 and len(train) == 30
    assert not {tuple(r["numbers"]) for r in test} & {tuple(r["numbers"]) for r in train}


@pytest.mark.parametrize("name, message", [
    ("nosuchmodule_r3kit:Task", "task module 'nosuchmodule_r3kit' cannot be imported"),
    ("no/such/file.py:Task", "task file no/such/file.py does not exist"),
    ("mysort:SortTsk", "has no 'SortTsk' (did you mean 'SortTask'?)"),
    ("json:JSONDecoder", "is not a Task subclass"),
    ("sortt", "unknown task 'sortt'"),
])
def test_task_paths_that_cannot_serve_are_named(task_folder, name, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        get_task(name)


def test_a_task_file_that_fails_to_import_says_so(tmp_path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('half written')\n")
    with pytest.raises(UserError, match=r"broken.py failed to import: RuntimeError: half written"):
        get_task(f"{tmp_path / 'broken.py'}:Anything")


def test_an_installed_entry_point_names_a_task(task_folder, monkeypatch):
    monkeypatch.setattr(tasks, "_installed", lambda: {"sorting": "mysort:SortTask"})
    assert get_task("sorting").name == "sort" and "sorting" in tasks.task_names()


def test_a_verifier_that_raises_on_model_output_is_refused_when_the_run_resolves(task_folder):
    (task_folder / "fragile.py").write_text(
        "from mysort import SortTask\n\n"
        "class Fragile(SortTask):\n"
        "    name = 'fragile'\n"
        "    def verify(self, completion, example):\n"
        "        first = completion[0]  # fails on empty output\n"
        "        return super().verify(first + completion[1:], example)\n")
    profile = _profile(task_folder, "base: smoke\ntask: fragile.py:Fragile\nstudent: null\nforgetting: null\n"
                                    "model: {name: tiny}\n")
    with pytest.raises(UserError, match=r"task 'fragile': verify\(\) raised IndexError: .* on the model output ''; a "
                                        r"verifier must return Verdict\(False, reason\)"):
        resolve(str(profile))


def test_a_profile_file_merges_over_its_base_and_is_validated_like_a_built_in_one(task_folder):
    profile = _profile(task_folder, "base: smoke\ntask: mysort.py:SortTask\nstudent: null\nforgetting: null\n"
                                    "model: {name: tiny}\ntrain: {steps: 5}\n")
    run = resolve(str(profile))
    smoke = resolve("smoke")
    assert run.train.steps == 5 and run.train.group_size == smoke.train.group_size  # section by section
    assert run.task == f"{task_folder / 'mysort.py'}:SortTask"  # relative to the profile file
    assert run.run_dir.name == "my" and run.get_task().name == "sort"
    assert resolve(str(profile), overrides={"train": {"steps": 3}}).train.steps == 3  # --set still applies
    for text, message in [
        ("base: smoke\ntrain: {stepz: 3}\n", r"unknown train parameter\(s\) \['stepz'\] \(did you mean 'steps'\?\)"),
        ("base: smoke\ntrian: {steps: 3}\n", r"unknown override 'trian' \(did you mean 'train'\?\)"),
        ("base: smok\n", r"unknown base profile 'smok' \(did you mean 'smoke'\?\)"),
        ("base: smoke\ntrain: {steps: many}\n", "train.steps must be int, got 'many'"),
        ("base: smoke\ntrain: [steps\n", "is not valid YAML"),
        ("- smoke\n", "must hold a mapping of sections"),
    ]:
        with pytest.raises(ValueError, match=message):
            resolve(str(_profile(task_folder, text)))
    with pytest.raises(UserError, match="profile file .*nothere.yaml does not exist"):
        resolve(str(task_folder / "nothere.yaml"))


@pytest.mark.slow
def test_a_user_task_reaches_the_papermill_kernels_and_two_launched_processes(task_folder, tmp_path, monkeypatch):
    """`r3kit reproduce --profile my.yaml` whose task is a file named relative to the profile: every notebook's
    kernel (running in the run folder) imports it; then mining in two processes under torchrun, with the task
    named module:Class from the module's folder, writes what one process wrote."""
    from r3kit.infra.io import read_jsonl
    from r3kit.runs.reproduce import reproduce

    text = (EXAMPLE / "sort.yaml").read_text().replace("sort_task.py:SortTask", "mysort.py:SortTask")
    (task_folder / "my.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)  # neither the profile's folder nor the run folder
    manifest = reproduce(str(task_folder / "my.yaml"), "run", progress=False)
    assert [n["status"] for n in manifest["notebooks"]] == ["ok"] * 6
    transcripts = read_jsonl(tmp_path / "run" / "eval" / "trained" / "transcripts.jsonl")
    assert len(transcripts) == 16 and transcripts[0]["first"]["messages"][0]["content"].startswith("sort ")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    argv = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2", "--master_port",
            str(free_port()), "-m", "r3kit", "run", "mine", "--profile", "my.yaml", "--out", str(tmp_path / "two"),
            "--set", "task=mysort:SortTask"]
    done = subprocess.run(argv, cwd=task_folder, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    one = sorted(p.read_text() for p in (tmp_path / "run" / "failures" / "chunks").glob("*.jsonl"))
    two = sorted(p.read_text() for p in (tmp_path / "two" / "failures" / "chunks").glob("*.jsonl"))
    assert one == two and one


def test_kernels_import_from_the_folder_reproduce_started_in(tmp_path, monkeypatch):
    """A task named module:Class from the working folder reaches the kernels, which run in the run folder."""
    import os as _os

    from r3kit.runs.reproduce import _environment

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    with _environment(R3KIT_BATCH="1"):
        assert _os.environ["PYTHONPATH"].split(_os.pathsep) == [str(tmp_path), "/elsewhere"]
    assert _os.environ["PYTHONPATH"] == "/elsewhere"


def test_relative_paths_given_on_the_command_line_are_read_from_where_it_ran(task_folder, monkeypatch):
    from r3kit.runs.profiles import with_absolute_paths

    monkeypatch.chdir(task_folder)
    (task_folder / "rows.jsonl").write_text('{"numbers": [2, 1]}\n')
    got = with_absolute_paths({"task": "mysort.py:SortTask", "data": {"source": "rows.jsonl"},
                               "model": {"name": "Qwen/Qwen2.5-1.5B-Instruct"}}, task_folder)
    assert got["task"] == f"{task_folder / 'mysort.py'}:SortTask"
    assert got["data"]["source"] == str(task_folder / "rows.jsonl")
    assert got["model"]["name"] == "Qwen/Qwen2.5-1.5B-Instruct"  # a hub id, not a file here: unchanged


def test_task_classes_that_would_fail_later_are_refused_when_named(task_folder):
    (task_folder / "odd.py").write_text(
        "from mysort import SortTask\n\n"
        "class PlainMethod(SortTask):\n    name = 'plain'\n    def generate(self, n, seed):\n        return []\n\n"
        "class Shadow(SortTask):\n    name = 'countdown'\n")
    with pytest.raises(UserError, match=r"PlainMethod.generate must be a @staticmethod"):
        get_task(f"{task_folder / 'odd.py'}:PlainMethod")
    with pytest.raises(UserError, match="task name 'countdown' is one of the kit's own tasks"):
        get_task(f"{task_folder / 'odd.py'}:Shadow")
    assert get_task("countdown").name == "countdown" and type(get_task("countdown")).__module__.startswith("r3kit.")


def test_a_task_file_imports_the_files_beside_it(tmp_path):
    (tmp_path / "helpers_r3kit_test.py").write_text("SUFFIX = 'ok'\n")
    (tmp_path / "beside.py").write_text(
        "from helpers_r3kit_test import SUFFIX\nfrom r3kit import Task, Verdict\nfrom r3kit.tasks.prompts import Prompts\n\n"
        "class Beside(Task):\n    name = 'beside'\n    columns = ('x',)\n"
        "    prompt_styles = {'instruct': Prompts('{x}', 'r', 'r', 'r', 'r')}\n"
        "    def verify(self, completion, example):\n        return Verdict(completion == SUFFIX, SUFFIX)\n")
    assert get_task(f"{tmp_path / 'beside.py'}:Beside").verify("ok", {}).ok


def test_a_hub_only_task_resolves_before_its_rows_are_downloaded(task_folder):
    (task_folder / "hubbed.py").write_text(
        "from mysort import SortTask\n\nclass Hubbed(SortTask):\n    name = 'hubbed'\n    generate = None\n"
        "    hub_id = 'someone/sorting'\n")
    profile = _profile(task_folder, "base: smoke\ntask: hubbed.py:Hubbed\nstudent: null\nforgetting: null\n"
                                    "model: {name: tiny}\ndata: {source: hub}\n")
    assert resolve(str(profile)).data.source == "hub"
    with pytest.raises(UserError, match="section 'train' must be a mapping of its fields"):
        resolve(str(_profile(task_folder, "base: smoke\ntrain: 5\n")))


def test_budgets_advice_counts_the_prompt_with_the_models_tokenizer(capsys):
    from r3kit.cli import main

    profile = str(EXAMPLE / "sort.yaml")
    assert main(["budgets", "--profile", profile, "--set", "model.max_seq_length=64", "--set", "train.retry_tokens=40"]) == 0
    out = capsys.readouterr().out.splitlines()
    prompt = int(out[0].split("longest ")[1].split(" tokens")[0])
    assert prompt > 10 and "over 48 training rows with tiny's tokenizer" in out[0]
    train = next(line for line in out if line.startswith("train:"))
    assert train == (f"train: prompt {prompt} + attempt 16 + reflection 12 + retry 40 = {prompt + 68} tokens; "
                     "does NOT fit in model.max_seq_length = 64")
    assert out[-1].startswith(f"suggested model.max_seq_length: {256 * -(-(prompt + 68) // 256)}")
