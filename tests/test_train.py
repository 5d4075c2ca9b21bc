"""The R3 trainer on CPU through Unsloth with the tiny model: what the loss sees, what the reward is,
what changes, resuming, and the errors raised before training."""

import csv
import shutil

import datasets
import pytest
import torch
from fakes import ScriptedGenerator
from safetensors.torch import load_file

from r3kit.core.trainer import (
    GRPO_PINNED,
    TrainConfig,
    build_trainer,
    check_failures,
    checkpoints,
    generated_tokens,
    train,
)
from r3kit.models.loading import ModelConfig, attach_lora, load_model
from r3kit.tasks import get_task
from r3kit.tasks.countdown import CountdownTask
from r3kit.tasks.prompts import get_prompts

TASK = get_task("countdown", style="compact")
COMPACT = get_prompts("countdown", "compact")
FAILURES = datasets.Dataset.from_list(
    [{"target": t, "nums": [t, 1, 2], "failed_attempt": "<answer>1</answer>"} for t in range(3, 11)])
CFG = TrainConfig(steps=2, problems_per_step=2, group_size=4, micro_batch_size=4, learning_rate=5e-2, grpo_config={**GRPO_PINNED, "beta": 0.0},
                  reflection_tokens=8, retry_tokens=8, save_steps=1, generation_batch_size=8)


def reflections_then_retries(tokenizer):
    """Reflection i of a group is "ri" with i cycling 0..3; the retry repeats the reflection's last character,
    so retry success (under EvenRetry) depends on which reflection preceded it."""
    count = {"n": 0}

    def script(conversation):
        if conversation[-1]["content"] == TASK.prompts.reflection_request:
            count["n"] += 1
            return f"r{count['n'] % 4}"
        return f"<answer>{conversation[-2]['content'][-1]}</answer>"

    return lambda model, tok, batch_size=64, **_: ScriptedGenerator(tokenizer, script)


class EvenRetry(CountdownTask):
    """A deterministic fake verifier: a retry passes iff its answer is an even digit."""

    name = "even_retry"

    def verify(self, completion, example):
        from r3kit.tasks import Verdict

        digit = completion.replace("<answer>", "").replace("</answer>", "")
        return Verdict(digit.isdigit() and int(digit) % 2 == 0, "even" if digit.isdigit() and int(digit) % 2 == 0 else "odd")


def capture(trainer):
    seen = []
    original = trainer._generate_and_score_completions

    def wrapped(inputs):
        out = original(inputs)
        seen.append(out)
        return out

    trainer._generate_and_score_completions = wrapped
    reward = trainer.reward_funcs[0]
    rewards = []

    def recording(*args, **kwargs):
        values = reward(*args, **kwargs)
        rewards.append((list(kwargs["reflection_text"]), list(kwargs["judged_text"]), values))
        return values

    recording.__name__ = reward.__name__
    trainer.reward_funcs[0] = recording
    return seen, rewards


@pytest.fixture
def lora_model():
    model, tokenizer = load_model(ModelConfig(name="tiny"))
    return attach_lora(model, {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}), tokenizer


@pytest.mark.parametrize("target", ["reflection", "retry"])
def test_loss_sees_only_the_trained_turn_and_reward_is_the_retry_verdict(lora_model, tmp_path, target):
    model, tokenizer = lora_model
    task = EvenRetry(prompts=COMPACT)
    cfg = TrainConfig(**{**CFG.__dict__, "reward_target": target, "retry_temperature": 1.0 if target == "retry" else 0.0})
    trainer = build_trainer(model, tokenizer, task, FAILURES, cfg, tmp_path, reflections_then_retries(tokenizer))
    seen, rewards = capture(trainer)
    trainer.train()
    assert seen and rewards
    for batch, (reflections, retries, values) in zip(seen, rewards):
        # reward i is the verdict on the retry that followed reflection i
        assert values == [1.0 if int(r[-1]) % 2 == 0 else 0.0 for r in reflections]
        assert retries == [f"<answer>{r[-1]}</answer>" for r in reflections]
        mask = batch["completion_mask"] * batch.get("tool_mask", torch.ones_like(batch["completion_mask"]))
        trained = [tokenizer.decode([t for t, m in zip(ids.tolist(), row.tolist()) if m]) for ids, row in
                   zip(batch["completion_ids"], mask)]
        prompts = [tokenizer.decode(ids[m.bool()]) for ids, m in zip(batch["prompt_ids"], batch["prompt_mask"])]
        expected = reflections if target == "reflection" else retries
        assert trained == [f"{text}<|im_end|>" for text in expected]
        for prompt, reflection in zip(prompts, reflections):
            assert "<answer>" not in trained[0] or target == "retry"
            if target == "reflection":
                assert prompt.endswith(f"{TASK.prompts.reflection_request}<|im_end|><|assistant|>")
                assert reflection not in prompt
            else:
                assert prompt.endswith(f"{reflection}<|im_end|><|user|>{TASK.prompts.retry_request}<|im_end|><|assistant|>")
        # groups of G share a prompt in R3 (the same failed attempt), so advantages compare reflections
        if target == "reflection":
            assert all(prompts[i] == prompts[i - i % 4] for i in range(len(prompts)))
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(0.0 <= float(r["frac_zero_std"]) <= 1.0 and float(r["step_time"]) > 0 for r in rows)


