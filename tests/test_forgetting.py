"""The forgetting check (r3kit/eval/forgetting.py) through the real lm-evaluation-harness, offline.

Tasks are the harness's YAML format over JSON files the tests write (one multiple-choice, one generate-until
with exact match) and r3kit's own Countdown tasks; the models are the tiny random Qwen2, the same with a
saved LoRA adapter, and the same with changed (fully fine-tuned) weights, laid out as training saves them."""

import json
import re
import shutil

import pytest
import torch

from r3kit.eval import forgetting
from r3kit.eval.forgetting import ForgettingConfig, paired_difference
from r3kit.infra.io import read_json, read_jsonl
from r3kit.runs.profiles import PROFILES, resolve

CHOICE_YAML = """task: tiny_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
SUMS_YAML = """task: tiny_sums
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}} Answer:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
"""
TASKS = ("tiny_choice", "tiny_sums", "r3kit_countdown_arithmetic", "r3kit_countdown_far_targets")


def write_tasks(folder):
    """Two harness tasks in YAML over JSON files written here: a multiple-choice and a generate-until task."""
    folder.mkdir(parents=True, exist_ok=True)
    colours = ["red", "green", "blue", "black"]
    choice = [{"question": f"Which colour is number {i}?", "choices": colours, "answer": i % 4} for i in range(10)]
    sums = [{"question": f"Ann has {a} apples and buys {b} more. How many apples has she now?", "answer": str(a + b)}
            for a, b in [(1, 2), (3, 4), (10, 5), (7, 7), (2, 9), (12, 1), (6, 3), (8, 8)]]
    for name, rows, yaml in (("choice", choice, CHOICE_YAML), ("sums", sums, SUMS_YAML)):
        (folder / f"{name}.json").write_text(json.dumps(rows))
        (folder / f"{name}.yaml").write_text(yaml.format(path=folder / f"{name}.json"))
    return folder


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run folder as training leaves it: the tiny model as vanilla, an R3 LoRA adapter and a retry control
    with fully fine-tuned weights (each changed from the base, so they are different models)."""
    from peft import LoraConfig, get_peft_model

    from r3kit.models.loading import ModelConfig, load_model, save_model

    root = tmp_path_factory.mktemp("forgetting")
    tasks = write_tasks(root / "tasks")
    run_dir = root / "run"
    model, tokenizer = load_model(ModelConfig(name="tiny"))
    torch.manual_seed(0)
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(run_dir / "train" / "r3" / "adapter")
    base = lora.unload()
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_model(base, tokenizer, run_dir / "train" / "retry_control" / "model")
    for variant in ("r3", "retry_control"):
        (run_dir / "train" / variant / "summary.json").write_text(json.dumps({"steps": 2}))
    return run_dir, tasks


def run_config(run_dir, include, **forgetting_overrides):
    return resolve("smoke", run_dir, {"model": {"name": "tiny"}, "forgetting": {
        "tasks": list(TASKS), "include_path": str(include), "limit": 6, "batch_size": 4, **forgetting_overrides}})


