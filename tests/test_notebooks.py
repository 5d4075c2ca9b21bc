"""Notebooks: stored clean, parameterised, thin; and papermill runs the smoke profile end to end."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from r3kit.eval.evaluate import summarize
from r3kit.infra.io import read_jsonl
from r3kit.infra.run_folder import MARKER, claim, read_marker
from r3kit.runs.profiles import DEFAULT_PROFILE, PROFILES, resolve
from r3kit.runs.reproduce import plan

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def parameters(path):
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    return {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cells[0].source).body}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean_with_metadata_and_a_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3" and nb.metadata["kernelspec"]["language"] == "python"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has stored outputs"
    params = parameters(path)
    assert params
    assert "google.colab" in nb.cells[1].source  # the install cell that only acts on Colab
    if path.name == "colab_gpu_run.ipynb":  # the one-runtime GPU notebook defaults to a T4 profile on Drive
        assert params["profile"] in PROFILES and params["profile"].endswith("-t4") and params["use_drive"] is True
    elif path.name.startswith(("08_study", "09_study")):  # the study notebooks default to the study profile
        assert params["profile"] == "cpu-study" and params["run_dir"] == "" and params["overrides"] == {}
    elif path.name == "your_task.ipynb":  # the worked example of a task of your own runs its own profile file
        assert params["profile"] == "your_task/sort.yaml" and params["run_dir"] == "" and params["overrides"] == {}
    elif path.name != "00_tour.ipynb":
        assert params["profile"] == DEFAULT_PROFILE and params["run_dir"] == "" and params["overrides"] == {}


def test_reproduce_plan_covers_every_numbered_notebook():
    used = {notebook for profile in ("cpu-demo", "cpu-study") for notebook, _, _ in plan(resolve(profile))}
    assert used == {p.name for p in NOTEBOOKS if p.name[:2].isdigit() and p.name != "00_tour.ipynb"}
    for profile in ("cpu-demo", "cpu-study"):
        names = [name for _, _, name in plan(resolve(profile))]
        assert names == sorted(names) and len(set(names)) == len(names)
    study = plan(resolve("cpu-study"))
    assert [own for _, own, _ in study[:-1]] == [{"student": 0}, {"student": 1}]  # one notebook per student, then 07


def plain_install(tmp_path) -> dict:
    """The environment of a plain `pip install r3kit` (a built wheel, not the checkout), to run from elsewhere."""
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                    str(root)], check=True)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    str(next(tmp_path.glob("r3kit-*.whl")))], check=True)
    return {**os.environ, "PYTHONPATH": str(site)}


@pytest.mark.slow
def test_smoke_profile_end_to_end_through_papermill_from_a_plain_install(tmp_path):
    env = plain_install(tmp_path)
    work = tmp_path / "elsewhere"  # outside the checkout: the notebooks come from the installed package
    work.mkdir()
    where = subprocess.run([sys.executable, "-c", "import r3kit; print(r3kit.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(env["PYTHONPATH"])
    out = subprocess.run([sys.executable, "-m", "r3kit.cli", "reproduce", "--profile", "smoke"], cwd=work, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "without encryption" not in out.stderr  # the kernels' sockets are encrypted
    run_dir = work / "results" / "smoke"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [entry["status"] for entry in manifest["notebooks"]] == ["ok"] * len(plan(resolve("smoke", run_dir)))
    assert manifest["versions"]["trl"] == "1.15.0" and manifest["machine"]["cpus"] >= 1
    assert set(manifest["parameters"]) >= {"model", "data", "train", "control", "evaluate", "mine", "student"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"vanilla", "trained", "retry_control"}
    for which, entry in metrics.items():
        transcripts = read_jsonl(run_dir / "eval" / which / "transcripts.jsonl")
        recomputed = summarize(transcripts)
        assert entry["first_try"]["n"] == len(transcripts) == resolve("smoke").data.n_test
        for key in ("first_try", "second_try", "retry_no_reflection", "retry_generic_reflection"):
            assert entry[key] == recomputed[key]
        if which != "vanilla":  # the trained models also reflected on vanilla's failed first attempts
            fixed = read_jsonl(run_dir / "eval" / which / "on_vanilla_failures.jsonl")
            assert entry["on_vanilla_failures"]["model"]["n"] == len(fixed) == metrics["vanilla"]["failed_first_attempts"]
            assert entry["on_vanilla_failures"]["model"]["successes"] == sum(r["second"]["reflection"]["verdict"]["ok"] for r in fixed)
            frozen = read_jsonl(run_dir / "eval" / which / "frozen_retrier.jsonl")  # its reflection, vanilla's retry
            assert entry["frozen_retrier"]["model"]["n"] == len(frozen) == metrics["vanilla"]["failed_first_attempts"]
            assert entry["frozen_retrier"]["model"]["successes"] == sum(r["second"]["reflection"]["verdict"]["ok"] for r in frozen)
        else:  # the bounds: vanilla's retry after its reflection on another problem, and after the solver's
            assert entry["swapped_reflection"]["swapped"]["n"] == entry["failed_first_attempts"]
            oracle = read_jsonl(run_dir / "eval" / which / "oracle_reflection.jsonl")
            assert entry["oracle_reflection"]["oracle"]["n"] == len(oracle) == entry["failed_first_attempts"]
            assert entry["oracle_reflection"]["oracle"]["successes"] == sum(r["ok"] for r in oracle)
    for name in ("table.md", "table.png", "accuracy.png", "training_curves.png", "conclusion.md"):
        assert (run_dir / "figures" / name).stat().st_size > 0
    assert not (run_dir / "figures" / "accuracy_by_difficulty.png").exists()  # one difficulty: accuracy.png shows it
    assert json.loads((run_dir / "preconditions.json").read_text())["measured"] is False  # smoke has no validation split
    assert (run_dir / "figures" / "table.md").read_text().startswith("R3's preconditions: not measured")
    for variant in ("r3", "retry_control"):
        assert (run_dir / "train" / variant / "log.csv").exists() and (run_dir / "train" / variant / "adapter").exists() or \
            (run_dir / "train" / variant / "model").exists()
    assert (run_dir / "failures" / "manifest.json").exists() and (run_dir / "student.json").exists()
    assert len(list((run_dir / "notebooks").glob("*.ipynb"))) == len(manifest["notebooks"])
    executed = {p.stem: nbformat.read(p, as_version=4) for p in (run_dir / "notebooks").glob("*.ipynb")}
    for name, nb in executed.items():  # batch runs save no widgets (papermill would keep only their first frame)
        kinds = {k for c in nb.cells if c.cell_type == "code" for o in c.outputs for k in o.get("data", {})}
        assert "application/vnd.jupyter.widget-view+json" not in kinds, name
        # and no library chatter: stderr went to the notebook's log, which the record names
        assert [o for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stderr"] == [], name
        assert f"{name}.log in the run folder's logs/" in json.dumps([c.get("outputs", []) for c in nb.cells]), name
    assert (run_dir / "logs" / "08_forgetting.log").stat().st_size > 0  # lm-eval's messages, kept
    train_cell = next(c for c in executed["04_train-r3"].cells if "train_stage(" in c.source)
    assert any("image/png" in o.get("data", {}) for o in train_cell.outputs)  # the live curves, last frame kept
    figures_text = json.dumps([c.outputs for c in executed["09_figures"].cells if c.cell_type == "code"])
    assert "## Conclusion" in figures_text and "preconditions were not measured" in figures_text  # the report ends so
    explore_text = json.dumps([c.outputs for c in executed["10_explore"].cells if c.cell_type == "code"])
    assert "episodes of 3 models: vanilla, trained, retry_control" in explore_text
    forgetting = json.loads((run_dir / "forgetting.json").read_text())  # lm-eval ran vanilla and both arms
    assert list(forgetting["models"]) == ["vanilla", "trained", "retry_control"]
    assert list(forgetting["tasks"]) == list(resolve("smoke").forgetting.tasks)
    for entry in forgetting["tasks"].values():
        assert all(0 <= score["value"] <= 1 and score["n"] == 6 for score in entry["scores"].values())
        assert set(entry["differences"]) == {"trained", "retry_control"}
    assert (run_dir / "figures" / "forgetting.png").stat().st_size > 0 and (run_dir / "figures" / "forgetting.md").exists()
    assert any("image/png" in o.get("data", {}) for c in executed["08_forgetting"].cells for o in c.get("outputs", []))
    written = read_marker(run_dir)["written"]  # the kit listed every file it wrote, and only those
    assert set(written) == {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()} - {MARKER}
    (run_dir / "notebooks" / "my_analysis.ipynb").write_text("the user's")
    (run_dir / "my_notes.txt").write_text("the user's")
    claim(run_dir)  # what a second fresh run does first (then it writes the same files again): the kit's go, only
    [aside] = [p.name for p in run_dir.glob("set-aside-*")]
    assert {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()} == {
        MARKER, "my_notes.txt", f"{aside}/notebooks/my_analysis.ipynb"}
    assert (run_dir / "my_notes.txt").read_text() == "the user's"
    assert (run_dir / aside / "notebooks" / "my_analysis.ipynb").read_text() == "the user's"
    assert read_marker(run_dir)["written"] == []


@pytest.mark.slow
def test_a_failing_notebook_stops_the_run_and_names_itself(tmp_path):
    from r3kit.runs.reproduce import NotebookFailed, reproduce

    with pytest.raises(NotebookFailed, match=r"03_mine_failures.ipynb .* failed in cell \d+: ValueError: k .attempts"):
        reproduce("smoke", tmp_path / "run", overrides={}, notebooks_dir=_broken_notebooks(tmp_path))
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [e["status"] for e in manifest["notebooks"]][-1] == "failed"
    assert (tmp_path / "run" / "metrics.json").exists()  # what the earlier notebooks wrote stays, listed as the kit's
    assert {"metrics.json", "manifest.json", "notebooks/03_mine_failures.ipynb"} <= set(read_marker(tmp_path / "run")["written"])


def _notebooks_with(folder, notebook, marker, prefix):
    """A copy of the notebooks where `prefix` runs first in the cell of `notebook` that holds `marker`."""
    folder.mkdir()
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        if path.name == notebook:
            for cell in nb.cells:
                if marker in cell.source:
                    cell.source = prefix + cell.source
        nbformat.write(nb, folder / path.name)
    return folder


def _broken_notebooks(tmp_path):
    """A copy of the notebooks whose mining notebook asks for k = 0 attempts."""
    return _notebooks_with(tmp_path / "broken_notebooks", "03_mine_failures.ipynb", "mine_stage(run)",
                           "import dataclasses\nrun.mine = dataclasses.replace(run.mine, k=0)\n")


@pytest.mark.slow
def test_tour_runs_with_the_tiny_model(tmp_path):
    import papermill

    papermill.execute_notebook(str(NOTEBOOKS[0]), str(tmp_path / "tour.ipynb"), kernel_name="python3", progress_bar=False,
                               parameters={"model_name": "tiny", "prompt_style": "compact", "max_tokens": 16},
                               cwd=str(NOTEBOOKS[0].parent))
    executed = nbformat.read(tmp_path / "tour.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "first attempt:" in text and "COMPLETION (the only tokens the loss sees)" in text and "step" in text


@pytest.mark.slow
def test_a_gated_dataset_in_the_child_kernel_stops_the_run_with_what_to_do(tmp_path):
    """papermill's kernel does the loading: the message must reach the user through NotebookFailed."""
    from r3kit.runs.reproduce import NotebookFailed, reproduce

    folder = _notebooks_with(tmp_path / "gated_notebooks", "02_evaluate.ipynb", "evaluate_stage(run, which)", (
        "import datasets, httpx, os\nfrom huggingface_hub.errors import GatedRepoError\n"
        "for key in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE', 'HF_TOKEN'):\n    os.environ.pop(key, None)\n"
        "def gated(*args, **kwargs):\n"
        "    raise GatedRepoError('401', response=httpx.Response(401, request=httpx.Request('GET', 'https://hf.co')))\n"
        "datasets.load_dataset = gated\n"))
    with pytest.raises(NotebookFailed, match=r"02_evaluate.ipynb .* ValueError: Salesforce/xlam-function-calling-60k is a "
                                             r"gated dataset .*no Hugging Face token was found.*accept its terms"):
        reproduce("smollm2-function-calling", tmp_path / "run", overrides={"data": {"source": "hub"}}, notebooks_dir=folder)
    assert not (tmp_path / "run" / "eval").exists()  # stopped before any model loaded or wrote


