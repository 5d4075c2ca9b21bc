"""Profiles: named sets of parameters for a whole run, resolved into one config dataclass per stage.

A profile is a dict of sections (model, data, student, evaluate, mine, train, grpo, control, select,
study, forgetting) whose entries override the stage dataclass defaults; `grpo` and `control` override `train` for
the plain-GRPO arm and the retry-reward control (null: the arm is not run); `select` picks checkpoints
on the validation split (null: the last weights are reported); `study` sets the seeds of a study;
`forgetting` the lm-eval tasks the trained models are checked on (null: no forgetting check).
`resolve(name, run_dir, overrides)` merges user overrides (same shape, e.g. {"train": {"steps": 50}}),
rejects unknown sections, fields and wrongly typed values with the valid choices listed, validates every
stage, and returns a RunConfig, before any model is loaded or any notebook starts.

    smoke     seconds: a tiny random model through every stage (what the tests run)
    cpu-demo  the default: the kit's own student, offline on CPU (see student/countdown.py)
    cpu-study the headline: 5 training seeds over 2 students, three arms at equal budget, checkpoints chosen
              on validation (`r3kit reproduce --profile cpu-study`; see study.py)
    cpu-exhaustive  a student whose reflection recomputes the failed attempt and tries every second step from
              its true first step (numbers 1-10): the first whose reflection passed R3's gate on validation
    cpu-exhaustive-study  the study on 3 such students x 5 training seeds, its endpoints declared in the profile
    cpu-demo-function-calling  the kit's own student on offline function calling (xLAM rows, test argument
              values never seen in training), CPU (see student/function_calling.py); its student copies values after
              3,000 short steps, then trains on the whole mix until validation first try reaches 25% (at
              most 4,000 steps in all)
    smoke-function-calling  seconds: a tiny random model through every stage of function calling (tests)
    smollm2-function-calling  a real 135M chat model on offline function calling, CPU (no learning expected)
    <model>-<task>-<gpu>      the paper's models on Countdown or APIGen, sized for a Colab T4 or an A100
`r3kit profiles` shows how long each took where a committed run measured it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from r3kit.core.episodes import check_context, episode_prompt
from r3kit.core.mining import MiningConfig
from r3kit.core.trainer import GRPO_PINNED, TrainConfig, grpo_fields
from r3kit.data import DataConfig, sample_rows
from r3kit.eval.evaluate import EvalConfig
from r3kit.eval.forgetting import ForgettingConfig
from r3kit.eval.preconditions import PreconditionsConfig
from r3kit.eval.selection import SelectionConfig
from r3kit.infra.errors import UserError, did_you_mean
from r3kit.infra.io import checkout_root
from r3kit.models.loading import LORA_PINNED, ModelConfig
from r3kit.runs.config import SECTIONS, LaunchConfig, RunConfig, StudyConfig
from r3kit.runs.gpu_profiles import NOT_FITTING, gpu_profiles
from r3kit.student.countdown import StudentConfig
from r3kit.tasks import check_verifier, get_task

ARM_SECTIONS = ("grpo", "control")  # overrides of `train`
TOP_LEVEL = ("description", "task", "prompt_style")
# The turn lengths every stage shares (evaluation, the preconditions, mining, training), set once in a profile's
# `episode` section; a stage's own section overrides one where it differs (the plain-GRPO arm's attempts, say).
EPISODE = ("attempt_tokens", "reflection_tokens", "retry_tokens")
MERGED = (*SECTIONS, "episode")  # the profile keys whose fields an override merges into
NESTED = ("grpo_config", "lora_config")  # fields that hold a library's config, merged field by field
DEFAULT_PROFILE = "cpu-demo"

# The CPU students know only their task: their forgetting check is that task outside their training world
# (r3kit/eval/harness_tasks: Countdown with four numbers or far targets; function calling with three calls or
# more unneeded tools), run through lm-eval like the paper's benchmarks on the GPU profiles.
_STUDENT_FORGETTING = {"tasks": ["r3kit_countdown_arithmetic", "r3kit_countdown_four_numbers",
                                 "r3kit_countdown_far_targets"],
                       "apply_chat_template": True}
_STUDENT_TOKENS = {"attempt_tokens": 56, "reflection_tokens": 40, "retry_tokens": 56}
# The function-calling student's rows: one or two calls, up to one tool the query does not need, and test and
# validation argument values (cities, tickers, emails, ...) that no training row uses (data/function_calling.py).
_CALLS_GENERATOR = {"hold_out_values": True, "max_calls": 2, "max_distractors": 1}
_CALLS_TOKENS = {"attempt_tokens": 192, "reflection_tokens": 64, "retry_tokens": 192}

def _merge(profile: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in profile.items()}
    for key, value in overrides.items():
        if key in MERGED and value is not None and not isinstance(value, dict):
            raise UserError(f"section {key!r} must be a mapping of its fields (or null), got {value!r}")
        if key not in MERGED and key not in TOP_LEVEL:
            raise UserError(f"unknown override {key!r}{did_you_mean(key, [*MERGED, *TOP_LEVEL])}; valid: "
                            f"{sorted([*MERGED, *TOP_LEVEL])}")
        if key in MERGED and isinstance(value, dict) and isinstance(merged.get(key), dict):
            base = merged[key]  # the libraries' own configs merge a level deeper: an override names what it changes
            merged[key] = {**base, **value, **{k: {**base[k], **value[k]} for k in NESTED
                                              if isinstance(base.get(k), dict) and isinstance(value.get(k), dict)}}
        else:
            merged[key] = value
    return merged


# The CPU demos. A study profile is its demo with what a study changes (base and override, merged as --set merges).
_SMOKE: dict[str, Any] = {
    "description": "seconds: a tiny random model through every stage (tests)",
    "task": "countdown", "prompt_style": "compact",
    "model": {"name": "student", "dtype": "float32", "max_seq_length": 256},
    "student": {"hidden": 32, "layers": 1, "heads": 2, "steps": 3, "batch_size": 8, "max_num": 9, "max_target": 30},
    "data": {"n_test": 12, "n_train": 24},
    "episode": {"attempt_tokens": 24, "reflection_tokens": 40, "retry_tokens": 24},
    "evaluate": {"batch_size": 32},
    "mine": {"k": 2, "chunk_size": 8, "batch_size": 32},
    "train": {"steps": 2, "problems_per_step": 2, "group_size": 2, "micro_batch_size": 4, "reflection_tokens": 12,
              "learning_rate": 1e-3, "save_steps": 1, "generation_batch_size": 32},
    "control": {"reward_target": "retry", "retry_temperature": 1.0, "shared_reflection": True},
    "forgetting": {**_STUDENT_FORGETTING, "limit": 6, "batch_size": 8},
}
_CPU_DEMO: dict[str, Any] = {
    "description": "default: the kit's own student (Countdown), offline on CPU",
    "task": "countdown", "prompt_style": "compact",
    "model": {"name": "student", "dtype": "float32", "max_seq_length": 512},
    "student": {"steps": 480, "worked_attempts": True},
    "data": {"n_test": 2000, "n_validation": 300, "n_train": 4000},
    "episode": _STUDENT_TOKENS,
    "evaluate": {"batch_size": 250, "n_examples": 1000},
    "mine": {"k": 1, "keep": "any", "temperature": 0.0, "chunk_size": 1000, "batch_size": 500},
    "train": {"steps": 70, "problems_per_step": 12, "group_size": 8, "micro_batch_size": 96, "learning_rate": 3e-5,
              "beta": 0.0, "loss_type": "grpo", "finetune": "full", "retry_tokens": 24,
              "temperature": 1.0, "retry_temperature": 0.0, "generation_batch_size": 96, "save_steps": 35},
    "control": {"reward_target": "retry", "retry_temperature": 1.0, "shared_reflection": True},
    "select": {"metric": "second_try"},
    "forgetting": {**_STUDENT_FORGETTING, "limit": 500, "batch_size": 250},
}

# A reflection that searches every second step from the failed attempt's true first step, on numbers small enough
# for the student's arithmetic (1-10, targets 1-30): the first student whose own reflection beat both controls by
# 5 points on validation (docs/experiments/README.md).
_EXHAUSTIVE = _merge(_CPU_DEMO, {
    "description": "a student whose reflection recomputes the failed attempt and tries every second step from its "
                   "true first step, on numbers 1-10 (its preconditions: docs/experiments/README.md)",
    "student": {"reflection_style": "exhaustive", "max_num": 10, "max_target": 30, "steps": 1600,
                "mix_solve": 0.2, "mix_reflect": 0.3, "mix_no_reflect": 0.05, "mix_generic": 0.05, "mix_arith": 0.4},
    "data": {"n_test": 1000, "n_train": 700},  # these ranges hold 2,025 distinct problems; 1,300 are held out
    "episode": {"reflection_tokens": 128},
    "forgetting": None,
})

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": _SMOKE,
    "cpu-demo": _CPU_DEMO,
    "smoke-study": _merge(_SMOKE, {
        "description": "seconds: a tiny random model through a whole study (tests)",
        "student": {"reflection_style": "check"},
        "data": {"n_validation": 8},
        "grpo": {"reward_target": "attempt"},
        "select": {"metric": "second_try"},
        "study": {"seeds": [0, 1, 2], "students": [0, 1],
                  "endpoints": ["r3 - vanilla: frozen_retrier", "r3 - grpo: second_try"]},
        "forgetting": None,
    }),
    "cpu-study": _merge(_CPU_DEMO, {
        "description": "the headline: 2 students (reflections check the failed attempt) x 5 training seeds, "
                       "R3 vs plain GRPO vs the fair retry-reward control, checkpoints chosen on validation",
        "student": {"reflection_style": "check"},
        "data": {"n_test": 1000},
        "episode": {"reflection_tokens": 64},
        "evaluate": {"n_examples": None},
        "train": {"steps": 50, "problems_per_step": 8, "micro_batch_size": 64, "generation_batch_size": 64,
                  "save_steps": 25},
        "grpo": {"reward_target": "attempt"},
        "study": {"seeds": [0, 1, 2, 3, 4], "students": [0, 1]},
        "forgetting": None,
    }),
    "cpu-recompute": _merge(_CPU_DEMO, {
        "description": "a student whose reflection recomputes the failed attempt and searches from its true first "
                       "step, with single operations in its SFT; measure its gate first (docs/experiments/README.md)",
        "student": {"reflection_style": "recompute", "max_num": 15, "max_target": 40, "steps": 1600,
                    "mix_solve": 0.2, "mix_reflect": 0.3, "mix_no_reflect": 0.05, "mix_generic": 0.05, "mix_arith": 0.4},
        "episode": {"reflection_tokens": 96},
        "forgetting": None,
    }),
    "cpu-exhaustive": _EXHAUSTIVE,
    "cpu-exhaustive-study": _merge(_EXHAUSTIVE, {
        "description": "the study where R3's preconditions held on validation: 3 exhaustive-search students x 5 "
                       "training seeds, R3 vs plain GRPO vs the fair retry-reward control, checkpoints chosen on "
                       "validation, endpoints declared before the run",
        "evaluate": {"n_examples": None},
        "train": {"steps": 50, "problems_per_step": 8, "micro_batch_size": 64, "generation_batch_size": 64,
                  "save_steps": 25},
        "grpo": {"reward_target": "attempt"},
        "study": {"seeds": [0, 1, 2, 3, 4], "students": [0, 1, 2],
                  "endpoints": ["r3 - vanilla: frozen_retrier", "r3 - grpo: second_try"]},
    }),
    "smoke-function-calling": {
        "description": "seconds: a tiny random model through every stage of function calling (tests)",
        "task": "function_calling", "prompt_style": "compact",
        "model": {"name": "student", "dtype": "float32", "max_seq_length": 1024},
        "student": {"hidden": 32, "layers": 1, "heads": 2, "steps": 3, "batch_size": 8, "reflection_style": "check",
                    "extract_steps": 1, "lr_schedule": "constant", "stop_at_first_try": 1.0, "check_every": 1,
                    "check_rows": 4},
        "data": {"n_test": 12, "n_validation": 8, "n_train": 24, "generator": _CALLS_GENERATOR},
        "episode": {"attempt_tokens": 24, "reflection_tokens": 16, "retry_tokens": 24},
        "evaluate": {"batch_size": 32},
        "mine": {"k": 2, "chunk_size": 8, "batch_size": 32},
        "train": {"steps": 2, "problems_per_step": 2, "group_size": 2, "micro_batch_size": 4, "reflection_tokens": 12,
                  "learning_rate": 1e-3, "save_steps": 1,
                  "generation_batch_size": 32},
        "grpo": {"reward_target": "attempt"},
        "control": {"reward_target": "retry", "retry_temperature": 1.0, "shared_reflection": True},
        "select": {"metric": "second_try"},
    },
    "cpu-demo-function-calling": {
        "description": "the kit's own student on offline function calling (xLAM rows; test argument values never "
                       "seen in training), CPU",
        "task": "function_calling", "prompt_style": "compact",
        "model": {"name": "student", "dtype": "float32", "max_seq_length": 1024},
        # The student first learns to copy values on 3,000 short "extract" conversations (query -> the calls'
        # values; 0.7 s a step on 2 CPU cores: 48% of validation rows' values copied exactly at 3,000 steps,
        # benchmarks/fc_copy_probe.py), then the whole mix at a constant learning rate, and stops at the first
        # check (every 50 steps, greedy, 100 validation rows) whose first try reaches 25%: partial skill,
        # chosen on validation, whatever the machine (on the full mix alone: 2,000 steps, 2.8 h on a CPU).
        "student": {"steps": 4000, "extract_steps": 3000, "lr_schedule": "constant", "stop_at_first_try": 0.25,
                    "check_every": 50, "check_rows": 100, "batch_size": 32, "reflection_style": "check"},
        # Sized to finish in about two hours on 2 cores: the first 400 of the 1,000 test rows (evaluate.n_examples:
        # null for all), checkpoints chosen on 150 validation rows, 24 GRPO steps of 8 failed problems x 8 per arm.
        "data": {"n_test": 1000, "n_validation": 300, "n_train": 1000, "generator": _CALLS_GENERATOR},
        "episode": _CALLS_TOKENS,
        "evaluate": {"batch_size": 200, "n_examples": 400},
        "mine": {"k": 1, "keep": "any", "temperature": 0.0, "chunk_size": 500, "batch_size": 250},
        "train": {"steps": 24, "problems_per_step": 8, "group_size": 8, "micro_batch_size": 64, "learning_rate": 3e-5,
                  "beta": 0.0, "loss_type": "grpo", "finetune": "full",
                  "temperature": 1.0, "retry_temperature": 0.0, "generation_batch_size": 64, "save_steps": 12},
        "grpo": {"reward_target": "attempt"},
        "control": {"reward_target": "retry", "retry_temperature": 1.0, "shared_reflection": True},
        "select": {"metric": "second_try", "n_examples": 150},
        "forgetting": {"tasks": ["r3kit_calls_three", "r3kit_calls_more_tools"], "apply_chat_template": True,
                       "limit": 100, "batch_size": 100},
    },
    "smollm2-function-calling": {
        "description": "SmolLM2-135M-Instruct (shipped in a wheel) on offline function calling, CPU; no learning expected",
        "task": "function_calling", "prompt_style": "instruct",
        "model": {"name": "smollm2-135m", "dtype": "float32", "max_seq_length": 2048},
        "data": {"n_test": 48, "n_train": 64},
        "episode": {"attempt_tokens": 96, "reflection_tokens": 64, "retry_tokens": 96},
        "evaluate": {"batch_size": 16},
        "mine": {"k": 2, "chunk_size": 32, "batch_size": 16},
        "train": {"steps": 4, "problems_per_step": 2, "group_size": 4, "micro_batch_size": 4,
                  "learning_rate": 1e-5, "lora_config": {"r": 8, "lora_alpha": 16}, "save_steps": 2,
                  "generation_batch_size": 16},
        "control": None,
    },
    **gpu_profiles(),
}


def project_root() -> Path:
    """The checkout holding this package (where results/ and notebooks/ live), else the working directory."""
    return checkout_root() or Path.cwd()


def is_profile_file(name: str) -> bool:
    return str(name).endswith((".yaml", ".yml"))


def read_profile_file(path: str | Path) -> dict[str, Any]:
    """A profile from a YAML file: its sections merged over the built-in profile named by its `base` (none: the
    stage defaults), section by section, as --set merges; relative paths in it (a task file, data.source,
    launch.config_file) are read from the file's folder."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():  # the examples shipped with the kit, by their path beside the notebooks
        from importlib.resources import files

        shipped = Path(str(files("r3kit.notebooks"))) / path
        if path.is_absolute() or not shipped.is_file():
            raise UserError(f"profile file {path} does not exist")
        path = shipped
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UserError(f"profile file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise UserError(f"profile file {path} must hold a mapping of sections, got {type(values).__name__}")
    base = values.pop("base", None)
    if base is not None and base not in PROFILES:
        raise UserError(f"profile file {path}: unknown base profile {base!r}{did_you_mean(base, PROFILES)}")
    values = with_absolute_paths(values, path.resolve().parent)
    values.setdefault("description", f"from {path.name}" + (f", over {base}" if base else ""))
    return _merge(PROFILES[base] if base else {}, values)


def with_absolute_paths(values: dict[str, Any], base: Path) -> dict[str, Any]:
    """`values` (a profile file's sections, or overrides) with the paths they name read from `base`: a task file,
    data.source, a local model folder, launch.config_file and forgetting.include_path. The notebooks run in the run
    folder, so a relative path must not reach them. Hub ids and names that are no file here stay as they are."""
    def absolute(value: str) -> str:
        return value if Path(value).expanduser().is_absolute() else str(base / value)

    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    task = out.get("task")
    if isinstance(task, str) and ":" in task and task.rpartition(":")[0].endswith(".py"):
        where, _, cls = task.rpartition(":")
        out["task"] = f"{absolute(where)}:{cls}"
    for section, field, always in (("data", "source", True), ("model", "name", False), ("launch", "config_file", False),
                                   ("forgetting", "include_path", True)):
        entry = out.get(section)
        value = entry.get(field) if isinstance(entry, dict) else None
        if not isinstance(value, str) or value in ("generate", "hub") or Path(value).expanduser().is_absolute():
            continue
        if always or (base / value).exists():
            entry[field] = absolute(value)
    return out


def profile_names() -> list[str]:
    return list(PROFILES)



def _coerce(section: str, cls, values: dict[str, Any]) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        hint = did_you_mean(unknown[0], fields) if len(unknown) == 1 else ""
        raise UserError(f"unknown {section} parameter(s) {unknown}{hint}; valid: {sorted(fields)}")
    defaults = dataclasses.asdict(cls())
    out = {}
    for name, value in values.items():
        default = defaults[name]
        if isinstance(default, tuple) and isinstance(value, (list, tuple)):
            value = tuple(value)
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"{section}.{name} must be true or false, got {value!r}")
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif default is not None and value is not None and not isinstance(value, type(default)):
            raise ValueError(f"{section}.{name} must be {type(default).__name__}, got {value!r}")
        out[name] = value
    return out


