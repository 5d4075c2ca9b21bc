"""GPU profiles for the paper's models, one per (model, task, card), named "<model>-<task>-<card>".

Cards: `t4` (16 GB, Colab's free card, no bf16), `a100-40gb` (Colab's A100) and `a100` (80 GB, a
workstation or cloud A100/H100). How they are sized (memory in GB; B = billions of parameters):
  * weights: 2 GB per B in 16-bit, about 0.7 GB per B in 4-bit (NF4, embeddings and head kept 16-bit);
    load in 4-bit when 16-bit weights would take more than a third of the card: on a T4 every model
    above 2B, on a 40 GB A100 the 7B-8B models, on an 80 GB A100 none.
  * generation runs in Unsloth's colocated vLLM engine (fast_inference), which shares the weights with
    training and takes `gpu_memory_utilization` of the card for itself and its KV cache: 0.5 on a T4,
    0.6 on an A100. What is left holds LoRA, optimizer states and training activations.
  * the KV cache is what vLLM's share leaves after the weights and about 1 GB of its own (sampling buffers, CUDA
    graphs): KV_GB = card x gpu_memory_utilization - weights - 1. A token costs 2 (K and V) x layers x key/value
    heads x head size x 2 bytes, read from each model's config (ATTENTION): 28 KiB for Qwen2.5-1.5B, 128 KiB
    for Llama-3.1-8B, 384 KiB for Phi-3.5-mini (32 key/value heads: no grouped-query attention). A step's
    rollout (problems_per_step x group_size sequences of max_seq_length tokens) is meant to fit the cache at
    once; where it does not, problems_per_step shrinks to what fits (whole groups, and a multiple the
    micro-batch needs), and where not even one group of 8 fits, the profile is not offered (NOT_FITTING gives
    the numbers). So Phi-3.5-mini trains one problem a step on a T4 for Countdown and is refused for APIGen.
  * 7B-8B models do not fit a T4 this way (4-bit weights of 5-6 GB leave vLLM about 1 GB of KV cache):
    those profiles are not offered (NOT_FITTING says why); use a100-40gb. Unsloth's own 8B-on-T4 recipe
    (standby vLLM at 0.9 utilisation, batch 1, 8-bit paged AdamW) trades most of the run's throughput; with
    UNSLOTH_VLLM_STANDBY=1 vLLM sleeps while the trainer steps, so its share could rise to 0.9, which the
    kit has not tried (no T4 run yet).
  * activations scale with completions per forward pass x sequence length x model width, so the
    micro-batch halves as the model doubles: T4 8 / 4, A100-40 16 / 8 / 4 and A100-80 32 / 16 / 8
    completions for models up to 2B / up to 4B / up to 8B, with gradient checkpointing on.
  * a step takes 4 (T4), 8 (A100-40) or 16 (A100-80) failed problems with groups of 8 reflections (the
    group size most GRPO work uses; the paper's is unknown).
  * sequence budget: the context must hold prompt + attempt + reflection + retry (checked when a profile
    resolves, and again against the real tokenizer before a model loads). Countdown: 384 / 192 / 384
    tokens on a T4 in a 1280-token context, 512 / 256 / 512 in 2048 elsewhere; APIGen prompts carry tool
    schemas, hence a 3072 (T4) or 4096 context with the same turn lengths.
  * test sets are the paper's (15,000 Countdown, 12,000 APIGen rows) on an A100 and 2,000 on a T4,
    where evaluating 15,000 problems three ways would take most of a Colab session.
Learning rate 5e-6 with LoRA rank 16 (T4) or 32 (A100), alpha twice the rank, KL weight 0.001 (a guess).
Precision follows the card: bf16 where it has it, fp16 on a T4 (train.precision).
Forgetting check: the paper's four benchmarks through lm-eval (mmlu_pro, gsm8k, hellaswag, minerva_math, with
the model's chat template, in a 4,096-token context: mmlu_pro lets an answer run to 2,048 tokens), `limit`
examples per task and per subject of a group: 10 on a T4, 50 on a 40 GB
A100, 100 on an 80 GB A100, i.e. 220 / 1,100 / 2,200 generated answers (mostly chain of thought) plus
hellaswag's choices per model, for vanilla and each trained arm. lm-eval generates through transformers
(HFLM), not vLLM, so these are estimates from answer counts, not timings: raise them when time allows.
"""

