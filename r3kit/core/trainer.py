"""R3 training: GRPO over mined failures where the completion is the reflection and the reward is the retry.

One step, for B failed problems and groups of G:
    prompt      = task + the mined failed attempt + "that was wrong, reflect"     (same for all G)
    completion  = a sampled reflection                                            (G per prompt)
    retry       = the current policy's answer after that reflection and "try again" (generated, not trained)
    reward      = 1.0 if the task's verifier passes the retry, else 0.0
    advantage   = reward normalised within the group (GRPO); the loss covers the completion only,
                  so only reflection tokens carry gradient: task, attempt and retry tokens never do.
Three arms share this trainer, each a short rollout function below (ROLLOUTS), sampling (T = temperature)
exactly the tokens it trains, every other turn decoded as evaluation decodes it (greedy by default):
    reward_target="reflection"  R3, as above (r3_rollout)
    reward_target="attempt"     plain GRPO on first attempts: the same failed problems, the completion is
                                a fresh first attempt, the reward its own verdict (the baseline any RL
                                reader asks for: does R3 beat ordinary RL at the same budget?; plain_grpo_rollout)
    reward_target="retry"       the retry-reward control: the completion is the retry, the reflection moves
                                into the prompt. With shared_reflection (the fair control), the G samples
                                of a group share one greedy reflection and differ only in the retry, so the
                                group baseline cannot credit a reflection's luck to the retry tokens
                                (retry_control_rollout).
Each step logs the tokens its rollout generated (log.csv `generated_tokens`; summary.json sums them, a
resumed run included), so arms are compared at a known cost.
Logging: TRL's own trackers (`report_to`: trackio by default, local and accountless; wandb, tensorboard or
none), the kit's log.csv (stable column names, cut back to the checkpoint on resume, read by the figures
and tests without a tracker), and in a notebook a live figure of the curves (r3kit/report/live.py, which
the pipeline attaches through `extra_callbacks`).

Several processes (`r3kit run train` under accelerate launch or torchrun): TRL shares each step's problems
among the ranks (each rank gets whole GRPO groups: problems_per_step must be a multiple of the number of
processes), every rank runs the rollout on its share with its own live-LoRA folder, DDP averages the
gradients, and only the main process writes checkpoints, log.csv and the summary.

Design: TRL's `rollout_func` hook rather than a reward function that owns a generator. The rollout
generates both turns with r3kit's own batched generator (transformers on CPU, Unsloth's vLLM engine on
GPU) and hands TRL exactly the token ids that form the trained completion; the retry text is forwarded
to a reward function that is a pure function of (retry, problem). So generation happens in one place
(the same code as evaluation), rewards are deterministic and testable, and no reward function runs a
model behind TRL's back (which would fight TRL's own vLLM sleep/wake and gradient-checkpointing state).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from r3kit.core.episodes import reflection_conversation, retry_conversation
from r3kit.infra import tracking
from r3kit.infra.distributed import is_main, load_cpu_rank_tensors, world
from r3kit.infra.io import portable, write_json
from r3kit.infra.notebook import batch
from r3kit.models.generation import Sampling, make_generator
from r3kit.models.loading import LORA_PINNED, ModelConfig, attach_lora, load_model, lora_fields, release, torch
from r3kit.models.vllm_server import ServerGenerator
from r3kit.tasks import Task

REWARD_TARGETS = ("reflection", "attempt", "retry")
# TRL GRPOConfig fields the kit pins, so a run does not change when TRL's defaults do. `TrainConfig.grpo_config` holds
# them and any other GRPOConfig field a profile names (a profile's train section may name them directly: train.beta);
# beta 0.001 is a guess from one summary of the paper (docs/paper-differences.md), not a reported number.
GRPO_PINNED = {"beta": 0.001, "loss_type": "grpo", "epsilon": 0.2, "scale_rewards": "group", "max_grad_norm": 1.0,
               "lr_scheduler_type": "constant", "warmup_steps": 0, "weight_decay": 0.0,
               # TrainingArguments' default here; Unsloth's GPU config would default to adamw_8bit
               "optim": "adamw_torch_fused",
               "save_total_limit": None}  # keep the last N checkpoints; None: all (selection reads them)
# GRPOConfig fields the kit sets from its own settings (the TrainConfig field to set instead) or from the machine
GRPO_SET_BY_THE_KIT = {"max_steps": "steps", "seed": "seed", "num_generations": "group_size",
                       "per_device_train_batch_size": "micro_batch_size", "gradient_accumulation_steps": "problems_per_step",
                       "learning_rate": "learning_rate", "temperature": "temperature", "top_p": "top_p",
                       "max_completion_length": "reflection_tokens, retry_tokens or attempt_tokens",
                       "save_steps": "save_steps", "report_to": "report_to", "use_vllm": "vllm_server",
                       "vllm_mode": "vllm_server", "vllm_server_base_url": "vllm_server", "output_dir": "the run folder",
                       "use_cpu": "the machine", "bf16": "the machine", "fp16": "the machine",
                       "logging_steps": "the kit (every step)", "save_strategy": "save_steps", "project": "report_to",
                       "run_name": "the run folder", "ddp_find_unused_parameters": "the launcher",
                       "ddp_backend": "the launcher"}


def grpo_fields() -> set[str]:
    """Every field of TRL's GRPOConfig (imports TRL: called only for a field the kit does not pin)."""
    import dataclasses as _dataclasses

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl import GRPOConfig

    return {f.name for f in _dataclasses.fields(GRPOConfig)}