@pytest.mark.slow
def test_harness_compares_vanilla_with_an_adapter_and_full_weights_and_repeats_exactly(trained_run, tmp_path):
    from r3kit.models.generation import render
    from r3kit.models.loading import ModelConfig, load_tokenizer
    from r3kit.runs.pipeline import forgetting_stage

    run_dir, tasks = trained_run
    summary = forgetting_stage(run_config(run_dir, tasks))
    assert summary == read_json(run_dir / "forgetting.json")
    weights = {name: {k: v for k, v in w.items() if k != "fingerprint"} for name, w in summary["models"].items()}
    assert weights == {"vanilla": {"model": "tiny", "adapter": None, "step": None},
                       "trained": {"model": "tiny", "adapter": str(run_dir / "train/r3/adapter"), "step": 2},
                       "retry_control": {"model": str(run_dir / "train/retry_control/model"), "adapter": None, "step": 2}}
    fingerprints = [w["fingerprint"] for w in summary["models"].values()]
    assert fingerprints[0] is None and None not in fingerprints[1:] and fingerprints[1] != fingerprints[2]
    assert list(summary["tasks"]) == list(TASKS)
    for task, entry in summary["tasks"].items():
        assert entry["metric"] == {"tiny_choice": "acc,none", "tiny_sums": "exact_match,none",
                                   "r3kit_countdown_arithmetic": "acc,none"}.get(task, "accuracy,none")
        for name in ("vanilla", "trained", "retry_control"):
            score = entry["scores"][name]
            assert 0.0 <= score["value"] <= 1.0 and score["n"] == 6 and score["stderr"] is not None
            samples = read_jsonl(run_dir / "forgetting" / name / f"samples_{task}.jsonl")  # lm-eval's own logs
            metric = entry["metric"].split(",")[0]
            assert score["value"] == pytest.approx(sum(s[metric] for s in samples) / len(samples))
        for name in ("trained", "retry_control"):
            diff = entry["differences"][name]
            assert diff["n"] == 6 and diff["ci_low"] <= diff["difference"] <= diff["ci_high"]
            assert diff["difference"] == pytest.approx(entry["scores"][name]["value"] - entry["scores"]["vanilla"]["value"])
            assert "mcnemar" in diff  # every metric here scores 0 or 1 per item
    # the three models are different models: somewhere their per-item log-likelihoods differ
    logs = {name: read_jsonl(run_dir / "forgetting" / name / "samples_tiny_choice.jsonl") for name in summary["models"]}
    assert logs["vanilla"][0]["resps"] != logs["trained"][0]["resps"] != logs["retry_control"][0]["resps"]
    # r3kit's Countdown task reaches the model exactly as the kit's rollout prompts it (the chat template applied)
    tokenizer = load_tokenizer(ModelConfig(name="tiny"))
    sample = read_jsonl(run_dir / "forgetting" / "vanilla" / "samples_r3kit_countdown_far_targets.jsonl")[0]
    task = resolve("smoke").get_task()
    assert sample["arguments"][0][0] == render(tokenizer, task.first_messages(sample["doc"]))
    assert sample["accuracy"] == float(task.verify(sample["resps"][0][0], sample["doc"]).ok)

    # a second run in the same folder evaluates nothing again; a fresh folder gives identical numbers
    stamps = {p: p.stat().st_mtime_ns for p in (run_dir / "forgetting").rglob("*.json*")}
    assert forgetting_stage(run_config(run_dir, tasks)) == summary
    assert stamps == {p: p.stat().st_mtime_ns for p in (run_dir / "forgetting").rglob("*.json*")}
    again = tmp_path / "again"
    shutil.copytree(run_dir / "train", again / "train")
    repeat = forgetting_stage(run_config(again, tasks))
    assert repeat["tasks"] == summary["tasks"]
    for name in summary["models"]:  # lm-eval's records too: no timestamps, no memory addresses
        first, second = (read_json(d / "forgetting" / name / "results.json") for d in (run_dir, again))
        assert first["configs"] == second["configs"] and first["results"] == second["results"]
        assert " at 0x" not in json.dumps(first)
    for name in summary["models"]:
        for task in TASKS:
            assert [s["resps"] for s in read_jsonl(again / "forgetting" / name / f"samples_{task}.jsonl")] == \
                [s["resps"] for s in read_jsonl(run_dir / "forgetting" / name / f"samples_{task}.jsonl")]
    # weights trained again into the same folder are other weights: only that model is evaluated again
    from r3kit.models.loading import ModelConfig, load_model, save_model

    folder = again / "train" / "retry_control" / "model"
    model, tokenizer = load_model(ModelConfig(name=str(folder)))
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)
    save_model(model, tokenizer, folder)
    before = {name: (again / "forgetting" / name / "results.json").stat().st_mtime_ns for name in summary["models"]}
    retrained = forgetting_stage(run_config(again, tasks))
    after = {name: (again / "forgetting" / name / "results.json").stat().st_mtime_ns for name in summary["models"]}
    assert [name for name in before if before[name] != after[name]] == ["retry_control"]
    assert retrained["models"]["retry_control"]["fingerprint"] != summary["models"]["retry_control"]["fingerprint"]
    # changed settings are a different experiment: vanilla is evaluated again (here on 4 items per task)
    changed = forgetting_stage(run_config(again, tasks, limit=4))
    assert all(entry["scores"]["vanilla"]["n"] == 4 for entry in changed["tasks"].values())


