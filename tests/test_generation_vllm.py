"""The vLLM path (Unsloth's fast_generate), against a stand-in engine that keeps vLLM's and Unsloth's
semantics (tests/support/vllm_standin.py): per-request seeds, saved-adapter evaluation, the same prompt ids as
the transformers backend, explicit sampling knobs, and the live LoRA folder."""

import datasets
import pytest
import torch
import vllm_standin

from r3kit.models.generation import HFGenerator, Sampling, VLLMGenerator, make_generator
from r3kit.models.loading import ModelConfig, attach_lora, load_model, save_model

CONVERSATION = [{"role": "user", "content": "37 49 5 = 60"}]
GROUP = [CONVERSATION] * 6


@pytest.fixture
def standin(monkeypatch):
    return vllm_standin.install(monkeypatch)


@pytest.fixture
def vllm_tiny(standin):
    model, tokenizer = load_model(ModelConfig(name="tiny", fast_inference=True, max_lora_rank=8))
    assert getattr(model, "vllm_engine", None) is not None
    return model, tokenizer


def texts(outs):
    return [o.token_ids for o in outs]


def test_the_standin_keeps_vllms_per_request_seeding(vllm_tiny):
    """The semantics blocker 1 rests on: one seed for identical prompts gives identical samples."""
    model, tokenizer = vllm_tiny
    engine = model.vllm_engine
    prompt = vllm_standin.TokensPrompt(tokenizer("x y z")["input_ids"])
    same = engine.generate([prompt] * 3, vllm_standin.SamplingParams(seed=7, max_tokens=8))
    assert len({tuple(o.outputs[0].token_ids) for o in same}) == 1
    n = engine.generate(prompt, vllm_standin.SamplingParams(seed=7, n=3, max_tokens=8))[0].outputs
    assert len({tuple(o.token_ids) for o in n}) > 1
    fresh = engine.generate([prompt] * 3, vllm_standin.SamplingParams(max_tokens=8))
    assert len({tuple(o.outputs[0].token_ids) for o in fresh}) > 1


def test_identical_prompts_in_a_group_get_different_samples_reproducibly(vllm_tiny):
    model, tokenizer = vllm_tiny
    generator = make_generator(model, tokenizer)
    assert isinstance(generator, VLLMGenerator)
    a = generator.generate(GROUP, Sampling(max_new_tokens=10, temperature=1.0, seed=3))
    b = generator.generate(GROUP, Sampling(max_new_tokens=10, temperature=1.0, seed=3))
    c = generator.generate(GROUP, Sampling(max_new_tokens=10, temperature=1.0, seed=4))
    assert len({tuple(t) for t in texts(a)}) >= 4  # a GRPO group of 6 reflections is not one reflection
    assert texts(a) == texts(b)  # reproducible under the seed
    assert texts(a) != texts(c)
    assert all(o.logprobs is not None and len(o.logprobs) == len(o.token_ids) for o in a)


def test_greedy_vllm_and_transformers_agree_token_for_token(vllm_tiny):
    model, tokenizer = vllm_tiny
    conversations = [CONVERSATION, [{"role": "user", "content": "a longer prompt, with more text"}]]
    on_vllm = make_generator(model, tokenizer).generate(conversations, Sampling(max_new_tokens=12))
    on_hf = HFGenerator(model, tokenizer).generate(conversations, Sampling(max_new_tokens=12))
    assert texts(on_vllm) == texts(on_hf)
    assert [o.prompt_ids for o in on_vllm] == [o.prompt_ids for o in on_hf]
    assert [o.finished for o in on_vllm] == [o.finished for o in on_hf]


