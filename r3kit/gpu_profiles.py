"""GPU profiles for the paper's models, one per (model, task, GPU), named "<model>-<task>-<gpu>".

How they are sized (memory in GB; B = billions of parameters):
  * weights: 2 GB per B in 16-bit, about 0.7 GB per B in 4-bit (NF4, embeddings and head kept 16-bit);
    load in 4-bit when 16-bit weights would take more than a third of the card: on a 16 GB T4 that is
    every model above 2B, on an 80 GB A100 none of these (the largest, 8B, is 16 GB in 16-bit).
  * generation runs in Unsloth's colocated vLLM engine (fast_inference), which shares the weights with
    training and takes `gpu_memory_utilization` of the card for itself and its KV cache: 0.5 on a T4,
    0.6 on an A100. What is left holds LoRA, optimizer states and training activations.
  * activations scale with completions per forward pass x sequence length x model width, so the
    micro-batch halves as the model doubles: T4 8 / 4 / 2 and A100 32 / 16 / 8 completions for
    models up to 2B / up to 4B / up to 8B, with gradient checkpointing on.
  * a step takes 4 (T4) or 16 (A100) failed problems with groups of 8 reflections (the group size most
    GRPO work uses; the paper's is unknown), so 32 or 128 rollouts a step.
  * sequence budget: Countdown prompts are short (attempt 512, reflection 256, retry 512 tokens on an
    A100; 384 / 192 / 384 on a T4); APIGen prompts carry tool schemas, hence a 4096 (A100) or 3072 (T4)
    context with the same turn lengths.
  * test sets are the paper's (15,000 Countdown, 12,000 APIGen rows) on an A100 and 2,000 on a T4,
    where evaluating 15,000 problems three ways would take most of a Colab session.
Learning rate 5e-6 with LoRA rank 16 (T4) or 32 (A100), alpha twice the rank, KL weight 0.001.
"""

from __future__ import annotations

from typing import Any

MODELS = {  # short name -> (hub id, billions of parameters)
    "qwen2.5-1.5b": ("Qwen/Qwen2.5-1.5B-Instruct", 1.5),
    "qwen2.5-3b": ("Qwen/Qwen2.5-3B-Instruct", 3.1),
    "qwen2.5-7b": ("Qwen/Qwen2.5-7B-Instruct", 7.6),
    "qwen2-1.5b": ("Qwen/Qwen2-1.5B-Instruct", 1.5),
    "qwen2-7b": ("Qwen/Qwen2-7B-Instruct", 7.6),
    "llama3.1-8b": ("meta-llama/Llama-3.1-8B-Instruct", 8.0),
    "phi3.5-mini": ("microsoft/Phi-3.5-mini-instruct", 3.8),
}
TASKS = {"countdown": ("countdown", 15_000), "apigen": ("function_calling", 12_000)}
GPUS = {"t4": 16, "a100": 80}


def size(params_b: float, gpu: str, task: str) -> dict[str, Any]:
    """The sections of one GPU profile, by the rules in this module's docstring."""
    memory = GPUS[gpu]
    small = gpu == "t4"
    klass = 0 if params_b <= 2 else 1 if params_b <= 4 else 2
    turns = (384, 192, 384) if small else (512, 256, 512)
    attempt, reflection, retry = turns
    context = (3072 if small else 4096) if task == "function_calling" else 1024 if small else 2048
    return {
        "model": {"load_in_4bit": 2 * params_b > memory / 3, "fast_inference": True, "max_seq_length": context,
                  "gpu_memory_utilization": 0.5 if small else 0.6, "max_lora_rank": 16 if small else 32},
        "data": {"source": "hub", "n_test": 2000 if small else TASKS_TEST[task], "n_train": 4000 if small else 20_000},
        "evaluate": {"attempt_tokens": attempt, "reflection_tokens": reflection, "retry_tokens": retry,
                     "batch_size": 64 if small else 256},
        "mine": {"k": 8, "keep": "any", "attempt_tokens": attempt, "temperature": 1.0, "chunk_size": 256},
        "train": {"steps": 300 if small else 500, "problems_per_step": 4 if small else 16, "group_size": 8,
                  "micro_batch_size": ((8, 4, 2) if small else (32, 16, 8))[klass], "learning_rate": 5e-6,
                  "beta": 0.001, "lora_r": 16 if small else 32, "lora_alpha": 32 if small else 64,
                  "reflection_tokens": reflection, "retry_tokens": retry, "temperature": 1.0, "retry_temperature": 0.0,
                  "generation_batch_size": 256, "save_steps": 25},
        "control": {"reward_target": "retry", "retry_temperature": 1.0},
    }


TASKS_TEST = {task: test for task, test in TASKS.values()}


def gpu_profiles() -> dict[str, dict[str, Any]]:
    profiles = {}
    for short, (hub_id, params_b) in MODELS.items():
        for task_short, (task, _) in TASKS.items():
            for gpu in GPUS:
                spec = size(params_b, gpu, task)
                spec["model"]["name"] = hub_id
                profiles[f"{short}-{task_short}-{gpu}"] = {
                    "description": f"{hub_id} on {'Countdown' if task == 'countdown' else 'APIGen function calling'}, "
                                   f"sized for {'a T4' if gpu == 't4' else 'an A100'} ({GPUS[gpu]} GB)",
                    "task": task, "prompt_style": "instruct", **spec,
                }
    return profiles