@pytest.mark.slow
def test_smoke_study_through_papermill_selects_on_validation_and_pairs_arms_by_seed(tmp_path):
    from r3kit.runs.reproduce import reproduce
    from r3kit.runs.study import training_logs

    run_dir = tmp_path / "study"
    run = resolve("smoke-study", run_dir)
    manifest = reproduce("smoke-study", run_dir)
    assert [e["status"] for e in manifest["notebooks"]] == ["ok"] * 3
    study = json.loads((run_dir / "study.json").read_text())
    assert study["seeds_evaluated"] == [0, 1, 2] and study["selection"] == "validation split"
    assert sorted((r["arm"], str(r["seed"]), r["student"]) for r in study["rows"]) == sorted(
        [(arm, str(seed), run.study.student_of(seed)) for arm in ("r3", "grpo", "retry_control") for seed in (0, 1, 2)]
        + [("vanilla", "None", student) for student in (0, 1)])  # vanilla once per student
    for seed in (0, 1, 2):
        folder = run_dir / f"student-{run.study.student_of(seed)}"
        metrics = json.loads((folder / "metrics.json").read_text())
        for arm in ("r3", "grpo", "retry_control"):
            name = f"{arm}-seed{seed}"
            selection = json.loads((folder / "train" / name / "selection.json").read_text())
            # every checkpoint and the final weights were scored on the validation split, never on test
            assert selection["split"] == "validation" and sorted(map(int, selection["scores"])) == [1, 2]
            assert selection["n"] == run.data.n_validation
            best = max(selection["scores"].values())
            assert selection["scores"][str(selection["selected"])] == best
            assert selection["selected"] == max(int(k) for k, v in selection["scores"].items() if v == best)
            for step in (1, 2):
                val = read_jsonl(folder / "eval" / name / "validation" / f"step-{step}" / "transcripts.jsonl")
                assert len(val) == run.data.n_validation
            test = read_jsonl(folder / "eval" / name / "transcripts.jsonl")
            assert len(test) == run.data.n_test
            assert metrics[name]["checkpoint"]["step"] == selection["selected"]
            if selection["selected"] != selection["last"]:  # the last weights are reported beside the selected ones
                assert metrics[f"{name}-last"]["checkpoint"]["step"] == selection["last"]
            config = json.loads((folder / "train" / name / "config.json").read_text())["train"]
            assert config["seed"] == seed and config["steps"] == run.train.steps
            assert config["reward_target"] == {"r3": "reflection", "grpo": "attempt", "retry_control": "retry"}[arm]
    for name in ("study_seeds.png", "study_differences.png", "study_training.png"):
        assert (run_dir / "figures" / name).stat().st_size > 0
    logs = training_logs(run)  # what study_training.png draws: every arm's log for every seed
    assert {arm: len(runs) for arm, runs in logs.items()} == {"r3": 3, "grpo": 3, "retry_control": 3}
    assert all([int(r["step"]) for r in rows] == list(range(1, run.train.steps + 1)) for runs in logs.values() for rows in runs)
    assert "r3 - grpo: second_try" in study["differences"]
    # the endpoints the profile declared lead the table, right after the preconditions
    assert list(study["endpoints"]) == ["r3 - vanilla: frozen_retrier", "r3 - grpo: second_try"]
    assert study["endpoints"]["r3 - grpo: second_try"] == study["differences"]["r3 - grpo: second_try"]
    assert "\nEndpoints, declared in the profile before the run" in (run_dir / "table.md").read_text()
    assert set(study["summary"]["vanilla"]) >= {"swapped_reflection", "oracle_reflection", "oracle_reflection_own"}
    assert {"reflections_names_the_fault", "reflections_conclusion_verifies"} <= set(study["summary"]["r3"])
    assert "after the task's solver's reflection " in (run_dir / "table.md").read_text()
    # each student's R3 preconditions, measured on validation before its first training, open the report
    assert sorted(study["preconditions"]) == ["0", "1"]
    assert all(g["measured"] and g["problems"] == run.data.n_validation for g in study["preconditions"].values())
    assert (run_dir / "table.md").read_text().startswith("Student 0: R3's preconditions, on ")
    conclusion = (run_dir / "conclusion.md").read_text()
    assert conclusion.startswith("## Conclusion") and "Endpoints declared in the study's profile" in conclusion
    assert "- R3 − vanilla: frozen retrier: " in conclusion and "- R3 − plain GRPO: second try: " in conclusion