def test_unknown_names_tags_and_too_long_answers_are_refused_with_the_fix():
    manager = forgetting.task_manager(ForgettingConfig())
    with pytest.raises(ValueError, match=r"unknown lm-eval task 'hellaswg'.*'hellaswag'"):
        forgetting.check_tasks(ForgettingConfig(tasks=("hellaswg",)), manager)
    with pytest.raises(ValueError, match=r"r3kit_countdown_four_numbers"):
        forgetting.check_tasks(ForgettingConfig(tasks=("r3kit_countdown_for_numbers",)), manager)
    with pytest.raises(ValueError, match=r"'ai2_arc' is a tag"):
        forgetting.check_tasks(ForgettingConfig(tasks=("ai2_arc",)), manager)
    with pytest.raises(ValueError, match=r"generates up to 56 tokens.*set forgetting.max_length above 56"):
        forgetting.check_tasks(ForgettingConfig(tasks=("r3kit_countdown_far_targets",)), manager, max_length=50)
    assert forgetting.check_tasks(ForgettingConfig(tasks=("r3kit_countdown_far_targets",)), manager, max_length=512)


def test_unreachable_task_names_its_hub_dataset_before_any_model_loads(trained_run, monkeypatch):
    import r3kit.runs.pipeline
    from r3kit.runs.pipeline import forgetting_stage

    def no_model(*args, **kwargs):
        raise AssertionError("a model loaded before the tasks were checked")

    monkeypatch.setattr(r3kit.runs.pipeline, "load_model", no_model)
    run_dir, _ = trained_run
    include = write_tasks(run_dir.parent / "unreachable")  # a hub dataset no cache holds, alone and in a group
    (include / "hub.yaml").write_text("task: tiny_hub\ndataset_path: r3kit-tests/never-published\ntest_split: test\n"
                                      "output_type: generate_until\ndoc_to_text: '{{question}}'\n"
                                      "doc_to_target: '{{answer}}'\nmetric_list:\n  - metric: exact_match\n")
    (include / "group.yaml").write_text("group: tiny_group\ntask: [tiny_hub]\naggregate_metric_list:\n"
                                        "  - metric: exact_match\n")
    with pytest.raises(ValueError, match=r"forgetting task 'tiny_hub': could not load the hub dataset "
                                         r"r3kit-tests/never-published \(HF_HUB_OFFLINE"):
        forgetting_stage(run_config(run_dir.parent / "offline", include, tasks=["tiny_choice", "tiny_hub"]))
    with pytest.raises(ValueError, match=r"forgetting task 'tiny_group': could not load the hub dataset "
                                         r"r3kit-tests/never-published"):
        forgetting.check_tasks(ForgettingConfig(tasks=("tiny_group",), include_path=str(include)))


def test_a_run_without_lm_eval_stops_before_its_first_notebook(tmp_path, monkeypatch):
    import importlib.util

    from r3kit.runs.reproduce import reproduce

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'r3kit\[forgetting\]'.*--set forgetting=null"):
        reproduce("smoke", tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "notebooks").exists()


def test_settings_are_checked_when_a_profile_resolves(tmp_path):
    with pytest.raises(ValueError, match="forgetting.limit must be >= 1"):
        resolve("smoke", tmp_path, {"forgetting": {"limit": 0}})
    with pytest.raises(ValueError, match="forgetting.include_path .* is not a folder"):
        resolve("smoke", tmp_path, {"forgetting": {"include_path": str(tmp_path / "nowhere")}})
    with pytest.raises(ValueError, match="forgetting.compare names trained evaluations"):
        resolve("smoke", tmp_path, {"forgetting": {"compare": ["vanilla"]}})
    with pytest.raises(ValueError, match="unknown forgetting parameter"):
        resolve("smoke", tmp_path, {"forgetting": {"shots": 5}})


def test_gpu_profiles_carry_the_papers_four_benchmarks_and_cpu_profiles_the_students():
    gpu = [name for name in PROFILES if name.endswith(("-t4", "-a100", "-a100-40gb"))]
    assert gpu
    for name in gpu:
        cfg = resolve(name).forgetting
        assert cfg.tasks == ("mmlu_pro", "gsm8k", "hellaswag", "minerva_math") and cfg.limit and cfg.apply_chat_template
    assert resolve("cpu-demo").forgetting.tasks == ("r3kit_countdown_arithmetic", "r3kit_countdown_four_numbers",
                                                   "r3kit_countdown_far_targets")
    calls = resolve("cpu-demo-function-calling").forgetting.tasks
    assert calls == ("r3kit_calls_three", "r3kit_calls_more_tools")
    known = set(forgetting.task_manager(ForgettingConfig()).all_tasks)  # the harness has every name the profiles use
    assert set(forgetting.PAPER_BENCHMARKS) | set(resolve("cpu-demo").forgetting.tasks) | set(calls) <= known


