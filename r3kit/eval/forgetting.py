"""The forgetting check: what training cost a model elsewhere, measured by lm-evaluation-harness.

The paper compares trained and vanilla models on MMLU-Pro, GSM8K, HellaSwag and MATH. Here:
  1. check the settings before any model loads: every task name is one the harness knows (else the
     close matches are listed) and every task's data loads (else the task and its hub dataset are named);
  2. evaluate each model in-process, vanilla first, then each trained variant with the weights its test
     evaluation used (the base model with its saved adapter, or its fully fine-tuned weights), through
     lm_eval.simple_evaluate on the harness's own HF wrapper (HFLM), all with the same settings and seeds;
  3. write forgetting.json: per task, the metric, each model's score with lm-eval's standard error, and
     each trained model's difference from vanilla, paired item by item on lm-eval's per-sample scores
     (95% t interval and two-sided p from scipy's ttest_rel; exact McNemar as well when scores are 0/1).
     lm-eval's own results and per-sample logs go to forgetting/<model>/ for inspection.
A model whose results are already in forgetting/<model>/ with the same settings is not evaluated again,
so a crash loses nothing already written. r3kit writes no benchmark code: tasks, prompts, few-shot
examples, generation and scoring are lm-eval's (or, for the CPU student, YAML tasks the harness runs,
r3kit/eval/harness_tasks/, scored by the kit's verifier).

Benchmarks of the GPU profiles (lm-eval's task names): mmlu_pro (14 subjects, 5-shot chain of thought,
exact match after its answer extraction), gsm8k (5-shot, strict match), hellaswag (0-shot, length-
normalised accuracy) and minerva_math (7 MATH subjects, 4-shot Minerva prompt, exact match after
answer normalisation); `limit` is per task, so per subject for the two groups.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r3kit.core.arms import parse_which
from r3kit.eval.harness_tasks import FOLDER
from r3kit.eval.stats import paired_difference
from r3kit.infra.errors import MissingPackage
from r3kit.infra.io import read_json, read_jsonl, write_json, write_jsonl

PAPER_BENCHMARKS = ("mmlu_pro", "gsm8k", "hellaswag", "minerva_math")
# The metric reported per task ("<metric>,<filter>", lm-eval's key); tasks not named here report the first
# metric of their config with its first filter.
METRICS = {"mmlu_pro": "exact_match,custom-extract", "gsm8k": "exact_match,strict-match",
           "hellaswag": "acc_norm,none", "minerva_math": "exact_match,none"}
COMPARED = ("trained", "grpo", "retry_control")
# The score of guessing, for tasks with a fixed number of choices (the figures draw it): hellaswag 4 endings,
# mmlu_pro 10 options, the CPU student's arithmetic probe 4 values (harness_tasks/countdown_arithmetic.yaml)
CHANCE = {"hellaswag": 0.25, "mmlu_pro": 0.1, "r3kit_countdown_arithmetic": 0.25}


@dataclass
class ForgettingConfig:
    tasks: tuple[str, ...] = PAPER_BENCHMARKS  # lm-eval task or group names (r3kit's own tasks included)
    limit: int | None = None  # examples per task (per subtask of a group); None: all
    num_fewshot: int | None = None  # None: each task's own few-shot count
    batch_size: int = 8
    max_length: int | None = None  # tokens of prompt + answer; None: the model's max_seq_length (the model loads with it)
    apply_chat_template: bool = False  # render prompts (few-shot examples as turns) with the model's chat template
    compare: tuple[str, ...] = COMPARED  # evaluations set against vanilla; those the profile does not train are skipped
    metrics: dict[str, str] = field(default_factory=dict)  # task -> "<metric>,<filter>", over METRICS
    include_path: str | None = None  # a folder of extra task YAMLs
    seed: int = 0  # lm-eval's python, numpy, torch and few-shot seeds
    bootstrap_iters: int = 1000  # lm-eval's standard errors of metrics that are not means

    def validate(self) -> None:

        if not self.tasks:
            raise ValueError("forgetting.tasks is empty: name at least one lm-eval task")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"forgetting.limit must be >= 1 or None, got {self.limit}")
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise ValueError(f"forgetting.num_fewshot must be >= 0 or None, got {self.num_fewshot}")
        if self.batch_size < 1:
            raise ValueError(f"forgetting.batch_size must be >= 1, got {self.batch_size}")
        if self.max_length is not None and self.max_length < 16:
            raise ValueError(f"forgetting.max_length must be >= 16 tokens or None, got {self.max_length}")
        for which in self.compare:
            if parse_which(which)[0] is None:
                raise ValueError("forgetting.compare names trained evaluations; vanilla is always evaluated")
        if self.include_path is not None and not Path(self.include_path).is_dir():
            raise ValueError(f"forgetting.include_path {self.include_path!r} is not a folder")

    def metric(self, task: str) -> str | None:
        return {**METRICS, **self.metrics}.get(task)

    def settings(self) -> dict[str, Any]:
        """What lm-eval's results depend on (not `compare`, which models run, nor `metrics`, which one is reported)."""
        from importlib.metadata import version

        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("compare", "metrics")}
        return json.loads(json.dumps({**out, "lm_eval": version("lm_eval")}))


