"""Several processes: the launcher environment, who writes, the launch command, and (slow) real two-process
runs on CPU with gloo: mining and evaluation give byte-identical files to one process; training shares each
step's groups among the ranks, keeps their weights identical, and rewards each reflection by its own retry."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from r3kit.core.trainer import TrainConfig, check_processes
from r3kit.infra import distributed
from r3kit.infra.io import read_jsonl, write_json
from r3kit.runs import launch
from r3kit.runs.launch import LaunchConfig
from r3kit.runs.profiles import resolve

HERE = Path(__file__).parent


def test_world_reads_the_launcher_environment(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.world() == (0, 1) and distributed.is_main()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.world() == (1, 2) and not distributed.is_main()
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="inconsistent launcher environment"):
        distributed.world()


@pytest.mark.parametrize("n,size", [(0, 2), (1, 2), (7, 2), (8, 3), (10, 4), (3, 8)])
def test_share_splits_like_accelerate(n, size):
    """accelerate's split_between_processes: contiguous blocks, the first n % size ranks one item more."""
    blocks = [list(distributed.share(size, n, rank)) for rank in range(size)]
    assert sum(blocks, []) == list(range(n))
    lengths = [len(b) for b in blocks]
    assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)


def test_gather_in_order_refuses_a_missing_item():
    assert distributed.gather_in_order({1: "b", 0: "a"}, 2) == ["a", "b"]
    with pytest.raises(RuntimeError, match="gathered 1 of 2"):
        distributed.gather_in_order({0: "a"}, 2)


def test_only_the_main_process_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    write_json(tmp_path / "metrics.json", {"a": 1})
    assert not (tmp_path / "metrics.json").exists()
    monkeypatch.setenv("RANK", "0")
    write_json(tmp_path / "metrics.json", {"a": 1})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"a": 1}


def test_launch_commands_and_their_errors(tmp_path):
    torchrun = launch.command(LaunchConfig(processes=2, launcher="torchrun", port=29611), "mine", tmp_path / "r.json")
    assert Path(torchrun[0]).name == "torchrun"
    assert torchrun[1:] == ["--nnodes", "1", "--nproc_per_node", "2", "--master_port", "29611", "-m", "r3kit", "run",
                            "mine", "--config", str(tmp_path / "r.json")]
    acc = launch.command(LaunchConfig(processes=4, port=29612), "train", "r.json", ["--arm", "grpo"])
    assert Path(acc[0]).name == "accelerate" and acc[1:8] == ["launch", "--num_processes", "4", "--num_machines", "1",
                                                              "--main_process_port", "29612"]
    assert "--multi_gpu" in acc and acc[-6:] == ["r3kit", "run", "train", "--config", "r.json", "--arm", "grpo"][-6:]
    config = tmp_path / "node.yaml"
    config.write_text("num_processes: 8\n")
    with_file = launch.command(LaunchConfig(processes=8, config_file=str(config), port=1), "evaluate", "r.json")
    assert with_file[with_file.index("--config_file") + 1] == str(config) and "--multi_gpu" not in with_file
    for bad, match in [({"processes": 0}, "processes must be >= 1"), ({"launcher": "mpirun"}, "launcher must be one of"),
                       ({"config_file": str(tmp_path / "none.yaml")}, "does not exist"),
                       ({"launcher": "torchrun", "config_file": str(config)}, "needs launcher 'accelerate'")]:
        with pytest.raises(ValueError, match=match):
            LaunchConfig(**bad).validate()
    with pytest.raises(ValueError, match="launch.processes must be >= 1"):
        resolve("smoke", tmp_path / "run", {"launch": {"processes": 0}})


def same(a, b) -> bool:
    """The same run, as its records write it (JSON: a tuple inside a free-form dict comes back a list)."""
    return json.loads(json.dumps(a.to_dict(), default=str)) == json.loads(json.dumps(b.to_dict(), default=str))


def test_a_launch_request_rebuilds_the_same_run_and_never_relaunches(tmp_path, monkeypatch):
    from r3kit.runs.study import student_run

    run = resolve("smoke", tmp_path / "run", {"launch": {"processes": 2}, "train": {"steps": 3}})
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv(launch.LAUNCHED, raising=False)
    assert launch.wanted(run) and not launch.wanted(resolve("smoke", tmp_path / "run"))
    again = launch.read_request(launch.write_request(run, tmp_path / "request.json"))
    assert same(again, run) and again.train.steps == 3 and again.overrides == run.overrides
    # a study's per-seed run (student seed, folder and model changed in code, not by overrides) survives too
    study = student_run(resolve("smoke-study", "relative/study", {"launch": {"processes": 2}}), 2)
    rebuilt = launch.read_request(launch.write_request(study, tmp_path / "study.json"))
    assert same(rebuilt, study) and rebuilt.student.seed == 2
    assert str(rebuilt.run_dir) == "relative/study/student-2"  # relative: the processes start in this directory
    for name in ("cpu-demo", "cpu-study", "smollm2-function-calling", "qwen2.5-1.5b-countdown-a100"):
        original = resolve(name, tmp_path / name)
        assert same(launch.read_request(launch.write_request(original, tmp_path / f"{name}.json")), original), name
    monkeypatch.setenv(launch.LAUNCHED, "1")  # a launched process (even a single one) runs the stage itself
    assert not launch.wanted(again)