@dataclass
class TrainConfig:
    """One R3 training stage: the kit's own settings (batch shape, turn lengths, arm, LoRA, generation), and in
    `grpo_config` the fields of TRL's GRPOConfig passed through unchanged (GRPO_PINNED, plus any other a profile names).
    Paper-like defaults; the paper's values are unknown (docs/paper-differences.md)."""

    steps: int = 300
    problems_per_step: int = 8  # B failed problems per optimizer step
    group_size: int = 8  # G reflections per failed attempt
    micro_batch_size: int = 8  # completions per forward/backward pass (gradient accumulation fills the rest)
    learning_rate: float = 5e-6
    reward_target: str = "reflection"  # "reflection" (R3), "attempt" (plain GRPO) or "retry" (control)
    shared_reflection: bool = False  # retry arm: the G retries of a group follow one greedy reflection
    finetune: str = "lora"  # "lora" or "full"
    # PEFT LoraConfig fields of the trained adapter (LORA_PINNED, plus any other a profile names, e.g. use_rslora)
    lora_config: dict[str, Any] = field(default_factory=lambda: dict(LORA_PINNED))
    attempt_tokens: int = 512  # the plain-GRPO arm's completions
    reflection_tokens: int = 256
    retry_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    retry_temperature: float = 0.0  # R3 judges each reflection by the greedy retry, as evaluation does
    generation_batch_size: int = 64
    save_steps: int = 50
    seed: int = 0
    report_to: str = field(default_factory=tracking.default_report_to)  # TRL's tracker: "trackio", "wandb", "tensorboard", "none"
    live_every: int = 5  # in a notebook, redraw the live training curves every this many steps (0: never)
    vllm_server: str | None = None  # "http://host:8000": generate through `trl vllm-serve` (vllm_server.py); GPUs only
    grpo_config: dict[str, Any] = field(default_factory=lambda: dict(GRPO_PINNED))  # TRL GRPOConfig fields, passed unchanged

    def validate(self) -> None:
        if not isinstance(self.grpo_config, dict):
            raise ValueError(f"train.grpo_config must be a mapping of TRL GRPOConfig fields, got {self.grpo_config!r}")
        own = {f.name for f in fields(TrainConfig)}
        for key in self.grpo_config:
            if key in GRPO_SET_BY_THE_KIT or key in own:
                raise ValueError(f"GRPOConfig's {key} is set by the kit from {GRPO_SET_BY_THE_KIT.get(key, key)}: set "
                                 "that instead")
        unpinned = set(self.grpo_config) - set(GRPO_PINNED)
        if unpinned and unpinned - grpo_fields():
            raise ValueError(f"train.grpo_config: {sorted(unpinned - grpo_fields())} are not fields of TRL's GRPOConfig")
        if not isinstance(self.lora_config, dict):
            raise ValueError(f"train.lora_config must be a mapping of PEFT LoraConfig fields, got {self.lora_config!r}")
        rank = self.lora_config.get("r", LORA_PINNED["r"])
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"train.lora_config.r (the LoRA rank) must be an integer >= 1, got {rank!r}")
        unpinned = set(self.lora_config) - set(LORA_PINNED)
        if unpinned and unpinned - lora_fields():
            raise ValueError(f"train.lora_config: {sorted(unpinned - lora_fields())} are not fields of PEFT's LoraConfig")
        refused = sorted(set(self.lora_config) & {"task_type", "peft_type", "inference_mode"})
        if refused:
            raise ValueError(f"train.lora_config: {refused} are set by the kit (a causal LM adapter trained in place)")
        targets = self.lora_config.get("target_modules", LORA_PINNED["target_modules"])
        if isinstance(targets, str) or not all(isinstance(t, str) for t in targets):
            raise ValueError(f"train.lora_config.target_modules must be a list of layer names, got {targets!r}")
        limit = {**GRPO_PINNED, **self.grpo_config}.get("save_total_limit")
        tracking.check_report_to(self.report_to)
        if self.live_every < 0:
            raise ValueError(f"live_every must be >= 0 (0: no live curves), got {self.live_every}")
        if self.reward_target not in REWARD_TARGETS:
            raise ValueError(f"reward_target must be one of {REWARD_TARGETS}, got {self.reward_target!r}")
        if self.shared_reflection and self.reward_target != "retry":
            raise ValueError("shared_reflection applies to the retry-reward control only (reward_target='retry')")
        if self.finetune not in ("lora", "full"):
            raise ValueError(f"finetune must be 'lora' or 'full', got {self.finetune!r}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (GRPO compares reflections within a group), got {self.group_size}")
        rollouts = self.problems_per_step * self.group_size
        if self.problems_per_step < 1 or self.micro_batch_size < 1 or rollouts % self.micro_batch_size:
            raise ValueError(
                f"group size does not fit the batch: problems_per_step * group_size = {rollouts} rollouts per step "
                f"must be a positive multiple of micro_batch_size = {self.micro_batch_size}"
            )
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"save_total_limit must be >= 1 (None keeps every checkpoint), got {limit}")
        beta = {**GRPO_PINNED, **self.grpo_config}.get("beta")
        if self.steps < 1 or self.learning_rate <= 0 or not isinstance(beta, (int, float)) or beta < 0:
            raise ValueError(f"need steps >= 1, learning_rate > 0, beta >= 0; got {self.steps}, {self.learning_rate}, {beta}")
        if self.top_p != 1.0:
            raise ValueError(f"top_p must be 1.0, got {self.top_p}: TRL scores the trained completions at the temperature "
                             "alone, so nucleus sampling would train on another distribution than the one sampled")
        if self.vllm_server is not None and not self.vllm_server.startswith(("http://", "https://")):
            raise ValueError(f"vllm_server must be the server's base URL (http://host:port), got {self.vllm_server!r}")
        if self.temperature <= 0 or self.retry_temperature < 0:
            raise ValueError("reflections must be sampled (temperature > 0) so a group holds different reflections")
        if self.reward_target == "retry" and self.retry_temperature == 0:
            raise ValueError("reward_target='retry' trains on the retries, so they must be sampled: retry_temperature > 0")
        Sampling(self.reflection_tokens, self.temperature, self.top_p).validate()
        Sampling(self.retry_tokens, self.retry_temperature, self.top_p).validate()
        Sampling(self.attempt_tokens, self.temperature, self.top_p).validate()

    @property
    def completion_tokens(self) -> int:
        """The trained completion's length limit."""
        return {"reflection": self.reflection_tokens, "attempt": self.attempt_tokens, "retry": self.retry_tokens}[
            self.reward_target]

    @property
    def completion_temperature(self) -> float:
        return self.retry_temperature if self.reward_target == "retry" else self.temperature