def test_neither_backend_inherits_the_models_generation_config(vllm_tiny):
    """Qwen2.5 ships repetition_penalty 1.05 and top_k 20: sampling must be exactly what is asked."""
    model, tokenizer = vllm_tiny
    clean = HFGenerator(model, tokenizer).generate([CONVERSATION], Sampling(max_new_tokens=16))
    sampled_clean = HFGenerator(model, tokenizer).generate(GROUP, Sampling(max_new_tokens=16, temperature=1.0, seed=5))
    vllm_sampled_clean = make_generator(model, tokenizer).generate(GROUP, Sampling(16, 1.0, 1.0, 5))
    for target in (model, model.vllm_engine.model):
        target.generation_config.repetition_penalty = 3.0
        target.generation_config.top_k = 1
        target.generation_config.temperature = 0.1
    assert texts(HFGenerator(model, tokenizer).generate([CONVERSATION], Sampling(max_new_tokens=16))) == texts(clean)
    again = HFGenerator(model, tokenizer).generate(GROUP, Sampling(max_new_tokens=16, temperature=1.0, seed=5))
    assert texts(again) == texts(sampled_clean)
    on_vllm = make_generator(model, tokenizer).generate([CONVERSATION], Sampling(max_new_tokens=16))
    assert texts(on_vllm) == texts(clean)
    assert texts(make_generator(model, tokenizer).generate(GROUP, Sampling(16, 1.0, 1.0, 5))) == texts(vllm_sampled_clean)


def test_vllm_is_given_token_ids_so_a_template_bos_is_not_doubled(vllm_tiny):
    """vLLM tokenises text prompts with add_special_tokens=True: a Llama-style template that holds BOS
    would get two. Both backends must feed the same ids, with one BOS."""
    from tokenizers.processors import TemplateProcessing

    model, tokenizer = vllm_tiny
    bos = "<|system|>"
    tokenizer = __import__("copy").deepcopy(tokenizer)
    tokenizer.bos_token = bos
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.convert_tokens_to_ids(bos))])
    tokenizer.chat_template = "{{ bos_token }}" + tokenizer.chat_template
    bos_id = tokenizer.convert_tokens_to_ids(bos)
    assert tokenizer("x")["input_ids"][0] == bos_id  # the tokenizer does add BOS to text
    generator = VLLMGenerator(model, tokenizer)
    out = generator.generate([CONVERSATION], Sampling(max_new_tokens=4))[0]
    sent = model.vllm_engine.calls[-1]["prompts"][0]
    ids = sent["prompt_token_ids"] if isinstance(sent, dict) else tokenizer(sent)["input_ids"]
    assert ids[:2] != [bos_id, bos_id] and ids[0] == bos_id
    assert ids == out.prompt_ids == HFGenerator(model, tokenizer).generate([CONVERSATION], Sampling(max_new_tokens=4))[0].prompt_ids


def saved_adapter(tmp_path):
    """A LoRA adapter with non-zero B weights (so it changes the model), saved the way training saves it."""
    model, tokenizer = load_model(ModelConfig(name="tiny"))
    model = attach_lora(model, {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "o_proj"]})
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    save_model(model, tokenizer, tmp_path / "adapter")
    return tmp_path / "adapter"


def test_a_saved_adapter_is_evaluated_on_vllm_from_its_folder(standin, tmp_path):
    from r3kit.eval.evaluate import EvalConfig, evaluate
    from r3kit.tasks import get_task

    adapter = saved_adapter(tmp_path)
    model, tokenizer = load_model(ModelConfig(name="tiny", fast_inference=True, max_lora_rank=8), adapter=adapter)
    generator = make_generator(model, tokenizer)
    assert isinstance(generator, VLLMGenerator) and generator.adapter == str(adapter)
    conversations = [CONVERSATION, [{"role": "user", "content": "1 2 3 = 6"}]]
    with_adapter = generator.generate(conversations, Sampling(max_new_tokens=12))
    request = model.vllm_engine.calls[-1]["lora_request"]
    assert request.lora_path == str(adapter) and request.lora_tensors is None  # path mode: vLLM reads the folder
    generator.generate(conversations, Sampling(max_new_tokens=4))  # the folder is read once: the request is kept
    assert model.vllm_engine.calls[-1]["lora_request"] is request
    hf_model, hf_tokenizer = load_model(ModelConfig(name="tiny"), adapter=adapter)
    reference = HFGenerator(hf_model, hf_tokenizer).generate(conversations, Sampling(max_new_tokens=12))
    base = HFGenerator(*load_model(ModelConfig(name="tiny"))).generate(conversations, Sampling(max_new_tokens=12))
    assert texts(with_adapter) == texts(reference) != texts(base)
    # the HF side of the model holds the same adapter weights
    assert texts(HFGenerator(model, tokenizer).generate(conversations, Sampling(max_new_tokens=12))) == texts(reference)
    rows = [{"target": 6, "nums": [1, 2, 3]}, {"target": 60, "nums": [37, 49, 5]}]
    result = evaluate(model, tokenizer, get_task("countdown", style="compact"), rows,
                      EvalConfig(attempt_tokens=8, reflection_tokens=8, retry_tokens=8), tmp_path / "eval")
    assert result.metrics["first_try"]["n"] == 2 and (tmp_path / "eval" / "transcripts.jsonl").exists()


