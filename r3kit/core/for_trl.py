"""R3 inside your own TRL GRPOTrainer: the prompts, the rollout and the reward, and nothing else of the kit.

For each failed problem (a row with the task's columns and its `failed_attempt`), TRL's group of G samples is
G reflections on that failure; the rollout then generates each reflection's retry with the current policy and
the reward is the task's verdict on that retry. Only the reflection is the completion TRL trains on, so only
reflection tokens carry gradient. In about fifteen lines:

    from trl import GRPOConfig, GRPOTrainer
    from r3kit import get_task, r3_for_trl

    task = get_task("mypkg.tasks:SortTask")                 # or "countdown", or "path/to/file.py:SortTask"
    r3 = r3_for_trl(task, failures, reflection_tokens=64, retry_tokens=32)
    args = GRPOConfig(output_dir="out", max_steps=100, num_generations=8, per_device_train_batch_size=8,
                      temperature=r3.temperature, max_completion_length=r3.max_completion_length)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=args, train_dataset=r3.dataset,
                          reward_funcs=r3.reward_funcs, rollout_func=r3.rollout_func)
    trainer.train()

`failures` can come from r3kit's mining (r3kit.core.mining.mine_failures) or from anywhere else. Generation runs
through r3kit's generator: transformers, or Unsloth's vLLM engine when the model carries one. The arms the
kit compares (plain GRPO, the retry-reward control) are `reward_target="attempt"` and `"retry"`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from r3kit.core.trainer import (
    TrainConfig,
    check_failures,
    live_lora_folder,
    make_reward,
    make_rollout,
    training_dataset,
)
from r3kit.tasks import Task, get_task


@dataclass
class R3ForTRL:
    """What GRPOTrainer takes: `train_dataset=dataset, reward_funcs=reward_funcs, rollout_func=rollout_func`;
    GRPOConfig must use `temperature` and `max_completion_length` (the rollout checks them each step)."""

    dataset: Any
    rollout_func: Any
    reward_funcs: list
    temperature: float
    max_completion_length: int
    config: TrainConfig


def r3_for_trl(task: Task | str, failures, output_dir: str | Path = "r3-trl", **settings) -> R3ForTRL:
    """R3's pieces for a plain TRL GRPOTrainer. `settings` are TrainConfig's generation fields (reflection_tokens,
    retry_tokens, attempt_tokens, temperature, retry_temperature, generation_batch_size, seed, reward_target,
    shared_reflection); the optimisation settings belong to your GRPOConfig."""
    task = get_task(task) if isinstance(task, str) else task
    generation = {"reflection_tokens", "retry_tokens", "attempt_tokens", "temperature", "retry_temperature",
                  "generation_batch_size", "seed", "reward_target", "shared_reflection", "group_size"}
    unknown = sorted(set(settings) - generation)
    if unknown:
        known = sorted(generation & {f.name for f in fields(TrainConfig)})
        raise ValueError(f"r3_for_trl takes generation settings only; unknown: {unknown}; known: {known} (optimisation "
                         "settings go in your GRPOConfig)")
    cfg = replace(TrainConfig(report_to="none", micro_batch_size=1, problems_per_step=1), **settings)
    cfg.validate()
    check_failures(task, failures)
    log: dict = {}
    rollout = make_rollout(task, cfg, log, live_lora_folder(output_dir))

    def rollout_func(prompts, trainer):
        args = trainer.args
        if abs(args.temperature - max(cfg.completion_temperature, 1e-3)) > 1e-9:
            raise ValueError(f"GRPOConfig.temperature is {args.temperature}, but the rollout samples at "
                             f"{cfg.completion_temperature}: TRL would score the completions at another temperature "
                             "than they were sampled; pass temperature=r3.temperature")
        if cfg.shared_reflection and args.num_generations != cfg.group_size:
            raise ValueError(f"shared_reflection groups by group_size={cfg.group_size}, but GRPOConfig.num_generations "
                             f"is {args.num_generations}")
        return rollout(prompts, trainer)

    return R3ForTRL(dataset=training_dataset(task, failures, cfg.reward_target), rollout_func=rollout_func,
                    reward_funcs=[make_reward(task, log)], temperature=max(cfg.completion_temperature, 1e-3),
                    max_completion_length=cfg.completion_tokens, config=cfg)