def check_failures(task: Task, failures) -> None:
    """Clear errors, before any model is loaded, for a failure dataset training cannot use."""
    if type(task).verify is Task.verify:
        raise ValueError(f"task {task.name!r} has no verifier: R3's reward needs one")
    if failures is None or len(failures) == 0:
        raise ValueError("the failure dataset is empty: mining found no failed first attempts to train on")
    missing = [c for c in (*task.columns, "failed_attempt") if c not in failures.column_names]
    if missing:
        raise ValueError(f"the failure dataset lacks column(s) {missing}; it has {failures.column_names}")


def check_processes(cfg: TrainConfig, processes: int) -> None:
    """A clear error when a step's rollouts cannot be shared among `processes` in whole GRPO groups."""
    rollouts = cfg.problems_per_step * cfg.group_size
    if cfg.problems_per_step % processes or rollouts % (cfg.micro_batch_size * processes):
        raise ValueError(
            f"{processes} processes cannot share a step in whole groups: problems_per_step ({cfg.problems_per_step}) must "
            f"be a multiple of the process count, and problems_per_step * group_size ({rollouts}) a multiple of "
            f"micro_batch_size * processes ({cfg.micro_batch_size} * {processes})")


def server_arguments(cfg: TrainConfig, on_gpu: bool) -> dict:
    """GRPOConfig arguments for generation through a vLLM server: TRL then pushes the trained weights to the
    server before each step's rollout (merged LoRA, ZeRO-3 gathered), and the rollout asks the server."""
    if cfg.vllm_server is None:
        return {}
    if not on_gpu:
        raise ValueError("train.vllm_server needs GPUs: TRL sends the weights to the vLLM server over NCCL "
                         "(VLLMClient.init_communicator refuses a CPU trainer)")
    return {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": cfg.vllm_server}


def live_lora_folder(out_dir: str | Path) -> Path:
    """Where this rank's generator keeps the live adapter's config: one folder per rank under a launcher."""
    rank, size = world()
    return Path(out_dir) / ("live_lora" if size == 1 else f"live_lora-rank{rank}")


def groups(prompts: list, size: int) -> list:
    """The distinct prompt of each group: TRL repeats every prompt `size` times in a row."""
    if len(prompts) % size:
        raise ValueError(f"{len(prompts)} prompts do not form groups of {size}")
    heads = prompts[::size]
    if any(prompts[i] != heads[i // size] for i in range(len(prompts))):
        raise ValueError("the prompts of a GRPO group differ: expected each prompt repeated group_size times in a row")
    return heads


@dataclass
class Rollout:
    """One generation batch of an arm: the completions TRL trains, the text the verifier judges (the reward's
    input), and the two turns of the reflection arms (for the step's log)."""

    trained: list
    judged: list
    reflections: list | None = None
    retries: list | None = None


def reflect_then_retry(generator, task: Task, prompts: list, cfg: TrainConfig, seed: int) -> tuple[list, list]:
    """A reflection for every prompt (sampled; or, with shared_reflection, one greedy reflection per group),
    then the retry after it, decoded at retry_temperature."""
    if cfg.shared_reflection:  # one greedy reflection per group, the same for its G retries
        heads = generator.generate(groups(prompts, cfg.group_size), Sampling(cfg.reflection_tokens, 0.0, 1.0, seed))
        reflections = [heads[i // cfg.group_size] for i in range(len(prompts))]
    else:
        reflections = generator.generate(prompts, Sampling(cfg.reflection_tokens, cfg.temperature, cfg.top_p, seed))
    retry_prompts = [retry_conversation(task, p, r.text) for p, r in zip(prompts, reflections)]
    retries = generator.generate(retry_prompts, Sampling(cfg.retry_tokens, cfg.retry_temperature, cfg.top_p, seed + 1))
    return reflections, retries


def r3_rollout(generator, task: Task, prompts: list, cfg: TrainConfig, seed: int) -> Rollout:
    """R3: train the reflection, judge the greedy retry that follows it."""
    reflections, retries = reflect_then_retry(generator, task, prompts, cfg, seed)
    return Rollout(trained=reflections, judged=retries, reflections=reflections, retries=retries)


def plain_grpo_rollout(generator, task: Task, prompts: list, cfg: TrainConfig, seed: int) -> Rollout:
    """Plain GRPO: a fresh first attempt at each failed problem is both trained and judged."""
    attempts = generator.generate(prompts, Sampling(cfg.attempt_tokens, cfg.temperature, cfg.top_p, seed))
    return Rollout(trained=attempts, judged=attempts)


def retry_control_rollout(generator, task: Task, prompts: list, cfg: TrainConfig, seed: int) -> Rollout:
    """The retry-reward control: the reflection stays in the prompt; the sampled retry is trained and judged."""
    reflections, retries = reflect_then_retry(generator, task, prompts, cfg, seed)
    return Rollout(trained=retries, judged=retries, reflections=reflections, retries=retries)


ROLLOUTS = {"reflection": r3_rollout, "attempt": plain_grpo_rollout, "retry": retry_control_rollout}


def make_rollout(task: Task, cfg: TrainConfig, log: dict, live_lora_dir: str | Path, generator_factory=make_generator):
    """TRL rollout_func: the completions of one generation batch, for the arm `cfg.reward_target`, and the
    text the reward judges (`judged_text`). On vLLM the live LoRA's adapter config goes to `live_lora_dir`.
    The step's generation statistics go to `log`, which the reward hands to TRL's log_metric."""
    arm = ROLLOUTS[cfg.reward_target]

    def rollout(prompts, trainer):
        model = trainer.accelerator.unwrap_model(trainer.model)
        generator = generator_factory(model, trainer.processing_class, batch_size=cfg.generation_batch_size,
                                      live_lora_dir=str(live_lora_dir))
        start, before = time.perf_counter(), generator.stats.tokens
        out = arm(generator, task, prompts, cfg, seed=cfg.seed * 1_000_003 + trainer.state.global_step * 2)
        # TRL averages a logged metric over the processes: N times this rank's tokens averages to their sum
        log["step_generated_tokens"] = (generator.stats.tokens - before) * world()[1]
        log.update(tokens_per_second=generator.stats.tokens_per_second, rollout_seconds=time.perf_counter() - start,
                   completion_tokens=sum(len(c.token_ids) for c in out.trained) / len(out.trained))
        if out.reflections is not None:
            log.update(reflection_tokens=sum(len(r.token_ids) for r in out.reflections) / len(out.reflections),
                       retry_tokens=sum(len(r.token_ids) for r in out.retries) / len(out.retries))
        logprobs = [c.logprobs for c in out.trained]
        return {
            "prompt_ids": [c.prompt_ids for c in out.trained],
            "completion_ids": [c.token_ids for c in out.trained],
            "logprobs": None if any(lp is None for lp in logprobs) else logprobs,
            "reflection_text": [r.text for r in out.reflections] if out.reflections is not None else [""] * len(out.trained),
            "judged_text": [c.text for c in out.judged],
        }

    return rollout


def verdict_rewards(task: Task, judged_text: list[str], columns: dict) -> list[float]:
    """The reward, a pure function: 1.0 where the task's verifier passes the judged text (the retry after each
    reflection, or plain GRPO's attempt) against its row, else 0.0."""
    return [1.0 if task.verify(text, {c: columns[c][i] for c in task.columns}).ok else 0.0
            for i, text in enumerate(judged_text)]


ROLLOUT_METRICS = ("tokens_per_second", "rollout_seconds", "completion_tokens", "reflection_tokens", "retry_tokens",
                   "step_generated_tokens")


def make_reward(task: Task, log: dict):
    """TRL's reward function: verdict_rewards on the judged text. TRL hands reward functions its log_metric,
    the one hook through which per-step metrics are averaged over processes, so the rollout's statistics
    (`log`) are recorded there, beside the reward."""

    def retry_success(prompts, completions, judged_text, log_metric=None, **columns):
        if log_metric is not None:
            for key in ROLLOUT_METRICS:
                if key in log:
                    log_metric(f"r3/{key}", log[key])
        return verdict_rewards(task, judged_text, columns)

    return retry_success


def training_dataset(task: Task, failures, reward_target: str = "reflection"):
    """The failure rows with the GRPO prompt added: task + failed attempt + reflection request, or the
    task alone for the plain-GRPO arm (a fresh first attempt)."""
    if reward_target == "attempt":
        return failures.map(lambda row: {"prompt": task.first_messages({c: row[c] for c in task.columns})})
    return failures.map(lambda row: {"prompt": reflection_conversation(task, {c: row[c] for c in task.columns},
                                                                        row["failed_attempt"])})


def precision(on_gpu: bool, bf16_supported: bool) -> dict:
    """TrainingArguments' device and precision flags: fp32 on CPU, bf16 where the card has it, else fp16
    (a T4 has no bf16; leaving both off there would train in fp32 against Unsloth's fp16 weights)."""
    if not on_gpu:
        return {"use_cpu": True, "bf16": False, "fp16": False}
    return {"use_cpu": False, "bf16": bf16_supported, "fp16": not bf16_supported}


def build_trainer(model, tokenizer, task: Task, failures, cfg: TrainConfig, out_dir: str | Path,
                  generator_factory=make_generator, extra_callbacks=None):
    """A TRL GRPOTrainer wired for R3 (model must already carry LoRA adapters, or be fully trainable).
    `generator_factory(model, tokenizer, batch_size=..., live_lora_dir=...)` makes the rollout's generator
    (tests script it). `extra_callbacks(cfg, out_dir)`, called once the model is loaded, returns more
    TrainerCallbacks (the pipeline's live curves in a notebook)."""

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl import GRPOConfig, GRPOTrainer

    from r3kit.infra.train_log import CsvLogCallback  # transformers: imported only once a model is loaded

    cfg.validate()
    check_failures(task, failures)
    processes = world()[1]
    check_processes(cfg, processes)
    out_dir = Path(out_dir)
    on_gpu = torch.cuda.is_available()
    report_to, trackers = tracking.callbacks(cfg.report_to)
    served = server_arguments(cfg, on_gpu)
    if served:  # the rollout asks TRL's client, which lives on the main process (vllm_server.py)
        def generator_factory(model, tok, **_):
            return ServerGenerator(getattr(getattr(trainer, "vllm_generation", None), "vllm_client", None), tok, model)
    args = GRPOConfig(
        output_dir=str(out_dir / "checkpoints"), max_steps=cfg.steps, seed=cfg.seed,
        per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=cfg.problems_per_step * cfg.group_size // (cfg.micro_batch_size * processes),
        num_generations=cfg.group_size, learning_rate=cfg.learning_rate,
        temperature=max(cfg.completion_temperature, 1e-3), max_completion_length=cfg.completion_tokens,
        logging_steps=1, save_strategy="steps", save_steps=cfg.save_steps,
        report_to=report_to, project=tracking.PROJECT, run_name=tracking.run_name(out_dir) if cfg.report_to != "none" else None,
        **precision(on_gpu, on_gpu and torch.cuda.is_bf16_supported()),
        **{"gradient_checkpointing": False, "disable_tqdm": batch(), **GRPO_PINNED, **cfg.grpo_config},  # batch: the live figure is the record
        **({"ddp_find_unused_parameters": False} if processes > 1 else {}),  # LoRA or full: every trainable weight is used
        **({"ddp_backend": "gloo"} if processes > 1 and not on_gpu else {}),  # CPU processes (tests); GPUs: NCCL
        **served,
    )
    log: dict = {}
    trainer = GRPOTrainer(
        model=model, processing_class=tokenizer, args=args, train_dataset=training_dataset(task, failures, cfg.reward_target),
        reward_funcs=[make_reward(task, log)],
        rollout_func=make_rollout(task, cfg, log, live_lora_folder(out_dir), generator_factory),
    )
    trainer.add_callback(CsvLogCallback(out_dir / "log.csv"))
    if batch():  # disable_tqdm swaps the progress bar for a printout of every step's logs; the figure is the record
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    for callback in trackers:
        trainer.add_callback(callback)
    for callback in extra_callbacks(cfg, out_dir) if extra_callbacks else []:
        trainer.add_callback(callback)
    return trainer


def generated_tokens(log_csv: str | Path) -> int:
    """Tokens generated by all the rollouts of a training run, from its per-step log."""
    import csv

    with open(log_csv) as handle:
        return int(sum(float(row["generated_tokens"] or 0) for row in csv.DictReader(handle)))


def checkpoints(out_dir: str | Path, up_to: int | None = None) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint TRL saved in out_dir/checkpoints, by step; with `up_to`, only those
    within that budget (a folder trained further under other settings is not part of this run)."""
    found = [(int(p.name.split("-")[1]), p) for p in (Path(out_dir) / "checkpoints").glob("checkpoint-*")
             if p.name.split("-")[1].isdigit() and (p / "trainer_state.json").exists()]  # a save cut short is no checkpoint
    return sorted((step, p) for step, p in found if up_to is None or step <= up_to)


def last_checkpoint(out_dir: str | Path, up_to: int | None = None) -> str | None:
    found = checkpoints(out_dir, up_to)
    return str(found[-1][1]) if found else None


def finish_from_checkpoint(trainer, checkpoint: str) -> None:
    """Load a checkpoint that already holds the whole budget into `trainer`, without training. Trainer.train
    would take one more step first (transformers checks the step budget only after a step), so a run stopped
    between its last checkpoint and its summary would end past its budget."""
    from transformers import TrainerState

    trainer._load_from_checkpoint(checkpoint)  # the weights as Trainer.train(resume_from_checkpoint=...) loads them
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))


def train(model_cfg: ModelConfig, task: Task, failures, cfg: TrainConfig, out_dir: str | Path,
          generator_factory=make_generator, extra_callbacks=None) -> dict:
    """Train on `failures`, resuming from the last checkpoint in out_dir; saves adapter/ (or model/),
    config.json and log.csv; returns a summary."""
    if model_cfg.loader == "transformers" and "unsloth" in sys.modules:
        raise ValueError("model.loader='transformers' trains in a process without Unsloth (once imported, Unsloth patches "
                         "TRL's trainers for its own models): start the stage with `r3kit run train` or a launch section")
    cfg.validate()
    check_failures(task, failures)
    check_processes(cfg, world()[1])
    server_arguments(cfg, torch.cuda.is_available())  # a clear error before the model loads
    out_dir = Path(out_dir)
    full = cfg.finetune == "full"
    model, tokenizer = load_model(model_cfg, full_finetuning=full)
    if not full:
        model = attach_lora(model, cfg.lora_config, cfg.seed)
    write_json(out_dir / "config.json", {"model": asdict(model_cfg), "train": asdict(cfg), "task": task.name,
                                         "prompt_style": task.style, "failures": len(failures)})
    trainer = build_trainer(model, tokenizer, task, failures, cfg, out_dir, generator_factory, extra_callbacks)
    from r3kit.infra.train_log import truncate_log  # after load_model: train_log imports transformers

    resume = last_checkpoint(out_dir, up_to=cfg.steps)
    resumed_step = int(resume.rsplit("-", 1)[1]) if resume else 0
    if resume and world()[1] > 1 and not torch.cuda.is_available():
        load_cpu_rank_tensors()  # CPU process groups (the two-process tests) resume through "cpu:<rank>"
    if is_main():
        truncate_log(out_dir / "log.csv", after_step=resumed_step)
    start = time.perf_counter()
    if resumed_step >= cfg.steps:  # stopped after its last checkpoint: finish without another step
        finish_from_checkpoint(trainer, resume)
    else:
        trainer.train(resume_from_checkpoint=resume)
    final = out_dir / ("model" if full else "adapter")
    trainer.save_model(str(final))  # the main process only (TrainingArguments.should_save)
    if is_main():
        tokenizer.save_pretrained(str(final))
    summary = {"steps": trainer.state.global_step, "resumed_from": resume, "saved": str(final),
               "wall_seconds": time.perf_counter() - start, "arm": cfg.reward_target,
               "generated_tokens": generated_tokens(out_dir / "log.csv"),
               "epochs": trainer.state.global_step * cfg.problems_per_step / len(failures)}
    release(trainer.model)
    del model, trainer
    summary = portable(summary)  # paths as the record shows them (relative to the checkout)
    write_json(out_dir / "summary.json", summary)  # last: its presence means training finished
    return summary
