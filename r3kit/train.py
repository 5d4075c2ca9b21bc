"""R3 training: GRPO over mined failures where the completion is the reflection and the reward is the retry.

One step, for B failed problems and groups of G:
    prompt      = task + the mined failed attempt + "that was wrong, reflect"     (same for all G)
    completion  = a sampled reflection                                            (G per prompt)
    retry       = the current policy's answer after that reflection and "try again" (generated, not trained)
    reward      = 1.0 if the task's verifier passes the retry, else 0.0
    advantage   = reward normalised within the group (GRPO); the loss covers the completion only,
                  so only reflection tokens carry gradient: task, attempt and retry tokens never do.
`reward_target="retry"` is the control the paper lacked: the same rollouts, but the completion (and so
the gradient) is the retry, with the reflection moved into the prompt.

Design: TRL's `rollout_func` hook rather than a reward function that owns a generator. The rollout
generates both turns with r3kit's own batched generator (transformers on CPU, Unsloth's vLLM engine on
GPU) and hands TRL exactly the token ids that form the trained completion; the retry text is forwarded
to a reward function that is a pure function of (retry, problem). So generation happens in one place
(the same code as evaluation), rewards are deterministic and testable, and no reward function runs a
model behind TRL's back (which would fight TRL's own vLLM sleep/wake and gradient-checkpointing state).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from r3kit.generation import Sampling, make_generator
from r3kit.io import write_json
from r3kit.models import LORA_TARGETS_DEFAULT, ModelConfig, attach_lora, load_model, release, torch
from r3kit.rollout import reflection_conversation, retry_conversation
from r3kit.tasks import Task

LORA_TARGETS = LORA_TARGETS_DEFAULT


@dataclass
class TrainConfig:
    """Paper-like defaults. The paper's values are unknown; beta 0.001 is a guess from one summary
    (see shared notes), not a reported number."""

    steps: int = 300
    problems_per_step: int = 8  # B failed problems per optimizer step
    group_size: int = 8  # G reflections per failed attempt
    micro_batch_size: int = 8  # completions per forward/backward pass (gradient accumulation fills the rest)
    learning_rate: float = 5e-6
    beta: float = 0.001
    loss_type: str = "grpo"
    epsilon: float = 0.2
    scale_rewards: str = "group"
    max_grad_norm: float = 1.0
    lr_scheduler_type: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    reward_target: str = "reflection"  # "reflection" (R3) or "retry" (control)
    finetune: str = "lora"  # "lora" or "full"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = LORA_TARGETS
    reflection_tokens: int = 256
    retry_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    retry_temperature: float = 0.0  # R3 judges each reflection by the greedy retry, as evaluation does
    generation_batch_size: int = 64
    save_steps: int = 50
    optim: str = "adamw_torch_fused"  # TrainingArguments' default here; Unsloth's GPU config would default to adamw_8bit
    seed: int = 0

    def validate(self) -> None:
        if self.reward_target not in ("reflection", "retry"):
            raise ValueError(f"reward_target must be 'reflection' or 'retry', got {self.reward_target!r}")
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
        if self.steps < 1 or self.learning_rate <= 0 or self.beta < 0:
            raise ValueError(f"need steps >= 1, learning_rate > 0, beta >= 0; got {self.steps}, {self.learning_rate}, {self.beta}")
        if self.top_p != 1.0:
            raise ValueError(f"top_p must be 1.0, got {self.top_p}: TRL scores the trained completions at the temperature "
                             "alone, so nucleus sampling would train on another distribution than the one sampled")
        if self.temperature <= 0 or self.retry_temperature < 0:
            raise ValueError("reflections must be sampled (temperature > 0) so a group holds different reflections")
        if self.reward_target == "retry" and self.retry_temperature == 0:
            raise ValueError("reward_target='retry' trains on the retries, so they must be sampled: retry_temperature > 0")
        Sampling(self.reflection_tokens, self.temperature, self.top_p).validate()
        Sampling(self.retry_tokens, self.retry_temperature, self.top_p).validate()


def check_failures(task: Task, failures) -> None:
    """Clear errors, before any model is loaded, for a failure dataset training cannot use."""
    if type(task).verify is Task.verify:
        raise ValueError(f"task {task.name!r} has no verifier: R3's reward needs one")
    if failures is None or len(failures) == 0:
        raise ValueError("the failure dataset is empty: mining found no failed first attempts to train on")
    missing = [c for c in (*task.columns, "failed_attempt") if c not in failures.column_names]
    if missing:
        raise ValueError(f"the failure dataset lacks column(s) {missing}; it has {failures.column_names}")


def make_rollout(task: Task, cfg: TrainConfig, log: dict, live_lora_dir: str | Path, generator_factory=make_generator):
    """TRL rollout_func: reflections (and retries) for the prompts of one generation batch.
    On vLLM the live LoRA's adapter config goes to `live_lora_dir` (a folder of the run)."""

    def rollout(prompts, trainer):
        model = trainer.accelerator.unwrap_model(trainer.model)
        generator = generator_factory(model, trainer.processing_class, batch_size=cfg.generation_batch_size,
                                      live_lora_dir=str(live_lora_dir))
        start = time.perf_counter()
        seed = cfg.seed * 1_000_003 + trainer.state.global_step * 2
        reflections = generator.generate(prompts, Sampling(cfg.reflection_tokens, cfg.temperature, cfg.top_p, seed))
        retry_prompts = [retry_conversation(task, p, r.text) for p, r in zip(prompts, reflections)]
        retries = generator.generate(retry_prompts, Sampling(cfg.retry_tokens, cfg.retry_temperature, cfg.top_p, seed + 1))
        trained = reflections if cfg.reward_target == "reflection" else retries
        logprobs = [c.logprobs for c in trained]
        log.update(tokens_per_second=generator.stats.tokens_per_second, rollout_seconds=time.perf_counter() - start,
                   reflection_tokens=sum(len(r.token_ids) for r in reflections) / len(reflections),
                   retry_tokens=sum(len(r.token_ids) for r in retries) / len(retries))
        return {
            "prompt_ids": [c.prompt_ids for c in trained],
            "completion_ids": [c.token_ids for c in trained],
            "logprobs": None if any(lp is None for lp in logprobs) else logprobs,
            "reflection_text": [r.text for r in reflections],
            "retry_text": [r.text for r in retries],
        }

    return rollout