from __future__ import annotations

from typing import Any

from r3kit.eval.forgetting import PAPER_BENCHMARKS

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
GPUS = {"t4": 16, "a100-40gb": 40, "a100": 80}
# short name -> (layers, key/value heads, head size), from each model's config.json (head size = hidden / heads)
ATTENTION = {
    "qwen2.5-1.5b": (28, 2, 128), "qwen2.5-3b": (36, 2, 128), "qwen2.5-7b": (28, 4, 128), "qwen2-1.5b": (28, 2, 128),
    "qwen2-7b": (28, 4, 128), "llama3.1-8b": (32, 8, 128), "phi3.5-mini": (32, 32, 96),
}
VLLM_OWN_GB = 1.0
GROUP = 8
MICRO_BATCH = {"t4": (8, 4, None), "a100-40gb": (16, 8, 4), "a100": (32, 16, 8)}
PROBLEMS_PER_STEP = {"t4": 4, "a100-40gb": 8, "a100": 16}
FORGETTING_LIMIT = {"t4": 10, "a100-40gb": 50, "a100": 100}


def fits(params_b: float, gpu: str) -> bool:
    return MICRO_BATCH[gpu][_klass(params_b)] is not None


def kv_bytes_per_token(short: str) -> int:
    layers, kv_heads, head_dim = ATTENTION[short]
    return 2 * layers * kv_heads * head_dim * 2


def load_in_4bit(params_b: float, gpu: str) -> bool:
    return 2 * params_b > GPUS[gpu] / 3


def kv_cache_tokens(short: str, gpu: str) -> int:
    """Tokens of KV cache vLLM has on `gpu` beside the model's weights (module docstring)."""
    params_b = MODELS[short][1]
    weights = params_b * (0.7 if load_in_4bit(params_b, gpu) else 2.0)
    free = GPUS[gpu] * (0.5 if gpu == "t4" else 0.6) - weights - VLLM_OWN_GB
    return max(0, int(free * 2**30 / kv_bytes_per_token(short)))


def context(gpu: str, task: str) -> int:
    small = gpu == "t4"
    return (3072 if small else 4096) if task == "function_calling" else 1280 if small else 2048