def test_training_changes_lora_weights_and_leaves_base_weights(lora_model, tmp_path):
    model, tokenizer = lora_model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = build_trainer(model, tokenizer, EvenRetry(prompts=COMPACT), FAILURES, CFG, tmp_path,
                            reflections_then_retries(tokenizer))
    trainer.train()
    after = dict(model.named_parameters())
    lora = [n for n in before if "lora_" in n]
    base = [n for n in before if "lora_" not in n]
    assert lora and base
    assert any(not torch.equal(before[n], after[n]) for n in lora)
    assert all(torch.equal(before[n], after[n]) for n in base)


def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path):
    cfg = TrainConfig(**{**CFG.__dict__, "steps": 4, "save_steps": 2})
    task = EvenRetry(prompts=COMPACT)
    tokenizer = load_model(ModelConfig(name="tiny"))[1]
    calls = {"n": 0}
    good = reflections_then_retries(tokenizer)

    def crashing(model, tok, batch_size=64, **_):
        calls["n"] += 1
        if calls["n"] == 3:  # the third step's rollout
            raise RuntimeError("simulated crash")
        return good(model, tok, batch_size)

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(ModelConfig(name="tiny"), task, FAILURES, cfg, tmp_path, generator_factory=crashing)
    summary = train(ModelConfig(name="tiny"), task, FAILURES, cfg, tmp_path, generator_factory=good)
    assert summary["resumed_from"].endswith("checkpoint-2") and summary["steps"] == 4
    assert [int(r["step"]) for r in csv.DictReader(open(tmp_path / "log.csv"))] == [1, 2, 3, 4]
    assert (tmp_path / "adapter" / "adapter_config.json").exists() and (tmp_path / "config.json").exists()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A 3-step run (a checkpoint every step) that nothing interrupted: its folder and its final LoRA weights."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    tokenizer = load_model(ModelConfig(name="tiny"))[1]
    cfg = TrainConfig(**{**CFG.__dict__, "steps": 3, "save_steps": 1})
    train(ModelConfig(name="tiny"), EvenRetry(prompts=COMPACT), FAILURES, cfg, folder,
          generator_factory=reflections_then_retries(tokenizer))
    return folder, cfg, load_file(folder / "adapter" / "adapter_model.safetensors")


def _cut_after_checkpoint(folder):  # killed after TRL saved the last checkpoint, before the adapter
    shutil.rmtree(folder / "adapter")
    (folder / "summary.json").unlink()


def _cut_during_final_save(folder):  # killed while the adapter was being written
    (folder / "summary.json").unlink()
    weights = folder / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])


def _cut_after_adapter(folder):  # killed after the adapter, before the summary
    (folder / "summary.json").unlink()


@pytest.mark.parametrize("cut", [_cut_after_checkpoint, _cut_during_final_save, _cut_after_adapter])
def test_a_run_stopped_at_the_end_finishes_without_training_past_its_budget(uninterrupted, tmp_path, cut):
    reference, cfg, weights = uninterrupted
    folder = tmp_path / "run"
    shutil.copytree(reference, folder)
    cut(folder)
    tokenizer = load_model(ModelConfig(name="tiny"))[1]
    summary = train(ModelConfig(name="tiny"), EvenRetry(prompts=COMPACT), FAILURES, cfg, folder,
                    generator_factory=reflections_then_retries(tokenizer))
    assert summary["steps"] == 3 and summary["resumed_from"].endswith("checkpoint-3")
    assert sorted(p.name for p in (folder / "checkpoints").glob("checkpoint-*")) == [f"checkpoint-{i}" for i in (1, 2, 3)]
    assert [int(r["step"]) for r in csv.DictReader(open(folder / "log.csv"))] == [1, 2, 3]
    resumed = load_file(folder / "adapter" / "adapter_model.safetensors")
    assert resumed.keys() == weights.keys()
    assert all(torch.equal(resumed[k], weights[k]) for k in weights)


