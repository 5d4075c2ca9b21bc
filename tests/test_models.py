"""Model loading through Unsloth, the locally built models, LoRA, and clear errors for missing models."""

import pytest

from r3kit.models.loading import (
    ModelConfig,
    attach_lora,
    build_char_tokenizer,
    built_once,
    load_model,
    resolve_model_path,
)


def test_char_tokenizer_round_trips_and_renders_chat_turns():
    tok = build_char_tokenizer()
    text = "12 7 3 = 33 <answer>(12-7)*3</answer>"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert len(tok("<answer>", add_special_tokens=False)["input_ids"]) == 1
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered == "<|user|>hi<|im_end|><|assistant|>"


def test_char_tokenizer_survives_save_and_reload(tmp_path):
    """transformers reloads it as a Qwen2 tokenizer with Qwen2's own pre-tokenizer: the ids must not change."""
    from transformers import AutoTokenizer

    from r3kit.models.loading import build_char_model, save_model

    model, tok = build_char_model(hidden=16, layers=1, heads=2)
    save_model(model, tok, tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    for text in ["<|user|>37 49 5 = 60<|im_end|><|assistant|><answer>(49-37)*5</answer>", "a b\nc\td ~!", "héllo wörld"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert again(text, add_special_tokens=False)["input_ids"] == ids
        assert again.decode(ids) == tok.decode(ids) == text


def test_tiny_model_loads_through_unsloth(tiny):
    model, tokenizer = tiny
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert str(model.dtype) == "torch.float32"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|pad|>"
    assert hasattr(model, "for_inference") and hasattr(model, "for_training")  # attached by Unsloth's loader


def test_lora_trains_adapters_only():
    model, _ = load_model(ModelConfig(name="tiny"))
    model = attach_lora(model, {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert any("q_proj" in name for name in trainable) and not any("k_proj" in name for name in trainable)


def test_missing_models_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="not found"):
        load_model(ModelConfig(name="no-such-model"))
    with pytest.raises(ValueError, match="no config.json"):
        load_model(ModelConfig(name=str(tmp_path)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE"):
        resolve_model_path("Qwen/Qwen2.5-1.5B-Instruct")
    with pytest.raises(ValueError, match="dtype"):
        load_model(ModelConfig(name="tiny", dtype="int8"))
    with pytest.raises(ValueError, match="needs a GPU"):
        load_model(ModelConfig(name="tiny", fast_inference=True))


def _write_model(folder, text="weights"):
    (folder / "model.safetensors").write_text(text)
    (folder / "config.json").write_text("{}")


def test_a_built_in_model_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "tiny"

    def fails_midway(folder):
        (folder / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        built_once(target, fails_midway)
    assert not target.exists() and list(tmp_path.iterdir()) == []  # no half-written model, no leftover

    (target).mkdir()  # an unfinished build of an earlier version: replaced, not read
    (target / "model.safetensors").write_text("half")
    assert built_once(target, _write_model) == target
    assert (target / "model.safetensors").read_text() == "weights"
    assert built_once(target, fails_midway) == target  # built: not built again


def test_when_two_processes_build_a_model_at_once_the_first_whole_build_wins(tmp_path):
    target = tmp_path / "tiny"

    def another_process_finishes_first(folder):
        winner = tmp_path / "winner"
        winner.mkdir()
        _write_model(winner, "theirs")
        winner.rename(target)
        _write_model(folder, "ours")

    assert built_once(target, another_process_finishes_first) == target
    assert (target / "model.safetensors").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


@pytest.mark.slow
def test_smollm2_from_its_wheel_writes_real_text():
    from r3kit.models.generation import HFGenerator, Sampling

    model, tokenizer = load_model(ModelConfig(name="smollm2-135m"))
    out = HFGenerator(model, tokenizer).generate([[{"role": "user", "content": "What is the capital of France?"}]],
                                                Sampling(max_new_tokens=24))
    assert "Paris" in out[0].text


def test_configs_and_light_stages_do_not_import_unsloth_or_transformers():
    """Unsloth must come before transformers, peft and trl; so importing configs, profiles, the pipeline or the
    student (which runs without Unsloth) must import none of them. It also keeps `r3kit profiles`, the student
    and the figures notebooks free of Unsloth's ~10 s import."""
    import subprocess
    import sys

    code = ("import sys, r3kit.runs.profiles, r3kit.runs.pipeline, r3kit.core.trainer, r3kit.eval.evaluate, r3kit.student.countdown, r3kit.report.figures, "
            "r3kit.runs.reproduce, r3kit.cli; print(sorted(m for m in ('unsloth', 'transformers', 'trl', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("loader", ["load_model", "load_tokenizer"])
def test_load_model_imports_unsloth_before_transformers(loader):
    """The stages check the context with load_tokenizer before load_model: both must import Unsloth first, or
    Unsloth warns that its optimizations are not applied (and the warning names this machine's site-packages)."""
    import subprocess
    import sys

    code = (f"import sys; from r3kit.models.loading import ModelConfig, {loader}; {loader}(ModelConfig(name='tiny')); "
            "print('unsloth' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith("True"), out.stderr[-2000:]
    assert "imported before" not in out.stderr.lower() and "import unsloth before" not in out.stderr.lower(), out.stderr[-2000:]


def test_lora_targets_follow_fused_projections():
    """Phi-3 fuses q/k/v into qkv_proj and gate/up into gate_up_proj: the standard target list must map."""
    from transformers import Phi3Config, Phi3ForCausalLM

    from r3kit.models.loading import LORA_TARGETS_DEFAULT, lora_targets

    phi = Phi3ForCausalLM(Phi3Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=2, pad_token_id=0))
    assert lora_targets(phi, list(LORA_TARGETS_DEFAULT)) == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    with pytest.raises(ValueError, match=r"\['w_pack'\] are not linear layers of this model; its linear layers: .*qkv_proj"):
        lora_targets(phi, ["w_pack"])


def test_the_tokenizer_check_reads_the_copy_unsloth_loads(monkeypatch):
    """meta-llama/Llama-3.1-8B-Instruct is gated; Unsloth loads its ungated copy, so the context check must too."""
    import transformers

    from r3kit.models.loading import load_tokenizer

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    asked = []
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda path, **kw: asked.append(path) or path)
    load_tokenizer(ModelConfig(name="meta-llama/Llama-3.1-8B-Instruct"))
    assert asked and not asked[0].startswith("meta-llama/") and "Llama-3.1-8B-Instruct".lower() in asked[0].lower()


PLAIN_LOADER = """
import os, sys
sys.path[:0] = [sys.argv[2], sys.argv[2] + '/support']
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["R3KIT_REPORT_TO"] = "none"
import datasets
from fakes import ScriptedGenerator
from r3kit.models.loading import ModelConfig, attach_lora, load_model
from r3kit.tasks import get_task
from r3kit.core.trainer import GRPO_PINNED, TrainConfig, build_trainer

model, tokenizer = load_model(ModelConfig(name="tiny", loader="transformers"))
assert type(model).__module__.startswith("transformers.") and model.r3kit_loader == "transformers"
lora = attach_lora(model, {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
assert type(lora).__module__.startswith("peft.") and lora.r3kit_loader == "transformers"
assert 0 < sum(p.numel() for p in lora.parameters() if p.requires_grad) < sum(p.numel() for p in lora.parameters())
task = get_task("countdown", style="compact")
failures = datasets.Dataset.from_list([{"target": t, "nums": [t, 1, 2], "failed_attempt": "<answer>1</answer>"}
                                       for t in range(3, 7)])
cfg = TrainConfig(steps=1, problems_per_step=2, group_size=2, micro_batch_size=4, learning_rate=1e-2, grpo_config={**GRPO_PINNED, "beta": 0.0},
                  reflection_tokens=6, retry_tokens=6, save_steps=1, report_to="none")
script = lambda c: "r1" if c[-1]["content"] == task.prompts.reflection_request else "<answer>3</answer>"
# TRL's own GRPO forward (a Triton chunked-logprob kernel) needs a GPU: on CPU the trainer is built, not run
trainer = build_trainer(lora, tokenizer, task, failures, cfg, sys.argv[1],
                        generator_factory=lambda m, tok, **_: ScriptedGenerator(tok, script))
assert type(trainer.model).__module__.startswith("peft.")
lora.save_pretrained(os.path.join(sys.argv[1], "adapter"))
evaluated, _ = load_model(ModelConfig(name="tiny", loader="transformers"), adapter=os.path.join(sys.argv[1], "adapter"))
assert type(evaluated).__module__.startswith("peft.")
assert "unsloth" not in sys.modules, "Unsloth was imported"
print("plain loader ok")
"""


def test_the_transformers_loader_is_plain_transformers_and_peft(tmp_path):
    """loader='transformers' (the ZeRO-3 path), in a fresh process: no Unsloth model, LoRA from peft, TRL's trainer
    builds around it, a saved adapter loads, and Unsloth is never imported. (Training itself is GPU-only on this
    path: TRL 1.15's GRPO forward is a Triton kernel; on CPU the kit trains through Unsloth, which replaces it.)"""
    import subprocess
    import sys
    from pathlib import Path

    here = str(Path(__file__).parent)
    done = subprocess.run([sys.executable, "-c", PLAIN_LOADER, str(tmp_path), here], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and "plain loader ok" in done.stdout, done.stderr[-3000:]
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    with pytest.raises(ValueError, match="neither Unsloth's vLLM engine"):
        ModelConfig(name="tiny", loader="transformers", fast_inference=True).validate()
    with pytest.raises(ValueError, match="loader must be one of"):
        ModelConfig(loader="deepspeed").validate()
    from r3kit.core.trainer import TrainConfig, train

    with pytest.raises(ValueError, match="process without Unsloth"):  # this pytest process has imported Unsloth
        train(ModelConfig(name="tiny", loader="transformers"), None, [], TrainConfig(report_to="none"), tmp_path / "x")