def test_an_adapter_of_too_high_rank_is_refused_before_loading(standin, tmp_path):
    adapter = saved_adapter(tmp_path)
    with pytest.raises(ValueError, match="rank 4 > model.max_lora_rank 2"):
        load_model(ModelConfig(name="tiny", fast_inference=True, max_lora_rank=2), adapter=adapter)


def test_mining_k_sampled_attempts_differ_on_vllm(vllm_tiny, tmp_path):
    from r3kit.core.mining import MiningConfig, mine_failures
    from r3kit.tasks import get_task

    model, tokenizer = vllm_tiny
    rows = [{"target": 60, "nums": [37, 49, 5]}, {"target": 6, "nums": [1, 2, 3]}]
    generator = make_generator(model, tokenizer)
    cfg = MiningConfig(k=4, attempt_tokens=10, temperature=1.0, chunk_size=2)
    mine_failures(model, tokenizer, get_task("countdown", style="compact"), rows, cfg, tmp_path, generator=generator)
    params = model.vllm_engine.calls[-1]["params"]
    assert len(params) == 8 and len({p.seed for p in params}) == 8
    prompts = model.vllm_engine.calls[-1]["prompts"]
    assert prompts[0] == prompts[3]  # k copies of one problem ...
    # ... sampled differently, so keep="any" and attempt_accuracy mean what they say
    engine_outputs = generator.generate([[{"role": "user", "content": "q"}]] * 4, Sampling(10, 1.0, 1.0, 0))
    assert len({tuple(o.token_ids) for o in engine_outputs}) > 1


def test_training_on_vllm_samples_distinct_reflections_and_keeps_the_live_lora_in_the_run(standin, tmp_path, monkeypatch):
    from r3kit.core.trainer import GRPO_PINNED, TrainConfig, build_trainer
    from r3kit.tasks import get_task

    monkeypatch.chdir(tmp_path)  # papermill runs notebooks in notebooks/: nothing may land in the working directory
    model, tokenizer = load_model(ModelConfig(name="tiny", fast_inference=True, max_lora_rank=8))
    model = attach_lora(model, {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    failures = datasets.Dataset.from_list([{"target": t, "nums": [t, 1, 2], "failed_attempt": "<answer>1</answer>"}
                                           for t in range(3, 7)])
    cfg = TrainConfig(steps=1, problems_per_step=2, group_size=4, micro_batch_size=4, learning_rate=1e-3, grpo_config={**GRPO_PINNED, "beta": 0.0},
                      reflection_tokens=8, retry_tokens=8, save_steps=1, generation_batch_size=8)
    out = tmp_path / "run" / "train" / "r3"
    trainer = build_trainer(model, tokenizer, get_task("countdown", style="compact"), failures, cfg, out)
    batches = []
    original = trainer._generate_and_score_completions
    trainer._generate_and_score_completions = lambda inputs: batches.append(original(inputs)) or batches[-1]
    trainer.train()
    ids = [tuple(row[mask.bool()].tolist()) for row, mask in zip(batches[0]["completion_ids"], batches[0]["completion_mask"])]
    groups = [ids[i : i + 4] for i in range(0, len(ids), 4)]
    assert all(len(set(group)) > 1 for group in groups), groups
    calls = model.vllm_engine.calls
    assert calls[0]["lora_request"].lora_tensors is not None  # the live weights, not a stale folder
    assert (out / "live_lora" / "adapter_config.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
