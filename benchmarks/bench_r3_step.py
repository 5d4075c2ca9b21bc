"""One R3 training step vs one plain TRL GRPO step that generates as many tokens, same model, CPU.

R3 generates a reflection (L tokens) and a retry (L tokens) per rollout and trains on the reflection;
plain GRPO generates one completion of 2L tokens per rollout and trains on all of it. Both run through
Unsloth + TRL's GRPOTrainer with the same model, batch, group size and LoRA. The tiny random model is the
default because it almost never emits EOS early, so both really generate their maximum; the printed
token counts say how close they came.

    .venv/bin/python benchmarks/bench_r3_step.py [--model tiny] [--tokens 32] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import datasets

from r3kit.core.trainer import GRPO_PINNED, TrainConfig, build_trainer
from r3kit.data import DataConfig, load_split
from r3kit.models.loading import ModelConfig, attach_lora, load_model
from r3kit.tasks import get_task


def mean_step_time(trainer, skip: int = 1) -> float:
    times = [h["step_time"] for h in trainer.state.log_history if "step_time" in h]
    return sum(times[skip:]) / len(times[skip:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--tokens", type=int, default=32, help="L: reflection and retry length (plain GRPO: 2L)")
    parser.add_argument("--steps", type=int, default=4, help="steps per trainer; the first is warm-up")
    parser.add_argument("--problems", type=int, default=4)
    parser.add_argument("--group", type=int, default=8)
    args = parser.parse_args()

    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl import GRPOConfig, GRPOTrainer

    task = get_task("countdown", style="compact")
    rows = [dict(r) for r in load_split(DataConfig(n_test=1, n_train=args.problems * args.steps, seed=2), "train")]
    failures = datasets.Dataset.from_list([{**r, "failed_attempt": "<answer>1</answer>"} for r in rows])
    cfg = TrainConfig(steps=args.steps, problems_per_step=args.problems, group_size=args.group,
                      micro_batch_size=args.problems * args.group, learning_rate=1e-5, grpo_config={**GRPO_PINNED, "beta": 0.0},
                      reflection_tokens=args.tokens, retry_tokens=args.tokens, generation_batch_size=64, save_steps=10_000)

    def lora_model():
        model, tokenizer = load_model(ModelConfig(name=args.model, dtype="float32"))
        return attach_lora(model, cfg.lora_config), tokenizer

    model, tokenizer = lora_model()
    with tempfile.TemporaryDirectory() as out:
        r3 = build_trainer(model, tokenizer, task, failures, cfg, out)
        start = time.perf_counter()
        r3.train()
        r3_total = time.perf_counter() - start
    r3_tokens = [h["r3/reflection_tokens"] + h["r3/retry_tokens"] for h in r3.state.log_history if "r3/retry_tokens" in h]

    model, tokenizer = lora_model()
    prompts = datasets.Dataset.from_list([{**r, "prompt": task.first_messages(r)} for r in rows])

    def verdict(prompts, completions, target, nums, **_):
        return [1.0 if task.verify(c[0]["content"], {"target": t, "nums": n}).ok else 0.0
                for c, t, n in zip(completions, target, nums)]

    with tempfile.TemporaryDirectory() as out:
        plain = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[verdict], train_dataset=prompts,
                            args=GRPOConfig(output_dir=out, max_steps=args.steps, per_device_train_batch_size=cfg.micro_batch_size,
                                            num_generations=args.group, max_completion_length=2 * args.tokens,
                                            learning_rate=1e-5, beta=0.0, use_cpu=True, bf16=False, report_to=[],
                                            logging_steps=1, save_strategy="no", temperature=1.0, top_k=0))
        start = time.perf_counter()
        plain.train()
        plain_total = time.perf_counter() - start
    plain_tokens = [h["completions/mean_length"] for h in plain.state.log_history if "completions/mean_length" in h]

    r3_step, plain_step = mean_step_time(r3), mean_step_time(plain)
    print(f"R3 step         {r3_step:6.3f} s   generated {sum(r3_tokens[1:]) / len(r3_tokens[1:]):.1f} tokens per rollout")
    print(f"plain GRPO step {plain_step:6.3f} s   generated {sum(plain_tokens[1:]) / len(plain_tokens[1:]):.1f} tokens per rollout")
    print(f"R3 / plain GRPO = {r3_step / plain_step:.2f}x per step  (model {args.model}, {args.problems} problems x "
          f"group {args.group}, L = {args.tokens}; mean of steps 2-{args.steps})")
    print(json.dumps({"ratio": r3_step / plain_step, "r3_step_seconds": r3_step, "plain_step_seconds": plain_step,
                      "r3_tokens_per_rollout": r3_tokens, "plain_tokens_per_rollout": plain_tokens,
                      "r3_total_seconds": r3_total, "plain_total_seconds": plain_total}))


if __name__ == "__main__":
    main()
