"""The per-step training record: one CSV row per optimizer step, written as TRL logs it.

Columns: step, reward (mean over the step's rollouts), retry_success (the verifier's pass rate on the
retries; equal to reward because the reward is that verdict), frac_zero_std (groups whose G rewards are
all equal, which carry no GRPO signal), reflection_tokens, retry_tokens, completion_tokens (the trained
turn), kl, entropy, loss, grad_norm, learning_rate, step_time (seconds), rollout_seconds (the part of
the step spent generating reflections and retries), tokens_per_second (generation), generated_tokens
(every token the step's rollout generated, trained or not).
On resume, rows after the checkpoint's step are dropped first, so the file never holds a step twice.
"""

from __future__ import annotations

import csv
from pathlib import Path

from transformers import TrainerCallback

COLUMNS = {
    "step": None, "reward": "reward", "retry_success": "rewards/retry_success/mean",
    "frac_zero_std": "frac_reward_zero_std", "reflection_tokens": "r3/reflection_tokens",
    "retry_tokens": "r3/retry_tokens", "completion_tokens": "completions/mean_length", "kl": "kl",
    "entropy": "entropy", "loss": "loss", "grad_norm": "grad_norm", "learning_rate": "learning_rate",
    "step_time": "step_time", "rollout_seconds": "r3/rollout_seconds", "tokens_per_second": "r3/tokens_per_second",
    "generated_tokens": "r3/step_generated_tokens",
}


def truncate_log(path: str | Path, after_step: int) -> None:
    """Drop rows with step > after_step (all rows when after_step == 0)."""
    path = Path(path)
    if not path.exists():
        return
    with open(path) as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= after_step]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)


class CsvLogCallback(TrainerCallback):
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "reward" not in logs or not state.is_world_process_zero:  # one writer under a launcher
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        row = {name: (state.global_step if key is None else logs.get(key, "")) for name, key in COLUMNS.items()}
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
            if new:
                writer.writeheader()
            writer.writerow(row)
            handle.flush()