def _train(section: str, values: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A training section's fields: TrainConfig's own, and TRL GRPOConfig fields, named directly (train.beta) or
    under train.grpo_config, folded into `grpo_config` over the base section's (the pinned ones for train itself). A name that is
    neither is an error before any work; only a GRPOConfig field the kit does not pin imports TRL to check it."""
    own = {f.name for f in dataclasses.fields(TrainConfig)}
    values = dict(values)
    named = values.pop("grpo_config", None) or {}
    if not isinstance(named, dict):
        raise UserError(f"{section}.grpo_config must be a mapping of TRL GRPOConfig fields, got {named!r}")
    flat = {key: values.pop(key) for key in list(values) if key not in own}
    both = sorted(key for key in flat if key in named and flat[key] != named[key])
    if both:
        raise UserError(f"{section}.{both[0]} is given twice, as {section}.{both[0]} = {flat[both[0]]!r} and in "
                        f"{section}.grpo_config = {named[both[0]]!r}: set it one way")
    passed = {**named, **flat}
    unpinned = [key for key in passed if key not in GRPO_PINNED]
    if unpinned:
        fields = grpo_fields()
        unknown = sorted(key for key in unpinned if key not in fields)
        if unknown:
            hint = (did_you_mean(unknown[0], own) or did_you_mean(unknown[0], fields)) if len(unknown) == 1 else ""
            raise UserError(f"unknown {section} parameter(s) {unknown}{hint}; valid: {sorted(own)}, and any field of "
                            "TRL's GRPOConfig")
    lora = values.pop("lora_config", None) or {}
    if not isinstance(lora, dict):
        raise UserError(f"{section}.lora_config must be a mapping of PEFT LoraConfig fields, got {lora!r}")
    out = _coerce(section, TrainConfig, values)
    out["grpo_config"] = {**(base or {}).get("grpo_config", GRPO_PINNED), **passed}
    out["lora_config"] = {**(base or {}).get("lora_config", LORA_PINNED), **lora}
    return out


def _launch(values: dict | None) -> LaunchConfig | None:
    if values is None:
        return None
    cfg = LaunchConfig(**_coerce("launch", LaunchConfig, values))
    return dataclasses.replace(cfg, config_file=absolute_config_file(cfg.config_file))


def resolve(name: str = DEFAULT_PROFILE, run_dir: str | Path | None = None, overrides: dict | None = None,
            budgets: bool = True) -> RunConfig:
    """The validated RunConfig of profile `name` (a built-in name or a .yaml file) with `overrides`; run_dir
    defaults to results/<name>. `budgets=False` skips the context check (for `r3kit budgets`, which advises)."""
    if name in NOT_FITTING:
        raise ValueError(f"profile {name!r} is not offered: {NOT_FITTING[name]}")
    if is_profile_file(name):
        spec = _merge(read_profile_file(name), overrides or {})
    elif name not in PROFILES:
        raise UserError(f"unknown profile {name!r}{did_you_mean(name, PROFILES)}; `r3kit profiles` lists them, and a "
                        "profile file (.yaml) names its own")
    else:
        spec = _merge(PROFILES[name], overrides or {})
    run_dir = Path(run_dir) if run_dir else project_root() / "results" / Path(name).stem
    task = spec.get("task", "countdown")
    style = spec.get("prompt_style", "instruct")
    task_object = get_task(task, style=style)  # unknown task or style -> clear error
    student = StudentConfig(**_coerce("student", StudentConfig, spec["student"])) if spec.get("student") is not None else None
    data_values = _coerce("data", DataConfig, {**spec.get("data", {}), "task": task})
    if student is not None and not data_values.get("generator"):
        data_values["generator"] = student.generator_ranges()
    model_values = _coerce("model", ModelConfig, spec.get("model", {}))
    if model_values.get("name") == "student":
        if student is None:
            raise ValueError("model.name 'student' needs a student section in the profile")
        model_values["name"] = str(run_dir / "student")
    episode = spec.get("episode") or {}
    unknown = sorted(set(episode) - set(EPISODE))
    if unknown:
        raise UserError(f"unknown episode parameter(s) {unknown}{did_you_mean(unknown[0], EPISODE)}; valid: {list(EPISODE)}")
    train_values = _train("train", {**episode, **spec.get("train", {})})
    control, grpo = spec.get("control"), spec.get("grpo")
    run = RunConfig(
        profile=name, run_dir=run_dir, task=task, prompt_style=style,
        model=ModelConfig(**model_values), data=DataConfig(**data_values), student=student,
        evaluate=EvalConfig(**_coerce("evaluate", EvalConfig, {**episode, **spec.get("evaluate", {})})),
        mine=MiningConfig(**_coerce("mine", MiningConfig, {**{k: v for k, v in episode.items() if k == "attempt_tokens"},
                                                           **spec.get("mine", {})})),
        train=TrainConfig(**train_values),
        control=TrainConfig(**{**train_values, **_train("control", control, train_values)}) if control is not None else None,
        grpo=TrainConfig(**{**train_values, **_train("grpo", grpo, train_values)}) if grpo is not None else None,
        select=SelectionConfig(**_coerce("select", SelectionConfig, spec["select"])) if spec.get("select") is not None else None,
        study=StudyConfig(**_coerce("study", StudyConfig, spec["study"])) if spec.get("study") is not None else None,
        forgetting=ForgettingConfig(**_coerce("forgetting", ForgettingConfig, spec["forgetting"]))
        if spec.get("forgetting") is not None else None,
        launch=_launch(spec.get("launch")),
        # on unless a profile sets it to null: every run records R3's preconditions before it trains
        preconditions=PreconditionsConfig(**_coerce("preconditions", PreconditionsConfig, spec.get("preconditions") or {}))
        if spec.get("preconditions", {}) is not None else None,
        overrides=overrides or {},
    )
    if run.study is not None:
        missing = [a for a in run.study.arms if (run.train if a == "r3" else run.grpo if a == "grpo" else run.control) is None]
        if missing or run.select is None or run.student is None:
            raise ValueError(f"a study needs a student, a select section and a section for each of its arms {run.study.arms}"
                             f"{f'; missing: {missing}' if missing else ''}")
        if not run.select.score_last:
            raise ValueError("a study compares the last weights too (second_try_last): select.score_last must stay true")
        if not run.evaluate.frozen_retrier and any(e.endswith(": frozen_retrier") for e in run.study.endpoints):
            raise ValueError("a study endpoint is the frozen retrier, but evaluate.frozen_retrier is false")
    if run.student is not None and run.student.stop_at_first_try is not None:
        if run.data.n_validation == 0:
            raise ValueError("student.stop_at_first_try checks the student on the validation split, but data.n_validation is 0")
        if run.student.check_rows > run.data.n_validation:
            raise ValueError(f"student.check_rows ({run.student.check_rows}) is more than the validation split has "
                             f"(data.n_validation = {run.data.n_validation})")
    if run.select is not None:  # selection scores every checkpoint on validation: keep them all
        for name in ("train", "grpo", "control"):
            if getattr(run, name) is not None:
                section = getattr(run, name)
                setattr(run, name, dataclasses.replace(section, grpo_config={**section.grpo_config, "save_total_limit": None}))
    if run.select is not None and run.data.n_validation == 0:
        raise ValueError("the select section chooses checkpoints on the validation split, but data.n_validation is 0")
    if run.train.reward_target != "reflection":
        raise ValueError(f"train.reward_target must be 'reflection' (the R3 arm), got {run.train.reward_target!r}; "
                         "the other arms have their own sections (grpo, control)")
    if run.preconditions is not None and run.preconditions.on_fail == "stop" and run.data.n_validation == 0:
        raise ValueError("preconditions.on_fail='stop' gates training on the validation split, but data.n_validation is 0")
    for stage in (run.model, run.data, run.student, run.evaluate, run.mine, run.train, run.control, run.grpo,
                  run.select, run.study, run.forgetting, run.launch, run.preconditions):
        if stage is not None:
            stage.validate()
    if not type(task_object).__module__.startswith("r3kit."):  # a user's task: its verifier, on malformed output
        rows = sample_rows(run.data, 1)
        if not rows and run.data.source != "hub":
            raise UserError(f"data.source {run.data.source!r} holds no rows")
        if rows:
            check_verifier(task_object, rows[0])
    if budgets:
        check_budgets(run)
    return run


def from_dict(values: dict[str, Any], overrides: dict | None = None) -> RunConfig:
    """The RunConfig that `RunConfig.to_dict()` wrote, rebuilt and validated (launch.py: the processes a
    launcher starts run exactly the caller's run, a study's per-seed run included)."""
    sections = {name: (cls(**_coerce(name, cls, values[name])) if values.get(name) is not None else None)
                for name, cls in SECTIONS.items()}
    run = RunConfig(profile=values["profile"], run_dir=Path(values["run_dir"]), task=values["task"],
                    prompt_style=values["prompt_style"], overrides=overrides or {}, **sections)
    for section in sections.values():
        if section is not None:
            section.validate()
    return run


def absolute_config_file(path: str | None) -> str | None:
    """launch.config_file as an absolute path: relative to the working directory if it is there, else to the
    checkout (the shipped configs/), so notebooks that run in their run folder still find it."""
    if path is None or Path(path).is_absolute():
        return path
    for base in (Path.cwd(), project_root()):
        if (base / path).exists():
            return str((base / path).resolve())
    return path  # LaunchConfig.validate names it


def estimated_prompt_tokens(run: RunConfig) -> int:
    """A subword tokenizer's count for the longest episode prompt of a few generated problems, from the
    text alone (3 characters a token, 8 tokens of template a turn): a check made before any download."""

    task = run.get_task()
    prompts = [episode_prompt(task, row) for row in sample_rows(run.data)]
    return max((sum(len(m["content"]) for m in p) // 3 + 8 * len(p) for p in prompts), default=0)


def episode_turns(run: RunConfig) -> dict[str, tuple[int, int, int]]:
    """(attempt, reflection, retry) token budgets of each stage's longest episode: evaluation, and each training
    arm (plain GRPO: its own attempt; R3 and the control: the mined attempt, the reflection and the retry)."""
    e = run.evaluate
    turns = {"evaluate": (e.attempt_tokens, e.reflection_tokens, e.retry_tokens)}
    for name, cfg in (("train", run.train), ("grpo", run.grpo), ("control", run.control)):
        if cfg is not None:
            turns[name] = (cfg.attempt_tokens, 0, 0) if cfg.reward_target == "attempt" else \
                (run.mine.attempt_tokens, cfg.reflection_tokens, cfg.retry_tokens)
    return turns


def check_budgets(run: RunConfig) -> None:
    """Cross-stage limits, before anything loads: every episode fits the context, and on vLLM the LoRA
    rank fits the engine's max_lora_rank. The real tokenizer checks the context again before a model loads."""

    prompt = estimated_prompt_tokens(run)
    for name, turns in episode_turns(run).items():
        check_context(run.model.max_seq_length, prompt, *turns, f"{name}, estimated")
    for name, cfg in (("train", run.train), ("grpo", run.grpo), ("control", run.control)):
        if cfg is None:
            continue
        if run.model.fast_inference and cfg.finetune == "full":
            raise ValueError(f"{name}.finetune = 'full' with model.fast_inference: vLLM would keep generating with the "
                             "untrained weights; set model.fast_inference=false for full fine-tuning")
        rank = cfg.lora_config.get("r", LORA_PINNED["r"])
        if run.model.fast_inference and cfg.finetune == "lora" and rank > run.model.max_lora_rank:
            raise ValueError(f"{name}.lora_config.r = {rank} > model.max_lora_rank = {run.model.max_lora_rank}: vLLM could "
                             "not load the adapter; raise model.max_lora_rank or lower the rank")