def test_a_relative_launch_config_is_found_from_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # papermill runs each notebook in its run folder
    run = resolve("smoke", tmp_path / "run", {"launch": {"processes": 8, "config_file": "configs/ddp-8gpu.yaml"}})
    assert run.launch.config_file == str((HERE.parent / "configs" / "ddp-8gpu.yaml").resolve())
    with pytest.raises(ValueError, match="does not exist"):
        resolve("smoke", tmp_path / "run", {"launch": {"processes": 2, "config_file": "configs/none.yaml"}})


def test_training_refuses_groups_that_cannot_be_shared():
    check_processes(TrainConfig(problems_per_step=4, group_size=8, micro_batch_size=8), 2)
    with pytest.raises(ValueError, match="3 processes cannot share a step in whole groups"):
        check_processes(TrainConfig(problems_per_step=4, group_size=8, micro_batch_size=8), 3)
    with pytest.raises(ValueError, match="micro_batch_size"):
        check_processes(TrainConfig(problems_per_step=2, group_size=2, micro_batch_size=4), 2)


def test_the_student_stage_refuses_a_launcher(tmp_path, monkeypatch):
    from r3kit.runs.pipeline import run_stage

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="runs in one process"):
        run_stage(resolve("smoke", tmp_path / "run"), "student")
    with pytest.raises(ValueError, match="unknown stage"):
        run_stage(resolve("smoke", tmp_path / "run"), "figures")


# --- real processes (gloo on CPU) -------------------------------------------------------------------------------

def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", launch.LAUNCHED)}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2", "--master_port",
            str(launch.free_port()), *args]
    done = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done


# Small batches, so each generate call of mining (16 attempts a chunk) and evaluation has several batches to share;
# mining samples (temperature 1), so the seeds of the batches matter.
SETS = {"mine": {"batch_size": 4, "temperature": 1.0}, "evaluate": {"batch_size": 4}}
TIMING = ("wall_seconds", "generation", "tokens_per_second", "chunks_resumed")
FOLDER = ("model",)  # the student's path names the run folder, which differs


@pytest.mark.slow
def test_two_processes_mine_and_evaluate_exactly_as_one(tmp_path, monkeypatch, capsys):
    from r3kit.runs.pipeline import evaluate_stage, mine_stage, student_stage

    monkeypatch.chdir(tmp_path)
    one = resolve("smoke", tmp_path / "one", SETS)
    student_stage(one)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    mine_stage(one)
    evaluate_stage(one, "vanilla")

    # mining: `r3kit run` started by torchrun
    sets = [f"--set=mine.{k}={v}" for k, v in SETS["mine"].items()] + [f"--set=evaluate.{k}={v}" for k, v in SETS["evaluate"].items()]
    out = _torchrun(["-m", "r3kit", "run", "mine", "--profile", "smoke", "--out", str(tmp_path / "two"), *sets], tmp_path)
    assert out.stdout.count("stage mine done") == 1  # only the main process reports
    # resume under the launcher: a lost chunk is mined again, the finished ones are skipped
    chunks = tmp_path / "two" / "failures" / "chunks"
    first = (chunks / "chunk-000001.jsonl").read_bytes()
    (chunks / "chunk-000001.jsonl").unlink()
    _torchrun(["-m", "r3kit", "run", "mine", "--profile", "smoke", "--out", str(tmp_path / "two"), *sets], tmp_path)
    assert (chunks / "chunk-000001.jsonl").read_bytes() == first
    assert json.loads((tmp_path / "two" / "failures" / "manifest.json").read_text())["chunks_resumed"] == 2
    # evaluation: what a notebook does when the profile asks for two processes (accelerate launch underneath)
    two = resolve("smoke", tmp_path / "two", {**SETS, "launch": {"processes": 2}})
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    capsys.readouterr()
    metrics = evaluate_stage(two, "vanilla")
    printed = capsys.readouterr().out
    assert "launching: " in printed and "--num_processes 2" in printed and "stage evaluate done" in printed
    assert metrics == json.loads((tmp_path / "two/eval/vanilla/metrics.json").read_text())

    for name in sorted(p.name for p in (tmp_path / "one" / "failures" / "chunks").iterdir()):
        a, b = (tmp_path / d / "failures" / "chunks" / name for d in ("one", "two"))
        assert a.read_bytes() == b.read_bytes(), name
    assert (tmp_path / "one/eval/vanilla/transcripts.jsonl").read_bytes() == \
           (tmp_path / "two/eval/vanilla/transcripts.jsonl").read_bytes()
    for path in ("failures/manifest.json", "eval/vanilla/metrics.json"):
        a, b = (json.loads((tmp_path / d / path).read_text()) for d in ("one", "two"))
        assert {k: v for k, v in a.items() if k not in TIMING + FOLDER} == \
               {k: v for k, v in b.items() if k not in TIMING + FOLDER}, path
    if "generation" in a:
        assert a["generation"]["tokens"] == b["generation"]["tokens"]  # every rank's tokens counted once
    kept = read_jsonl(tmp_path / "two" / "failures" / "chunks" / "chunk-000000.jsonl")
    assert kept[0]["counts"]["attempts"] == 16  # the test did split generate calls of several batches
    import datasets

    rows = [datasets.load_from_disk(str(tmp_path / d / "failures" / "dataset")).to_list() for d in ("one", "two")]
    assert rows[0] == rows[1] and len(rows[0]) > 0
    assert not list((tmp_path / "two").glob("**/.*.tmp-*"))