def require_harness() -> None:
    """A MissingPackage (an ImportError) that says how to install lm-eval, or nothing (checked before a run's
    first stage)."""
    from importlib.util import find_spec

    if find_spec("lm_eval") is None:
        raise MissingPackage("this profile runs the forgetting check, which needs lm-evaluation-harness: "
                          "pip install 'r3kit[forgetting]' (lm-eval[math]==0.4.13), or leave the check out with "
                          "--set forgetting=null (overrides {\"forgetting\": None})")


def task_manager(cfg: ForgettingConfig):
    """lm-eval's TaskManager over its own tasks, r3kit's (r3kit/eval/harness_tasks) and cfg.include_path."""
    require_harness()
    from lm_eval.tasks import TaskManager


    return TaskManager(include_path=[str(FOLDER), *([cfg.include_path] if cfg.include_path else [])])


def _hub_datasets(manager, name: str, depth: int = 0) -> list[str]:
    """The hub datasets a task or group reads, from its YAML (a group: its members')."""
    entry = manager.task_index.get(name)
    if entry is None or depth > 4:
        return []
    cfg = entry.cfg or {}
    if cfg.get("dataset_path") and not cfg.get("custom_dataset"):
        return [str(cfg["dataset_path"]) + (f" ({cfg['dataset_name']})" if cfg.get("dataset_name") else "")]
    members = cfg.get("task", [])
    out: list[str] = []
    for member in members if isinstance(members, list) else [members]:
        member = member.get("task") if isinstance(member, dict) else member
        if isinstance(member, str) and member != name:
            out += [d for d in _hub_datasets(manager, member, depth + 1) if d not in out]
    return out[:3]