def test_a_checkpoint_beyond_the_budget_is_not_resumed_from(uninterrupted, tmp_path):
    """A folder trained further (a larger steps setting, or an older version of the kit) resumes from the last
    checkpoint within this run's budget, and ends at the budget."""
    reference, cfg, weights = uninterrupted
    folder = tmp_path / "run"
    shutil.copytree(reference, folder)
    _cut_after_checkpoint(folder)
    shorter = TrainConfig(**{**cfg.__dict__, "steps": 2})
    tokenizer = load_model(ModelConfig(name="tiny"))[1]
    summary = train(ModelConfig(name="tiny"), EvenRetry(prompts=COMPACT), FAILURES, shorter, folder,
                    generator_factory=reflections_then_retries(tokenizer))
    assert summary["steps"] == 2 and summary["resumed_from"].endswith("checkpoint-2")
    assert checkpoints(folder, up_to=2)[-1][0] == 2


def test_save_total_limit_keeps_the_last_checkpoints(tmp_path):
    tokenizer = load_model(ModelConfig(name="tiny"))[1]
    cfg = TrainConfig(**{**CFG.__dict__, "steps": 3, "save_steps": 1, "grpo_config": {**CFG.grpo_config, "save_total_limit": 2}})
    summary = train(ModelConfig(name="tiny"), EvenRetry(prompts=COMPACT), FAILURES, cfg, tmp_path,
                    generator_factory=reflections_then_retries(tokenizer))
    assert summary["steps"] == 3 and [step for step, _ in checkpoints(tmp_path)] == [2, 3]


def test_clear_errors_before_training(tmp_path):
    with pytest.raises(ValueError, match="failure dataset is empty"):
        train(ModelConfig(name="tiny"), TASK, FAILURES.select([]), CFG, tmp_path)
    with pytest.raises(ValueError, match="group size does not fit the batch"):
        train(ModelConfig(name="tiny"), TASK, FAILURES, TrainConfig(problems_per_step=3, group_size=4, micro_batch_size=8), tmp_path)
    with pytest.raises(ValueError, match="lacks column"):
        train(ModelConfig(name="tiny"), TASK, FAILURES.remove_columns("failed_attempt"), CFG, tmp_path)
    with pytest.raises(ValueError, match="not found"):
        train(ModelConfig(name="no-such-model"), TASK, FAILURES, CFG, tmp_path)
    with pytest.raises(ValueError, match="retry_temperature > 0"):
        TrainConfig(reward_target="retry", retry_temperature=0.0).validate()

    class NoVerifier(CountdownTask):
        name = "no_verifier"
        verify = __import__("r3kit.tasks.base", fromlist=["Task"]).Task.verify

    with pytest.raises(ValueError, match="no verifier"):
        check_failures(NoVerifier(prompts=COMPACT), FAILURES)
    assert not (tmp_path / "checkpoints").exists()


def test_precision_follows_the_card():
    """A T4 has no bf16: it must train in fp16 (Unsloth loads it in fp16), never silently in fp32."""
    from r3kit.core.trainer import precision

    assert precision(on_gpu=False, bf16_supported=False) == {"use_cpu": True, "bf16": False, "fp16": False}
    assert precision(on_gpu=True, bf16_supported=True) == {"use_cpu": False, "bf16": True, "fp16": False}
    assert precision(on_gpu=True, bf16_supported=False) == {"use_cpu": False, "bf16": False, "fp16": True}


def test_reflections_are_sampled_from_the_distribution_trl_scores():
    """TRL scores completions at the temperature alone: nucleus sampling would train on another distribution."""
    with pytest.raises(ValueError, match="top_p must be 1.0"):
        TrainConfig(top_p=0.9).validate()


def trained_texts(batch, tokenizer):
    mask = batch["completion_mask"] * batch.get("tool_mask", torch.ones_like(batch["completion_mask"]))
    return [tokenizer.decode([t for t, m in zip(ids.tolist(), row.tolist()) if m]) for ids, row in
            zip(batch["completion_ids"], mask)]