def problems_per_step(short: str, gpu: str, task: str) -> int:
    """The card's problems per step, or fewer where the KV cache cannot hold the step's rollout at once (0: not
    even one group)."""
    micro = MICRO_BATCH[gpu][_klass(MODELS[short][1])]
    groups = kv_cache_tokens(short, gpu) // (GROUP * context(gpu, task))
    unit = max(1, micro // GROUP)  # problems * GROUP must be a multiple of the micro-batch
    return min(PROBLEMS_PER_STEP[gpu], groups // unit * unit)


def _klass(params_b: float) -> int:
    return 0 if params_b <= 2 else 1 if params_b <= 4 else 2


def size(short: str, gpu: str, task: str) -> dict[str, Any]:
    """The sections of one GPU profile, by the rules in this module's docstring."""
    params_b = MODELS[short][1]
    small = gpu == "t4"
    turns = (384, 192, 384) if small else (512, 256, 512)
    attempt, reflection, retry = turns
    return {
        "model": {"load_in_4bit": load_in_4bit(params_b, gpu), "fast_inference": True,
                  "max_seq_length": context(gpu, task),
                  "gpu_memory_utilization": 0.5 if small else 0.6, "max_lora_rank": 16 if small else 32},
        "data": {"source": "hub", "n_test": 2000 if small else TASKS_TEST[task], "n_train": 4000 if small else 20_000},
        "episode": {"attempt_tokens": attempt, "reflection_tokens": reflection, "retry_tokens": retry},
        "evaluate": {"batch_size": 64 if small else 256},
        "mine": {"k": 8, "keep": "any", "temperature": 1.0, "chunk_size": 256},
        "train": {"steps": 300 if small else 500, "problems_per_step": problems_per_step(short, gpu, task),
                  "group_size": GROUP, "save_total_limit": 2,
                  "micro_batch_size": MICRO_BATCH[gpu][_klass(params_b)], "learning_rate": 5e-6,
                  "beta": 0.001, "lora_config": {"r": 16 if small else 32, "lora_alpha": 32 if small else 64},
                  "temperature": 1.0, "retry_temperature": 0.0,
                  "generation_batch_size": 256, "save_steps": 25},
        "control": {"reward_target": "retry", "retry_temperature": 1.0, "shared_reflection": True},
        "forgetting": {"tasks": list(PAPER_BENCHMARKS), "limit": FORGETTING_LIMIT[gpu], "batch_size": 8 if small else 32,
                       "max_length": 4096, "apply_chat_template": True},
    }


TASKS_TEST = {task: test for task, test in TASKS.values()}


def _card(gpu: str) -> str:
    return {"t4": "a T4", "a100-40gb": "a 40 GB A100", "a100": "an 80 GB A100"}[gpu]


def _refusal(short: str, gpu: str, task_short: str) -> str | None:
    hub_id, params_b = MODELS[short]
    task = TASKS[task_short][0]
    instead = f"use {short}-{task_short}-a100-40gb or a bigger card"
    if not fits(params_b, gpu):
        return f"{hub_id} ({params_b}B) does not fit {_card(gpu)} with colocated vLLM: {instead}"
    if problems_per_step(short, gpu, task) == 0:
        need = GROUP * context(gpu, task)
        return (f"{hub_id} needs {kv_bytes_per_token(short) // 1024} KiB of KV cache a token; {_card(gpu)} leaves vLLM "
                f"room for about {kv_cache_tokens(short, gpu):,} tokens, and one group of {GROUP} reflections at "
                f"{context(gpu, task):,} tokens needs {need:,}: {instead}")
    return None


NOT_FITTING = {
    f"{short}-{task_short}-{gpu}": why
    for short in MODELS for task_short in TASKS for gpu in GPUS
    if (why := _refusal(short, gpu, task_short)) is not None
}


# An ASSUMED vLLM decoding throughput (generated tokens a second, batched) for a 1.5B model; larger models are taken
# as proportionally slower. Not measured on these cards: the only GPU measurement is an H200 with transformers
# generation on the kit's 1.8M-parameter student (docs/experiments/README.md). Replace it with what a first run shows.
ASSUMED_TOKENS_PER_SECOND_1_5B = {"t4": 1_500, "a100-40gb": 6_000, "a100": 6_000}


def stage_estimates(run) -> dict[str, dict[str, float]]:
    """Per stage: an upper bound on the tokens it generates (every turn at its full length) and, for a GPU profile,
    the minutes that takes at the ASSUMED throughput above (an estimate, not a measurement)."""
    e, m = run.evaluate, run.mine
    tokens = {"evaluate (each model)": run.data.n_test * (e.attempt_tokens + e.reflection_tokens + 3 * e.retry_tokens),
              "mine": (run.data.n_train or 0) * m.k * m.attempt_tokens}
    for name, cfg in (("train r3", run.train), ("train grpo", run.grpo), ("train control", run.control)):
        if cfg is not None:
            per = cfg.attempt_tokens if cfg.reward_target == "attempt" else cfg.reflection_tokens + cfg.retry_tokens
            tokens[name] = cfg.steps * cfg.problems_per_step * cfg.group_size * per
    short = next((s for s in sorted(MODELS, key=len, reverse=True) if run.profile.startswith(s + "-")), None)
    gpu = next((g for g in sorted(GPUS, key=len, reverse=True) if run.profile.endswith("-" + g)), None)
    rate = (ASSUMED_TOKENS_PER_SECOND_1_5B[gpu] * 1.5 / MODELS[short][1]) if short and gpu else None
    return {stage: {"tokens": n, **({"minutes": n / rate / 60} if rate else {})} for stage, n in tokens.items()}


def gpu_profiles() -> dict[str, dict[str, Any]]:
    profiles = {}
    for short, (hub_id, _) in MODELS.items():
        for task_short, (task, _) in TASKS.items():
            for gpu in GPUS:
                if f"{short}-{task_short}-{gpu}" in NOT_FITTING:
                    continue
                spec = size(short, gpu, task)
                spec["model"]["name"] = hub_id
                profiles[f"{short}-{task_short}-{gpu}"] = {
                    "description": f"{hub_id} on {'Countdown' if task == 'countdown' else 'APIGen function calling'}, "
                                   f"sized for {_card(gpu)} ({GPUS[gpu]} GB)",
                    "task": task, "prompt_style": "instruct", **spec,
                }
    return profiles