def test_paired_difference_is_scipys_paired_t_and_exact_mcnemar():
    from scipy.stats import binomtest, ttest_rel

    before = [1, 1, 0, 0, 1, 0, 1, 1, 0, 0]
    after = [1, 0, 1, 1, 1, 1, 1, 1, 0, 1]
    out = paired_difference([float(x) for x in before], [float(x) for x in after])
    test = ttest_rel(after, before)
    assert out["difference"] == pytest.approx(0.3) and out["p_t"] == pytest.approx(test.pvalue)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx(tuple(test.confidence_interval(0.95)))
    assert out["mcnemar"]["gained"] == 4 and out["mcnemar"]["lost"] == 1
    assert out["mcnemar"]["p_value"] == pytest.approx(binomtest(4, 5).pvalue)
    same = paired_difference([0.2, 0.5], [0.2, 0.5])
    assert same == {"n": 2, "difference": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_t": 1.0}  # not 0/1: no McNemar
    with pytest.raises(ValueError, match="equal, non-zero lengths"):
        paired_difference([1.0], [])


def test_harness_tasks_generate_solvable_problems_outside_the_students_world():
    from r3kit.data.countdown import key
    from r3kit.eval.harness_tasks import utils
    from r3kit.tasks import get_task

    world = resolve("cpu-demo").student.generator_ranges()
    four = utils.load(50, 1, [4], 1, 50, 1, 100)["test"]
    far = utils.load(50, 2, [3], 1, 50, 101, 300)["test"]
    assert all(len(r["nums"]) == 4 for r in four) and world["num_counts"] == (3,)
    assert all(r["target"] > world["max_target"] for r in far)
    utils._problems.cache_clear()
    assert list(utils.load(50, 2, [3], 1, 50, 101, 300)["test"]) == list(far)  # deterministic, not only cached
    assert len({key(r) for r in far}) == 50
    arithmetic = utils.load_arithmetic(30, 3, [3], 1, 50, 1, 100)["test"]
    for row in arithmetic:
        values = [int(c.removeprefix(row["step"])) for c in row["choices"]]
        assert len(set(values)) == 4 and min(values) >= 0
        a, op, b = re.fullmatch(r"(\d+)([-+*])(\d+)=", row["step"]).groups()
        assert values[row["gold"]] == {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
    task = get_task("countdown", style="compact")
    assert utils.doc_to_text({"nums": [3, 5, 7], "target": 22}) == task.first_messages({"nums": [3, 5, 7], "target": 22})[0]["content"]
    assert utils.process_results({"nums": [3, 5, 7], "target": 22}, ["3*5=15,15+7=22 so <answer>(3*5)+7</answer>"]) == {"accuracy": 1.0}
    assert utils.process_results({"nums": [3, 5, 7], "target": 22}, ["<answer>__import__('os')</answer>"]) == {"accuracy": 0.0}


def test_function_calling_harness_tasks_lie_outside_the_students_world():
    import json

    from r3kit.data.tool_library import Values
    from r3kit.eval.harness_tasks import utils

    world = resolve("cpu-demo-function-calling").data.generator
    three = utils.load_calls(40, 1, 3, 3, 1)["test"]
    more = utils.load_calls(40, 2, 1, 2, 3, min_distractors=3)["test"]
    assert all(len(json.loads(r["answers"])) == 3 for r in three) and world["max_calls"] == 2
    assert {len(json.loads(r["tools"])) - len({c["name"] for c in json.loads(r["answers"])}) for r in more} == {3}
    assert world["max_distractors"] == 1
    cities = {c["arguments"]["location"] for r in three for c in json.loads(r["answers"]) if c["name"] == "get_weather"}
    assert cities and all(Values("held_out").owns(city) for city in cities)
    for row in list(three) + list(more):
        gold = json.dumps(json.loads(row["answers"]), separators=(",", ":"))
        assert utils.process_calls(row, [gold]) == {"accuracy": 1.0}
        assert utils.process_calls(row, [gold[:-1]]) == {"accuracy": 0.0}
        assert utils.calls_to_text(row).endswith(row["query"])