@pytest.mark.slow
def test_two_process_training_shares_groups_and_keeps_the_ranks_in_step(tmp_path):
    _torchrun([str(HERE / "support" / "distributed_train_worker.py"), str(tmp_path)], HERE.parent)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["size"] for r in ranks] == [2, 2] and [r["summary_steps"] for r in ranks] == [2, 2]
    for step in range(2):
        seen = [r["problems"][step] for r in ranks]
        # each rank reflected on one whole group (4 copies of one problem); the ranks' problems differ
        assert all(len(s) == 4 and len(set(s)) == 1 for s in seen), seen
        assert seen[0][0] != seen[1][0]
    # after every optimizer step both ranks hold the same weights, and the weights moved
    hashes = [[w["sha256"] for w in r["weights"]] for r in ranks]
    assert [w["step"] for w in ranks[0]["weights"]] == [1, 2] and hashes[0] == hashes[1]
    assert hashes[0][0] != hashes[0][1]
    # reward i is the verdict on the retry that followed reflection i ("r<d>" -> retry "<answer>d</answer>")
    for r in ranks:
        assert len(r["rewards"]) == 8
        for reflection, retry, reward in r["rewards"]:
            assert retry == f"<answer>{reflection[-1]}</answer>" and reward == float(int(reflection[-1]) % 2 == 0)
        assert {reward for _, _, reward in r["rewards"]} == {0.0, 1.0}
    run = tmp_path / "run"
    assert (run / "summary.json").exists() and (run / "adapter" / "adapter_config.json").exists()
    assert sorted(p.name for p in run.glob("live_lora*")) in ([], ["live_lora-rank0", "live_lora-rank1"])
    log = (run / "log.csv").read_text().splitlines()
    assert len(log) == 3  # a header and one row per step: the main process alone wrote it
    import csv

    logged = [float(row["generated_tokens"]) for row in csv.DictReader(open(run / "log.csv"))]
    assert logged == [ranks[0]["generated_tokens"][s] + ranks[1]["generated_tokens"][s] for s in range(2)]  # summed
    # resume under the launcher: a third step starts from the second step's checkpoint on both ranks
    _torchrun([str(HERE / "support" / "distributed_train_worker.py"), str(tmp_path), "3"], HERE.parent)
    again = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["summary_steps"] for r in again] == [3, 3]
    assert all(r["resumed_from"].endswith("checkpoint-2") for r in again)
    assert [w["step"] for w in again[0]["weights"]] == [3] and again[0]["weights"] == again[1]["weights"]
    assert [line.split(",")[0] for line in (run / "log.csv").read_text().splitlines()] == ["step", "1", "2", "3"]


@pytest.mark.parametrize("name,kind,processes,machines", [("ddp-8gpu.yaml", "MULTI_GPU", 8, 1),
                                                          ("zero3-8gpu.yaml", "DEEPSPEED", 6, 1),
                                                          ("zero3-2nodes.yaml", "DEEPSPEED", 16, 2)])
def test_the_shipped_launcher_configs_are_what_accelerate_reads(name, kind, processes, machines):
    from accelerate.commands.config.config_args import load_config_from_file

    path = HERE.parent / "configs" / name
    config = load_config_from_file(str(path))
    assert str(config.distributed_type).endswith(kind) and config.num_processes == processes
    assert config.num_machines == machines and not config.use_cpu
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == 3 and config.deepspeed_config["zero3_save_16bit_model"]
    argv = launch.command(LaunchConfig(processes=processes, config_file=str(path), port=29500), "train", "r.json")
    assert argv[argv.index("--config_file") + 1] == str(path) and "--multi_gpu" not in argv