def test_reproduce_plan_runs_every_arm_a_profile_defines():
    names = [name for _, _, name in plan(resolve("cpu-demo", overrides={"grpo": {"reward_target": "attempt",
                                                                                  "attempt_tokens": 56}}))]
    assert names == ["01_make_student", "02_evaluate-vanilla", "03_mine_failures", "04_train-r3", "05_evaluate-trained",
                     "06_train-grpo", "07_evaluate-grpo", "08_train-retry_control", "09_evaluate-retry_control",
                     "10_forgetting", "11_figures", "12_explore"]


@pytest.mark.slow
def test_the_student_notebook_runs_for_function_calling(tmp_path):
    """Notebook 01 with a function-calling profile: its validation checks and its own kinds of conversation."""
    import papermill

    path = next(p for p in NOTEBOOKS if p.name == "01_make_student.ipynb")
    papermill.execute_notebook(str(path), str(tmp_path / "01.ipynb"), kernel_name="python3", progress_bar=False,
                               parameters={"profile": "smoke-function-calling", "run_dir": str(tmp_path / "fc")},
                               cwd=str(path.parent))
    executed = nbformat.read(tmp_path / "01.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "step 2: greedy first try" in text and "step 3: greedy first try" in text
    assert '[{"name":"' in text and "<- trained" in text  # an answer in the calls' JSON, as trained


@pytest.mark.slow
def test_the_your_task_notebook_runs_a_task_from_its_own_file_end_to_end(tmp_path):
    """The worked example: a task defined in a file beside the notebook, its profile file, every stage, and the
    same R3 in a plain TRL GRPOTrainer."""
    import papermill

    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    out = tmp_path / "your_task.ipynb"
    papermill.execute_notebook(str(notebooks / "your_task.ipynb"), str(out), parameters={"run_dir": str(tmp_path / "run")},
                               cwd=str(notebooks), progress_bar=False, kernel_name="python3")
    text = json.dumps([c.get("outputs", []) for c in nbformat.read(out, as_version=4).cells])
    assert "task 'sort' from" in text and "R3 trained 2 steps on" in text
    assert (tmp_path / "run" / "train" / "r3" / "summary.json").exists()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()).keys() == {"vanilla", "trained"}
