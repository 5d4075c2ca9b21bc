"""R3 in a plain TRL GRPOTrainer: r3_for_trl's dataset, rollout and reward train the reflection of a task from
its own file, with r3kit's real generator and the tiny model; mismatched TRL settings are refused."""

from pathlib import Path

import datasets
import pytest
import torch

from r3kit import get_task, r3_for_trl
from r3kit.models.loading import ModelConfig, attach_lora, load_model

TASK_FILE = Path(__file__).parents[1] / "notebooks" / "your_task" / "sort_task.py"


def _parity_task():
    """The example task with a stand-in verifier that the tiny random model passes about half the time (the retry's
    length is even), so GRPO groups carry signal and the weights move."""
    from r3kit.tasks import Verdict

    base = type(get_task(f"{TASK_FILE}:SortTask"))

    class Parity(base):
        name = "sort_parity"

        def verify(self, completion, example):
            return Verdict(len(completion) % 2 == 0, "even" if len(completion) % 2 == 0 else "odd")

    return Parity(style="compact")


def _failures():
    return datasets.Dataset.from_list([{"numbers": [n, 1, 2], "failed_attempt": "<answer>2, 1</answer>"}
                                       for n in range(3, 11)])


def test_plain_trl_trains_two_r3_steps_on_the_reflection_and_rewards_the_retry(tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    task = _parity_task()
    model, tokenizer = load_model(ModelConfig(name="tiny"))
    model = attach_lora(model, {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    r3 = r3_for_trl(task, _failures(), output_dir=tmp_path, reflection_tokens=8, retry_tokens=8,
                    retry_temperature=1.0)  # sampled retries: the random model's greedy ones decode to ""
    seen = []
    reward = r3.reward_funcs[0]

    def recording(*args, **kwargs):
        seen.append((list(kwargs["reflection_text"]), list(kwargs["judged_text"]), [c for c in kwargs["completions"]]))
        return reward(*args, **kwargs)

    recording.__name__ = reward.__name__
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=2, num_generations=4, per_device_train_batch_size=4,
                      learning_rate=5e-2, temperature=r3.temperature, max_completion_length=r3.max_completion_length,
                      use_cpu=True, bf16=False, report_to=[], logging_steps=1, save_strategy="no")
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=args, train_dataset=r3.dataset,
                          reward_funcs=[recording], rollout_func=r3.rollout_func)
    trainer.train()
    assert trainer.state.global_step == 2 and len(seen) == 2
    assert any(task.verify(r, {}).ok for _, retries, _ in seen for r in retries)  # groups carried signal
    for reflections, retries, completions in seen:  # TRL's completion is the reflection; the reward judged the retry
        assert len(reflections) == len(retries) == 4
        assert [c if isinstance(c, str) else c[-1]["content"] for c in completions] == reflections
    after = dict(model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before if "lora_" in n)
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_" not in n)
    assert "reward" in trainer.state.log_history[0]


def test_settings_that_would_train_another_distribution_are_refused(tmp_path):
    task = get_task(f"{TASK_FILE}:SortTask", style="compact")
    with pytest.raises(ValueError, match=r"generation settings only; unknown: \['learning_rate'\]"):
        r3_for_trl(task, _failures(), learning_rate=1e-5)
    r3 = r3_for_trl(task, _failures(), output_dir=tmp_path)

    class Trainer:  # what the rollout reads of a GRPOTrainer before it generates
        class args:
            temperature = 0.7
            num_generations = 8

    with pytest.raises(ValueError, match="GRPOConfig.temperature is 0.7, but the rollout samples at 1.0"):
        r3.rollout_func(["x"], Trainer())
    with pytest.raises(ValueError, match="failure dataset lacks column"):
        r3_for_trl(task, datasets.Dataset.from_list([{"numbers": [1]}]))