def make_reward(task: Task, log: dict):
    """The reward: the verifier's verdict on the retry that followed each reflection (1.0 or 0.0)."""

    def retry_success(prompts, completions, retry_text, log_metric=None, **columns):
        rewards = []
        for i, text in enumerate(retry_text):
            example = {c: columns[c][i] for c in task.columns}
            rewards.append(1.0 if task.verify(text, example).ok else 0.0)
        if log_metric is not None:
            for key in ("tokens_per_second", "rollout_seconds", "reflection_tokens", "retry_tokens"):
                if key in log:
                    log_metric(f"r3/{key}", log[key])
        return rewards

    return retry_success


def training_dataset(task: Task, failures):
    """The failure rows with the GRPO prompt (task + failed attempt + reflection request) added."""
    return failures.map(lambda row: {"prompt": reflection_conversation(task, {c: row[c] for c in task.columns},
                                                                        row["failed_attempt"])})


def precision(on_gpu: bool, bf16_supported: bool) -> dict:
    """TrainingArguments' device and precision flags: fp32 on CPU, bf16 where the card has it, else fp16
    (a T4 has no bf16; leaving both off there would train in fp32 against Unsloth's fp16 weights)."""
    if not on_gpu:
        return {"use_cpu": True, "bf16": False, "fp16": False}
    return {"use_cpu": False, "bf16": bf16_supported, "fp16": not bf16_supported}


