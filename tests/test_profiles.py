"""Profiles resolve into validated stage configs; bad names and parameters fail with the choices listed."""

import pytest

from r3kit.cli import parse_sets
from r3kit.runs.gpu_profiles import GPUS, MODELS, NOT_FITTING
from r3kit.runs.profiles import DEFAULT_PROFILE, PROFILES, resolve


def test_every_profile_resolves_without_a_gpu(tmp_path):
    for name in PROFILES:
        run = resolve(name, tmp_path / name)
        assert run.train.problems_per_step * run.train.group_size % run.train.micro_batch_size == 0
        assert run.data.task == run.task


def test_gpu_profiles_cover_the_paper_models_on_both_tasks_and_fit_their_cards():
    for short, (hub_id, params_b) in MODELS.items():
        for task in ("countdown", "apigen"):
            for gpu, memory in GPUS.items():
                if f"{short}-{task}-{gpu}" in NOT_FITTING:
                    continue
                run = resolve(f"{short}-{task}-{gpu}")
                assert run.model.name == hub_id and run.model.fast_inference
                weights = params_b * (0.7 if run.model.load_in_4bit else 2.0)
                assert weights < memory * (1 - run.model.gpu_memory_utilization) + memory * 0.35
                assert run.data.source == "hub"
    assert resolve("qwen2.5-3b-countdown-t4").model.load_in_4bit
    assert not resolve("llama3.1-8b-apigen-a100").model.load_in_4bit
    assert resolve("qwen2-7b-apigen-a100").data.n_test == 12_000
    assert resolve("qwen2.5-1.5b-countdown-a100").data.n_test == 15_000


def test_default_profile_is_the_offline_cpu_demo():
    run = resolve(DEFAULT_PROFILE)
    assert DEFAULT_PROFILE == "cpu-demo" and run.student is not None
    assert run.model.name.endswith("results/cpu-demo/student")
    assert run.data.source == "generate" and run.data.generator == run.student.generator_ranges()
    assert run.control is not None and run.control.reward_target == "retry" and run.train.reward_target == "reflection"
    assert run.control.steps == run.train.steps and run.control.learning_rate == run.train.learning_rate


def test_overrides_merge_and_bad_ones_are_named():
    run = resolve("smoke", overrides={"train": {"steps": 7}, "evaluate": {"n_examples": 3}})
    assert run.train.steps == 7 and run.control.steps == 7 and run.evaluate.n_examples == 3
    with pytest.raises(ValueError, match="unknown profile 'nope'; `r3kit profiles` lists them"):
        resolve("nope")
    with pytest.raises(ValueError, match=r"unknown train parameter\(s\) \['stepz'\] \(did you mean 'steps'\?\); valid: .*steps"):
        resolve("smoke", overrides={"train": {"stepz": 3}})
    with pytest.raises(ValueError, match="unknown override"):
        resolve("smoke", overrides={"trian": {}})
    with pytest.raises(ValueError, match="train.steps must be int"):
        resolve("smoke", overrides={"train": {"steps": "many"}})
    with pytest.raises(ValueError, match="group size does not fit"):
        resolve("smoke", overrides={"train": {"micro_batch_size": 3}})
    with pytest.raises(ValueError, match="unknown task"):
        resolve("smoke", overrides={"task": "chess"})
    with pytest.raises(ValueError, match="needs a student"):
        resolve("smollm2-function-calling", overrides={"model": {"name": "student"}})


def test_cli_set_parsing():
    assert parse_sets(["train.steps=5", "task=function_calling", "data.generator={\"max_num\": 9}"]) == {
        "train": {"steps": 5}, "task": "function_calling", "data": {"generator": {"max_num": 9}}}
    with pytest.raises(ValueError, match="section.field=value"):
        parse_sets(["steps"])