def check_tasks(cfg: ForgettingConfig, manager=None, max_length: int | None = None) -> dict:
    """Before any model loads: every name is a task or a scoring group lm-eval knows (unknown names list close
    matches; a tag, which has no score of its own, is refused), its data loads through TaskManager.load (else the
    task and its hub dataset are named), and its answers fit `max_length` tokens. Returns what it loaded."""
    manager = manager or task_manager(cfg)
    known = set(manager.all_tasks)
    for name in cfg.tasks:
        if name not in known:
            close = difflib.get_close_matches(name, manager.all_tasks, n=6, cutoff=0.6)
            raise ValueError(f"unknown lm-eval task {name!r}; close matches: {close or 'none'} "
                             "(`lm-eval ls tasks` lists them all)")
        if name in manager.all_tags:
            raise ValueError(f"lm-eval name {name!r} is a tag (tasks without a combined score): name its tasks, "
                             "or a group, in forgetting.tasks")
    loaded: dict = {"tasks": {}, "groups": {}}
    for name in cfg.tasks:  # one at a time, so a failure names its task
        try:
            part = manager.load([name])
        except Exception as err:  # the harness raises whatever datasets or its task code raise
            datasets_ = _hub_datasets(manager, name)
            where = f"the hub dataset {', '.join(datasets_)}" if datasets_ else "its data"
            offline = " (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set)" if (
                os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE")) else ""
            raise ValueError(f"forgetting task {name!r}: could not load {where}{offline}. Download it once with "
                             f"internet, or drop the task from forgetting.tasks. ({type(err).__name__}: "
                             f"{str(err)[:300]})") from err
        loaded["tasks"].update(part["tasks"])
        loaded["groups"].update(part["groups"])
    for name in cfg.tasks:
        group = loaded["groups"].get(name)
        if group is not None and not group.has_aggregation:
            raise ValueError(f"lm-eval group {name!r} reports no combined score (no aggregate_metric_list): name its "
                             f"tasks in forgetting.tasks instead ({', '.join(group.child_names[:8])} ...)")
    for name, task in loaded["tasks"].items():
        if max_length is not None and task.get_config("output_type") == "generate_until":
            answer = (task.get_config("generation_kwargs") or {}).get("max_gen_toks", 256)  # HFLM's default
            if int(answer) >= max_length:
                raise ValueError(f"lm-eval task {name!r} generates up to {answer} tokens, which leaves no room for its "
                                 f"prompt in {max_length} tokens: set forgetting.max_length above {answer} "
                                 "(the model then loads with that context)")
    return loaded


def evaluate_model(model, tokenizer, cfg: ForgettingConfig, manager=None, max_length: int | None = None) -> dict:
    """lm-eval's results (with per-sample logs under "samples") for a loaded HF model."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=cfg.batch_size, max_length=max_length)
    seed = cfg.seed
    return simple_evaluate(
        model=lm, tasks=list(cfg.tasks), task_manager=manager or task_manager(cfg), limit=cfg.limit,
        num_fewshot=cfg.num_fewshot, apply_chat_template=cfg.apply_chat_template,
        fewshot_as_multiturn=cfg.apply_chat_template, log_samples=True, bootstrap_iters=cfg.bootstrap_iters,
        random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed)


def _jsonable(value):
    """JSON as lm-eval writes it, except that a task's functions are named ("utils.load"), not shown with their
    memory address, so the same run writes the same files."""
    from lm_eval.utils import handle_non_serializable

    def default(obj):
        if callable(obj) and hasattr(obj, "__qualname__"):
            return f"{Path(str(getattr(obj, '__module__', ''))).name}.{obj.__qualname__}"
        return handle_non_serializable(obj)

    return json.loads(json.dumps(value, default=default))


def save_results(results: dict, out: Path, settings: dict, weights: dict) -> dict:
    """forgetting/<model>/: samples_<task>.jsonl (lm-eval's per-sample logs) and results.json (the rest,
    plus the settings and weights it ran with; written last, so its presence means the model is done)."""

    for task, samples in sorted(results.get("samples", {}).items()):
        write_jsonl(out / f"samples_{task}.jsonl", _jsonable(samples))
    summary = {"settings": settings, "weights": weights,
               **{k: _jsonable(results[k]) for k in ("results", "groups", "group_subtasks", "n-samples",
                                                     "higher_is_better", "configs", "versions") if k in results}}
    write_json(out / "results.json", summary)
    return summary


def _metric_key(cfg: ForgettingConfig, task: str, results: dict) -> str:
    chosen = cfg.metric(task)
    scores = results["results"].get(task, {})
    if chosen is None:
        chosen = next((k for k in scores if "," in k and "_stderr," not in k), None)
    if chosen is None or chosen not in scores:
        raise ValueError(f"lm-eval reported no {chosen or 'metric'} for {task}; it reported "
                         f"{sorted(k for k in scores if ',' in k)} (set forgetting.metrics)")
    return chosen


def _leaves(results: dict, task: str) -> list[str]:
    members = results.get("group_subtasks", {}).get(task)
    if not members:
        return [task]
    return [leaf for member in members for leaf in _leaves(results, member)]


def per_sample(folder: Path, results: dict, task: str, metric_key: str) -> dict[tuple[str, int], float]:
    """{(subtask, doc_id): score} of `metric_key` ("acc_norm,none") from the per-sample logs in `folder`."""

    metric, _, filter_ = metric_key.partition(",")
    out = {}
    for leaf in _leaves(results, task):
        for sample in read_jsonl(folder / f"samples_{leaf}.jsonl"):
            if sample.get("filter", "none") == filter_ and metric in sample:
                out[(leaf, int(sample["doc_id"]))] = float(sample[metric])
    return out


def summarize(cfg: ForgettingConfig, folder: Path, names: list[str]) -> dict:
    """forgetting.json's content from forgetting/<name>/ of each model (names[0] is vanilla)."""
    runs = {name: read_json(folder / name / "results.json") for name in names}
    base = names[0]
    tasks = {}
    for task in cfg.tasks:
        key = _metric_key(cfg, task, runs[base])
        metric, _, _ = key.partition(",")
        stderr_key = key.replace(",", "_stderr,", 1)
        entry: dict[str, Any] = {"metric": key, "higher_is_better": runs[base].get("higher_is_better", {}).get(task, {})
                                 .get(metric, True), "scores": {}, "differences": {}}
        samples = {name: per_sample(folder / name, runs[name], task, key) for name in names}
        for name in names:
            scores = runs[name]["results"][task]
            stderr = scores.get(stderr_key)
            entry["scores"][name] = {"value": float(scores[key]),
                                     "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                                     "n": len(samples[name])}
        for name in names[1:]:
            items = sorted(samples[base].keys() & samples[name].keys())
            if items:
                entry["differences"][name] = paired_difference([samples[base][i] for i in items],
                                                               [samples[name][i] for i in items])
        tasks[task] = entry
    return {"settings": runs[base]["settings"], "models": {name: runs[name]["weights"] for name in names},
            "vanilla": base, "tasks": tasks,
            "test": "trained - vanilla per item (lm-eval's per-sample scores): mean, 95% t interval, two-sided "
                    "paired t p (scipy ttest_rel); exact two-sided McNemar for 0/1 scores"}


def fingerprint(folder: str | Path) -> str | None:
    """A short hash of a local weights folder's files (name, size, first 16 MB of each), so results of weights
    trained again into the same folder are not mistaken for these; None for a hub name or a built-in model."""
    import hashlib

    folder = Path(folder)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{path.name}:{path.stat().st_size}:".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(16 << 20))
    return digest.hexdigest()[:16]


def done(folder: Path, settings: dict, weights: dict) -> bool:
    path = folder / "results.json"
    if not path.exists():
        return False
    saved = read_json(path)
    return saved.get("settings") == settings and saved.get("weights") == weights