def build_trainer(model, tokenizer, task: Task, failures, cfg: TrainConfig, out_dir: str | Path,
                  generator_factory=make_generator):
    """A TRL GRPOTrainer wired for R3 (model must already carry LoRA adapters, or be fully trainable).
    `generator_factory(model, tokenizer, batch_size=..., live_lora_dir=...)` makes the rollout's generator
    (tests script it)."""
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl import GRPOConfig, GRPOTrainer

    from r3kit.train_log import CsvLogCallback  # transformers: imported only once a model is loaded

    cfg.validate()
    check_failures(task, failures)
    out_dir = Path(out_dir)
    on_gpu = torch.cuda.is_available()
    args = GRPOConfig(
        output_dir=str(out_dir / "checkpoints"), max_steps=cfg.steps, seed=cfg.seed,
        per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=cfg.problems_per_step * cfg.group_size // cfg.micro_batch_size,
        num_generations=cfg.group_size, learning_rate=cfg.learning_rate, beta=cfg.beta, loss_type=cfg.loss_type,
        epsilon=cfg.epsilon, scale_rewards=cfg.scale_rewards, max_grad_norm=cfg.max_grad_norm,
        lr_scheduler_type=cfg.lr_scheduler_type, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
        temperature=cfg.temperature if cfg.reward_target == "reflection" else max(cfg.retry_temperature, 1e-3),
        max_completion_length=cfg.reflection_tokens if cfg.reward_target == "reflection" else cfg.retry_tokens,
        logging_steps=1, save_strategy="steps", save_steps=cfg.save_steps, report_to=[],
        **precision(on_gpu, on_gpu and torch.cuda.is_bf16_supported()), optim=cfg.optim,
        gradient_checkpointing=False, disable_tqdm=False,
    )
    log: dict = {}
    trainer = GRPOTrainer(
        model=model, processing_class=tokenizer, args=args, train_dataset=training_dataset(task, failures),
        reward_funcs=[make_reward(task, log)],
        rollout_func=make_rollout(task, cfg, log, out_dir / "live_lora", generator_factory),
    )
    trainer.add_callback(CsvLogCallback(out_dir / "log.csv"))
    return trainer


def last_checkpoint(out_dir: str | Path) -> str | None:
    checkpoints = sorted((Path(out_dir) / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return str(checkpoints[-1]) if checkpoints else None


def train(model_cfg: ModelConfig, task: Task, failures, cfg: TrainConfig, out_dir: str | Path,
          generator_factory=make_generator) -> dict:
    """Train on `failures`, resuming from the last checkpoint in out_dir; saves adapter/ (or model/),
    config.json and log.csv; returns a summary."""
    cfg.validate()
    check_failures(task, failures)
    out_dir = Path(out_dir)
    full = cfg.finetune == "full"
    model, tokenizer = load_model(model_cfg, full_finetuning=full)
    if not full:
        model = attach_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, list(cfg.target_modules), cfg.seed)
    write_json(out_dir / "config.json", {"model": asdict(model_cfg), "train": asdict(cfg), "task": task.name,
                                         "prompt_style": task.style, "failures": len(failures)})
    trainer = build_trainer(model, tokenizer, task, failures, cfg, out_dir, generator_factory)
    from r3kit.train_log import truncate_log  # after load_model: train_log imports transformers

    resume = last_checkpoint(out_dir)
    truncate_log(out_dir / "log.csv", after_step=int(resume.rsplit("-", 1)[1]) if resume else 0)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    final = out_dir / ("model" if full else "adapter")
    trainer.save_model(str(final))
    tokenizer.save_pretrained(str(final))
    summary = {"steps": trainer.state.global_step, "resumed_from": resume, "saved": str(final),
               "wall_seconds": time.perf_counter() - start,
               "epochs": trainer.state.global_step * cfg.problems_per_step / len(failures)}
    release(trainer.model)
    del model, trainer
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))  # last: its presence means training finished
    return summary