def test_budgets_are_checked_before_anything_loads():
    # the T4 Countdown profile used to give 1,024 tokens to an episode that needs about 1,150
    run = resolve("qwen2.5-1.5b-countdown-t4")
    assert run.model.max_seq_length >= 1150
    with pytest.raises(ValueError, match=r"max_seq_length = 1024 cannot hold a whole episode \(evaluate, estimated\): "
                                         r"prompt \d+ \+ attempt 384 \+ reflection 192 \+ retry 384 = \d+ tokens"):
        resolve("qwen2.5-1.5b-countdown-t4", overrides={"model": {"max_seq_length": 1024}})
    with pytest.raises(ValueError, match="finetune = 'full' with model.fast_inference"):
        resolve("qwen2.5-1.5b-countdown-t4", overrides={"train": {"finetune": "full"}})
    assert resolve("qwen2.5-1.5b-countdown-t4", overrides={"train": {"finetune": "full"},
                                                          "model": {"fast_inference": False}}).train.finetune == "full"
    with pytest.raises(ValueError, match="train.lora_config.r = 64 > model.max_lora_rank = 16"):
        resolve("qwen2.5-1.5b-countdown-t4", overrides={"train": {"lora_config": {"r": 64}}})


def test_gpu_sizing_counts_each_models_kv_cache_and_shrinks_or_refuses_what_does_not_fit():
    from r3kit.runs import gpu_profiles as g

    kib = {short: g.kv_bytes_per_token(short) // 1024 for short in ("qwen2.5-1.5b", "llama3.1-8b", "phi3.5-mini")}
    assert kib == {"qwen2.5-1.5b": 28, "llama3.1-8b": 128, "phi3.5-mini": 384}  # Phi-3.5: 32 key/value heads
    # a T4 leaves vLLM about 8 - 2.7 - 1 GB for Phi-3.5-mini's cache: about 11,800 tokens
    assert 11_000 < g.kv_cache_tokens("phi3.5-mini", "t4") < 12_500
    assert resolve("phi3.5-mini-countdown-t4").train.problems_per_step == 1  # one group of 8 x 1,280 tokens fits
    with pytest.raises(ValueError, match=r"needs 384 KiB of KV cache a token; a T4 leaves vLLM room for about 11,\d{3} "
                                         r"tokens, and one group of 8 reflections at 3,072 tokens needs 24,576: use "
                                         r"phi3.5-mini-apigen-a100-40gb"):
        resolve("phi3.5-mini-apigen-t4")
    for name in PROFILES:  # every offered GPU profile's step rollout fits its KV cache at once
        short = next((s for s in sorted(g.MODELS, key=len, reverse=True) if name.startswith(s + "-")), None)
        if short is not None:
            run = resolve(name)
            gpu = name.split(f"{short}-")[1].split("-", 1)[1]
            need = run.train.problems_per_step * run.train.group_size * run.model.max_seq_length
            assert run.train.problems_per_step >= 1 and need <= g.kv_cache_tokens(short, gpu), name
            assert run.train.grpo_config["save_total_limit"] == 2  # the last two checkpoints, not every one with its optimizer


def test_selection_keeps_every_checkpoint():
    run = resolve("qwen2.5-1.5b-countdown-t4", overrides={"data": {"n_validation": 100},
                                                          "select": {"metric": "second_try"}})
    assert run.train.grpo_config["save_total_limit"] is None and run.control.grpo_config["save_total_limit"] is None  # it scores each one
    with pytest.raises(ValueError, match="save_total_limit must be >= 1"):
        resolve("smoke", overrides={"train": {"save_total_limit": 0}})


def test_7b_and_8b_models_are_not_offered_on_a_t4_and_colabs_a100_has_its_own_size():
    for name in ("qwen2.5-7b-countdown-t4", "llama3.1-8b-apigen-t4", "qwen2-7b-apigen-t4"):
        assert name not in PROFILES
        with pytest.raises(ValueError, match="does not fit a T4 .* use .*-a100-40gb"):
            resolve(name)
    small, big = resolve("llama3.1-8b-countdown-a100-40gb"), resolve("llama3.1-8b-countdown-a100")
    assert small.model.load_in_4bit and not big.model.load_in_4bit
    assert small.train.micro_batch_size < big.train.micro_batch_size


def test_the_study_profile_runs_three_arms_at_equal_budget_and_selects_on_validation():
    run = resolve("cpu-study")
    assert len(run.study.seeds) >= 5 and len(run.study.students) >= 2
    assert {run.study.student_of(t) for t in run.study.seeds} == set(run.study.students)
    assert run.select is not None and run.data.n_validation > 0
    arms = {"r3": run.train, "grpo": run.grpo, "retry_control": run.control}
    assert {a: c.reward_target for a, c in arms.items()} == {"r3": "reflection", "grpo": "attempt", "retry_control": "retry"}
    assert run.control.shared_reflection
    for field in ("steps", "problems_per_step", "group_size", "learning_rate", "finetune", "temperature", "save_steps"):
        assert len({getattr(c, field) for c in arms.values()}) == 1, f"arms differ in {field}"
    assert all(c.grpo_config == run.train.grpo_config for c in arms.values())  # beta, loss, optimizer: one for all


def test_grpo_config_fields_pass_through_a_training_section_and_bad_ones_fail_first():
    """Any field of TRL's GRPOConfig is set from a profile, named directly or under grpo_config, over the pinned
    ones; an arm section changes only what it names; the kit's own fields and unknown names are refused."""
    from r3kit.core.trainer import GRPO_PINNED

    run = resolve("smoke", overrides={"train": {"beta": 0.04, "grpo_config": {"num_iterations": 2}},
                                      "control": {"epsilon": 0.3}})
    assert run.train.grpo_config == {**GRPO_PINNED, "beta": 0.04, "num_iterations": 2}
    assert run.control.grpo_config == {**GRPO_PINNED, "beta": 0.04, "num_iterations": 2, "epsilon": 0.3}
    with pytest.raises(ValueError, match=r"unknown train parameter\(s\) \['num_iteratoins'\] \(did you mean 'num_iterations'"):
        resolve("smoke", overrides={"train": {"num_iteratoins": 2}})
    with pytest.raises(ValueError, match="GRPOConfig's max_steps is set by the kit from steps: set that instead"):
        resolve("smoke", overrides={"train": {"max_steps": 5}})
    with pytest.raises(ValueError, match="need steps >= 1, learning_rate > 0, beta >= 0"):
        resolve("smoke", overrides={"train": {"beta": -1}})
    with pytest.raises(ValueError, match="train.beta is given twice, as train.beta = 0.0 and in train.grpo_config = 0.04"):
        resolve("cpu-demo", overrides={"train": {"grpo_config": {"beta": 0.04}}})  # cpu-demo names beta directly
    with pytest.raises(ValueError, match="GRPOConfig's generation_batch_size is set by the kit"):
        resolve("smoke", overrides={"train": {"grpo_config": {"generation_batch_size": 8}}})


def test_lora_config_fields_pass_through_over_the_pinned_ones_and_bad_ones_fail_first():
    from r3kit.models.loading import LORA_PINNED

    run = resolve("smoke", overrides={"train": {"lora_config": {"r": 4, "use_rslora": True}}})
    assert run.train.lora_config == {**LORA_PINNED, "r": 4, "use_rslora": True}
    assert run.control.lora_config == run.train.lora_config  # an arm trains the same adapter unless it says otherwise
    with pytest.raises(ValueError, match=r"train.lora_config: \['rank'\] are not fields of PEFT's LoraConfig"):
        resolve("smoke", overrides={"train": {"lora_config": {"rank": 4}}})
    with pytest.raises(ValueError, match="train.lora_config.r .the LoRA rank. must be an integer >= 1, got 0"):
        resolve("smoke", overrides={"train": {"lora_config": {"r": 0}}})
    with pytest.raises(ValueError, match=r"train.lora_config: \['task_type'\] are set by the kit"):
        resolve("smoke", overrides={"train": {"lora_config": {"task_type": "SEQ_CLS"}}})
    with pytest.raises(ValueError, match="target_modules must be a list of layer names, got 'all-linear'"):
        resolve("smoke", overrides={"train": {"lora_config": {"target_modules": "all-linear"}}})
    # an override changes only the LoRA fields it names: the A100 profile's alpha stays
    big = resolve("qwen2.5-1.5b-countdown-a100", overrides={"train": {"lora_config": {"r": 16}}})
    assert big.train.lora_config["r"] == 16 and big.train.lora_config["lora_alpha"] == 64


def test_selection_and_arm_sections_are_checked():
    with pytest.raises(ValueError, match="n_validation is 0"):
        resolve("smoke", overrides={"select": {"metric": "second_try"}})
    with pytest.raises(ValueError, match="select.metric"):
        resolve("cpu-study", overrides={"select": {"metric": "vibes"}})
    with pytest.raises(ValueError, match="train.reward_target must be 'reflection'"):
        resolve("cpu-demo", overrides={"train": {"reward_target": "retry", "retry_temperature": 1.0}})
    with pytest.raises(ValueError, match="study.arms"):
        resolve("cpu-study", overrides={"study": {"arms": ["grpo"]}})
    with pytest.raises(ValueError, match="at least 2 distinct training seeds"):
        resolve("cpu-study", overrides={"study": {"seeds": [0]}})
    for wrong in ("R3 beats GRPO", "r3 - vanilla: frozen_retriever", "grpo - r3: second_try", "r3 - grpo: frozen_retrier"):
        with pytest.raises(ValueError, match="study.endpoints are named '<arm> - <arm or vanilla>: <measure>'"):
            resolve("cpu-study", overrides={"study": {"endpoints": [wrong]}})
    with pytest.raises(ValueError, match="study.endpoints are named"):  # an arm the study does not run
        resolve("cpu-study", overrides={"study": {"arms": ["r3", "grpo"], "endpoints": ["r3 - retry_control: first_try"]}})
    declared = ["r3 - vanilla: frozen_retrier", "r3 - grpo: second_try", "retry_control - vanilla: second_try_last"]
    assert list(resolve("cpu-study", overrides={"study": {"endpoints": declared}}).study.endpoints) == declared
    run = resolve("cpu-study", overrides={"study": {"seeds": [0, 1, 2], "students": [7]}})
    assert run.study.seeds_of(7) == [0, 1, 2]
    with pytest.raises(ValueError, match="select.score_last must stay true"):
        resolve("cpu-study", overrides={"select": {"score_last": False}})
    with pytest.raises(ValueError, match="evaluate.frozen_retrier is false"):
        resolve("smoke-study", overrides={"evaluate": {"frozen_retrier": False}})
    assert not resolve("cpu-demo", overrides={"select": {"score_last": False}}).select.score_last


def test_stage_estimates_bound_the_generated_tokens_and_time_only_gpu_profiles():
    from r3kit.runs.gpu_profiles import stage_estimates

    run = resolve("qwen2.5-1.5b-countdown-t4")
    estimates = stage_estimates(run)
    assert estimates["mine"]["tokens"] == run.data.n_train * run.mine.k * run.mine.attempt_tokens
    train = run.train
    assert estimates["train r3"]["tokens"] == train.steps * train.problems_per_step * train.group_size * (
        train.reflection_tokens + train.retry_tokens)
    assert estimates["mine"]["minutes"] > estimates["train r3"]["minutes"] > 0
    assert all("minutes" not in e for e in stage_estimates(resolve("cpu-demo")).values())  # no assumed CPU rate


def test_one_episode_section_sets_the_turn_lengths_of_every_stage_unless_a_stage_says_otherwise():
    run = resolve("cpu-demo", overrides={"episode": {"reflection_tokens": 96}})
    assert run.evaluate.reflection_tokens == run.train.reflection_tokens == run.control.reflection_tokens == 96
    assert run.evaluate.attempt_tokens == run.mine.attempt_tokens == run.train.attempt_tokens == 56
    assert run.evaluate.retry_tokens == 56 and run.train.retry_tokens == 24  # cpu-demo's training retries are shorter
    assert resolve("cpu-demo", overrides={"train": {"reflection_tokens": 30}}).evaluate.reflection_tokens == 40
    with pytest.raises(ValueError, match=r"unknown episode parameter\(s\) \['reflection_token'\] \(did you mean 'reflection_tokens'"):
        resolve("cpu-demo", overrides={"episode": {"reflection_token": 96}})
