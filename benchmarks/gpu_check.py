"""The GPU path on one CUDA card, in one process: what ran, what broke, and how long each part took.

    python benchmarks/gpu_check.py RUN_DIR OUT_JSON

RUN_DIR must hold a trained student (student/, made by `student_stage` of cpu-demo: a model with partial
Countdown skill, so GRPO groups can hold both passing and failing retries). Parts, each timed, each
recorded even when it fails:
  1. a tiny random Qwen2 through Unsloth's GPU loader (dtype auto), LoRA with Unsloth's gradient
     checkpointing, and a sampled group of 8 identical prompts (must not be 8 copies of one sample);
  2. the cpu-demo pipeline on the student with LoRA and the card's precision: vanilla evaluation,
     failure mining, 3 R3 GRPO steps through Unsloth's patched trainer (per-step reward spread inside the
     groups, read from TRL's log), the saved adapter evaluated;
  3. the two control arms at the same budget through the same trainer: plain GRPO on first attempts
     (reward_target "attempt") and the fair retry-reward control (one greedy reflection shared per group);
     every arm's checkpoints scored on the validation split, the chosen and the last weights on test;
  4. the forgetting check through lm-evaluation-harness (HFLM on the card): vanilla and the three arms'
     LoRA adapters on r3kit's Countdown harness tasks (200 examples each), forgetting.json complete.
     It needs lm-eval (the `forgetting` extra) on the GPU machine.
Generation is transformers' (fast_inference off), so it needs no vLLM; the vLLM path is what the profiles'
`fast_inference` adds on top.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path


def main(run_dir: str, out_json: str) -> int:
    report: dict = {"parts": {}}

    def record(name, fn):
        start = time.perf_counter()
        try:
            report["parts"][name] = {"ok": True, "result": fn()}
        except Exception as error:  # the report says what broke and goes on
            report["parts"][name] = {"ok": False, "error": f"{type(error).__name__}: {error}",
                                     "traceback": traceback.format_exc()[-3000:]}
        report["parts"][name]["seconds"] = round(time.perf_counter() - start, 2)
        Path(out_json).write_text(json.dumps(report, indent=2, default=str))
        print(name, json.dumps(report["parts"][name], default=str)[:1500], flush=True)

    def environment():
        import torch

        import r3kit.models.loading

        r3kit.models.loading.fast_language_model()
        from importlib import metadata

        return {"gpu": torch.cuda.get_device_name(0), "bf16": torch.cuda.is_bf16_supported(),
                "versions": {p: metadata.version(p) for p in ("torch", "transformers", "trl", "peft", "unsloth",
                                                              "unsloth_zoo", "datasets", "accelerate")}}

    def tiny_random_qwen2():
        from r3kit.models.generation import HFGenerator, Sampling
        from r3kit.models.loading import ModelConfig, attach_lora, build_char_model, load_model, save_model

        folder = Path(run_dir) / "tiny-qwen2"
        save_model(*build_char_model(hidden=256, layers=4, heads=8), folder)
        model, tokenizer = load_model(ModelConfig(name=str(folder)))
        loaded = {"dtype": str(model.dtype), "device": str(next(model.parameters()).device)}
        model = attach_lora(model, {"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]})
        group = [[{"role": "user", "content": "37 49 5 = 60"}]] * 8
        outs = HFGenerator(model, tokenizer).generate(group, Sampling(max_new_tokens=24, temperature=1.0, seed=1))
        return {**loaded, "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
                "distinct_samples_of_8": len({tuple(o.token_ids) for o in outs})}

    from r3kit.runs.profiles import resolve

    run = resolve("cpu-demo", run_dir, {
        "model": {"dtype": "auto"},
        "data": {"n_train": 2000, "n_validation": 200},
        "evaluate": {"n_examples": 500},
        "mine": {"chunk_size": 2000},
        "train": {"steps": 3, "finetune": "lora", "problems_per_step": 16, "group_size": 8, "micro_batch_size": 32,
                  "learning_rate": 1e-4, "lora_config": {"r": 16, "lora_alpha": 32}, "save_steps": 1},
        "grpo": {"reward_target": "attempt", "attempt_tokens": 56},
        "select": {"metric": "second_try", "n_examples": 200},
        "forgetting": {"limit": 200, "compare": ["trained", "grpo", "retry_control"]},
    })

    def evaluate(which):
        from r3kit.runs.pipeline import evaluate_stage

        metrics = evaluate_stage(run, which)
        return {k: metrics[k] for k in ("first_try", "second_try", "generation", "wall_seconds") if k in metrics}

    def mine():
        from r3kit.runs.pipeline import mine_stage

        return mine_stage(run)

    def train(arm):
        from r3kit.runs.pipeline import train_stage, variant_name

        summary = train_stage(run, arm)
        folder = run.run_dir / "train" / variant_name(arm) / "checkpoints" / "checkpoint-3"
        state = json.loads((folder / "trainer_state.json").read_text())
        keys = ("step", "reward", "reward_std", "frac_reward_zero_std", "step_time", "r3/rollout_seconds", "loss",
                "grad_norm", "completions/mean_length")
        summary["steps_logged"] = [{k: row.get(k) for k in keys} for row in state["log_history"] if "reward" in row]
        return summary

    def selection(which):
        from r3kit.runs.pipeline import select_stage

        chosen = select_stage(run, which)
        return {k: chosen[k] for k in ("split", "n", "scores", "selected", "last")}

    record("environment", environment)
    record("tiny_random_qwen2", tiny_random_qwen2)
    record("evaluate_vanilla", lambda: evaluate("vanilla"))
    record("mine", mine)
    record("train_r3_3_steps", lambda: train("r3"))
    record("select_r3_on_validation", lambda: selection("trained"))
    record("evaluate_trained_adapter", lambda: evaluate("trained"))
    for arm, which in (("grpo", "grpo"), ("retry_control", "retry_control")):
        record(f"train_{arm}_3_steps", lambda arm=arm: train(arm))
        record(f"select_{arm}_on_validation", lambda which=which: selection(which))
        record(f"evaluate_{arm}", lambda which=which: evaluate(which))

    def forgetting_check():
        from r3kit.runs.pipeline import forgetting_stage

        summary = forgetting_stage(run)
        return {"models": summary["models"], "tasks": {task: {name: s["value"] for name, s in entry["scores"].items()}
                                                       for task, entry in summary["tasks"].items()}}

    record("forgetting_lm_eval", forgetting_check)
    failed = [name for name, part in report["parts"].items() if not part["ok"]]
    print("failed parts:", failed or "none")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