def test_plain_grpo_arm_trains_fresh_first_attempts_rewarded_by_their_own_verdict(lora_model, tmp_path):
    model, tokenizer = lora_model
    task = EvenRetry(prompts=COMPACT)
    count = {"n": 0}

    def script(conversation):  # first attempts only: the task prompt alone, never a failed attempt or a reflection
        assert len(conversation) == 1 and conversation[0]["role"] == "user"
        count["n"] += 1
        return f"<answer>{count['n'] % 4}</answer>"

    calls = []

    def factory(model, tok, batch_size=64, **_):
        calls.append(ScriptedGenerator(tokenizer, script))
        return calls[-1]

    cfg = TrainConfig(**{**CFG.__dict__, "reward_target": "attempt", "attempt_tokens": 8})
    trainer = build_trainer(model, tokenizer, task, FAILURES, cfg, tmp_path, factory)
    seen, rewards = capture(trainer)
    trainer.train()
    assert seen and rewards
    for batch, (_, judged, values) in zip(seen, rewards):
        assert trained_texts(batch, tokenizer) == [f"{text}<|im_end|>" for text in judged]  # the attempt is trained
        assert values == [1.0 if int(text[8]) % 2 == 0 else 0.0 for text in judged]
        prompts = [tokenizer.decode(ids[m.bool()]) for ids, m in zip(batch["prompt_ids"], batch["prompt_mask"])]
        assert all("<answer>1</answer>" not in p and TASK.prompts.reflection_request not in p for p in prompts)
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [int(float(r["generated_tokens"])) for r in rows] == [g.stats.tokens for g in calls]  # one rollout a step
    assert generated_tokens(tmp_path / "log.csv") == sum(g.stats.tokens for g in calls) > 0


def test_fair_control_shares_one_greedy_reflection_per_group_and_trains_the_retries(lora_model, tmp_path):
    model, tokenizer = lora_model
    task = EvenRetry(prompts=COMPACT)
    samplings, count, reflected = [], {"n": 0}, {"n": 0}

    def script(conversation):
        if conversation[-1]["content"] == TASK.prompts.reflection_request:
            reflected["n"] += 1  # every reflection generated is a new text: shared ones are repeats of one call
            return f"r{reflected['n']}"
        count["n"] += 1
        return f"<answer>{count['n'] % 3}</answer>"  # retries differ within a group

    class Recording(ScriptedGenerator):
        def generate(self, conversations, sampling, progress=None):
            samplings.append((len(conversations), sampling.temperature,
                              conversations[0][-1]["content"] == TASK.prompts.reflection_request))
            return super().generate(conversations, sampling, progress)

    cfg = TrainConfig(**{**CFG.__dict__, "reward_target": "retry", "retry_temperature": 1.0, "shared_reflection": True})
    trainer = build_trainer(model, tokenizer, task, FAILURES, cfg, tmp_path,
                            lambda model, tok, batch_size=64, **_: Recording(tokenizer, script))
    seen, rewards = capture(trainer)
    trainer.train()
    # per rollout: one greedy reflection per problem (B = 2), then B * G = 8 sampled retries
    assert samplings == [(2, 0.0, True), (8, 1.0, False)] * CFG.steps
    for batch, (reflections, judged, values) in zip(seen, rewards):
        for g in range(0, 8, 4):
            assert len(set(reflections[g : g + 4])) == 1  # a group shares its reflection ...
        assert reflections[0] != reflections[4]  # ... and each group has its own
        assert len(set(judged)) > 1
        assert trained_texts(batch, tokenizer) == [f"{text}<|im_end|>" for text in judged]
        assert values == [1.0 if int(text[8]) % 2 == 0 else 0.0 for text in judged]


def test_groups_must_repeat_one_prompt():
    from r3kit.core.trainer import groups

    assert groups(["a", "a", "b", "b"], 2) == ["a", "b"]
    with pytest.raises(ValueError, match="differ"):
        groups(["a", "b", "b", "b"], 2)
    with pytest.raises(ValueError, match="groups of 3"):
        groups(["a", "a"], 3)
    with pytest.raises(ValueError, match="shared_reflection"):
        TrainConfig(shared_reflection=True).validate()
    with pytest.raises(ValueError, match="reward_target"):
        TrainConfig(reward_target="everything").validate()


def test_every_arm_has_its_rollout_and_the_reward_is_the_verdict_alone():
    from r3kit.core.trainer import REWARD_TARGETS, ROLLOUTS, verdict_rewards

    assert sorted(ROLLOUTS) == sorted(REWARD_TARGETS)
    task = get_task("countdown", style="compact")
    columns = {"nums": [[3, 5, 7]] * 4, "target": [22] * 4}
    texts = ["<answer>3*5+7</answer>", "<answer>3+5+7</answer>", "\x00" * 50 + "<answer>(((", ""]
    assert verdict_rewards(task, texts, columns) == [1.0, 0.0, 0.0, 0.0]
    assert verdict_rewards(task, texts, columns) == verdict_rewards(task, texts, columns)  # pure: same in, same out
