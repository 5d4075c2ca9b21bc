"""Every GPU profile's whole pipeline rehearsed on CPU, with the profile's own sections, so chat-template,
LoRA-target, context-length and config errors show up here rather than on a user's GPU (dtype errors cannot:
on CPU everything runs in fp32 and 4-bit falls back to 16-bit).

Only what cannot run here is swapped: the hub model becomes a shrunk random model of the same architecture
(tests/support/shrunk_models.py), the hub data a few offline problems, the turn budgets a few tokens, training 1
GRPO step on 1 problem with groups of 2; vLLM (every GPU profile generates through it) becomes the stand-in
engine (tests/support/vllm_standin.py). Kept: the profile's context length, LoRA rank, alpha and targets, its
max_lora_rank, 4-bit flag (Unsloth falls back to 16-bit on CPU), KL weight, learning rate, optimizer and
prompt style. The retry-reward control (the same sections but the reward target) is rehearsed on the 80 GB
card's profile of each model and task, to keep the whole rehearsal near five minutes of CI.
"""

import gc
import json

import pytest
import shrunk_models
import vllm_standin

from r3kit.runs.gpu_profiles import GPUS, MODELS
from r3kit.runs.profiles import PROFILES, resolve

GPU_PROFILES = [name for name in PROFILES if any(name.endswith(f"-{gpu}") for gpu in GPUS)]
TURNS = {"attempt_tokens": 6, "reflection_tokens": 6, "retry_tokens": 6}


def short_name(profile: str) -> str:
    return next(short for short in sorted(MODELS, key=len, reverse=True) if profile.startswith(short + "-"))


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory):
    root = tmp_path_factory.mktemp("shrunk")
    return {short: shrunk_models.build(short, root / short) for short in MODELS}


def test_every_gpu_profile_is_rehearsed():
    # 7B-8B are not offered on a T4, nor Phi-3.5-mini on APIGen there (its KV cache: test_profiles)
    assert len(GPU_PROFILES) == len(MODELS) * 2 * len(GPUS) - 7
    assert {short_name(name) for name in GPU_PROFILES} == set(MODELS)


@pytest.mark.slow
@pytest.mark.parametrize("name", GPU_PROFILES)
def test_gpu_profile_runs_end_to_end_on_cpu(name, shrunk, tmp_path, monkeypatch):
    from r3kit.runs.pipeline import run_all

    standin = vllm_standin.install(monkeypatch)
    overrides = {
        "model": {"name": str(shrunk[short_name(name)])},
        "data": {"source": "generate", "n_test": 3, "n_train": 4},
        "evaluate": {**TURNS, "batch_size": 8},
        "mine": {"k": 2, "attempt_tokens": 6, "chunk_size": 4, "batch_size": 8},
        "train": {"steps": 1, "problems_per_step": 1, "group_size": 2, "micro_batch_size": 2, "reflection_tokens": 6,
                  "retry_tokens": 6, "save_steps": 1, "generation_batch_size": 8},
        "forgetting": None,  # the paper's benchmarks are hub datasets (tests/test_forgetting.py runs the stage offline)
    }
    with_control = name.endswith("-a100")
    if not with_control:
        overrides["control"] = None
    run = resolve(name, tmp_path / name, overrides)
    profile = PROFILES[name]
    assert run.model.max_seq_length == profile["model"]["max_seq_length"] and run.model.fast_inference
    assert run.train.lora_config["r"] == profile["train"]["lora_config"]["r"]
    assert run.train.grpo_config["beta"] == profile["train"]["beta"]
    monkeypatch.chdir(tmp_path)
    ran = run_all(run, log=lambda message: None)
    control = ["train retry_control", "evaluate retry_control"] if with_control else []
    assert ran == ["evaluate vanilla", "mine failures", "train r3", "evaluate trained", *control, "figures"]
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert set(metrics) == ({"vanilla", "trained", "retry_control"} if with_control else {"vanilla", "trained"})
    adapter = json.loads((run.run_dir / "train" / "r3" / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == run.train.lora_config["r"] and adapter["lora_alpha"] == run.train.lora_config["lora_alpha"]
    assert (run.run_dir / "figures" / "table.md").exists()
    assert len(standin.engines) == (6 if with_control else 4)  # one per stage that loads a model ...
    assert standin.deleted == len(standin.engines)  # ... each deleted when its stage ends (Unsloth's delete_vllm) ...
    gc.collect()
    assert [ref() for ref in standin.engines] == [None] * len(standin.engines)  # ... and nothing holds on to it
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing lands in the working directory
