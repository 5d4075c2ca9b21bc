"""Batched generation: same greedy output as one at a time, EOS handling, seeds, token accounting."""

from r3kit.models.generation import HFGenerator, Sampling, make_generator

CONVERSATIONS = [[{"role": "user", "content": text}] for text in ["1 2 3 = 6", "a much longer prompt here", "x", "12 7 = 5"]]


def test_batched_greedy_equals_one_at_a_time(tiny):
    model, tokenizer = tiny
    batched = HFGenerator(model, tokenizer, batch_size=4).generate(CONVERSATIONS, Sampling(max_new_tokens=12))
    single = [HFGenerator(model, tokenizer, batch_size=1).generate([c], Sampling(max_new_tokens=12))[0] for c in CONVERSATIONS]
    assert [b.token_ids for b in batched] == [s.token_ids for s in single]
    assert [b.text for b in batched] == [s.text for s in single]


def test_lengths_eos_and_stats(tiny):
    model, tokenizer = tiny
    generator = HFGenerator(model, tokenizer, batch_size=3)
    outs = generator.generate(CONVERSATIONS, Sampling(max_new_tokens=7))
    for out in outs:
        assert 1 <= len(out.token_ids) <= 7
        assert out.finished == (out.token_ids[-1] == tokenizer.eos_token_id)
        assert tokenizer.pad_token_id not in out.token_ids[:-1] or not out.finished
    assert generator.stats.tokens == sum(len(o.token_ids) for o in outs) and generator.stats.sequences == 4
    assert generator.stats.tokens_per_second > 0


def test_sampling_is_seeded(tiny):
    model, tokenizer = tiny
    generator = HFGenerator(model, tokenizer, batch_size=4)
    a = generator.generate(CONVERSATIONS, Sampling(max_new_tokens=10, temperature=1.0, seed=1))
    b = generator.generate(CONVERSATIONS, Sampling(max_new_tokens=10, temperature=1.0, seed=1))
    c = generator.generate(CONVERSATIONS, Sampling(max_new_tokens=10, temperature=1.0, seed=2))
    assert [x.token_ids for x in a] == [x.token_ids for x in b]
    assert [x.token_ids for x in a] != [x.token_ids for x in c]


def test_training_mode_is_restored_and_cpu_gets_transformers(tiny):
    model, tokenizer = tiny
    model.train()
    HFGenerator(model, tokenizer).generate(CONVERSATIONS[:1], Sampling(max_new_tokens=3))
    assert model.training
    model.eval()
    assert isinstance(make_generator(model, tokenizer), HFGenerator)


def test_the_base_generator_switches_a_lora_adapter_off_and_needs_one():
    """The frozen retrier's vanilla under a trained adapter: greedy text equal to the model before LoRA, while
    the adapter on writes something else; no adapter, no base generator (the base weights load by themselves)."""
    import torch

    from r3kit.models.generation import VLLMGenerator, base_generator
    from r3kit.models.loading import ModelConfig, attach_lora, load_model

    model, tokenizer = load_model(ModelConfig(name="tiny"))  # its own copy: LoRA goes into its modules
    greedy = Sampling(max_new_tokens=8)
    before = [o.token_ids for o in HFGenerator(model, tokenizer).generate(CONVERSATIONS, greedy)]
    assert base_generator(model, tokenizer) is None
    peft = attach_lora(model, {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "o_proj"]})
    torch.manual_seed(0)
    for name, weight in peft.named_parameters():
        if "lora_B" in name:
            weight.data.normal_(0.0, 2.0)  # a trained adapter's effect, large enough to change greedy text
    on = [o.token_ids for o in HFGenerator(peft, tokenizer).generate(CONVERSATIONS, greedy)]
    off = base_generator(peft, tokenizer, batch_size=2)
    assert [o.token_ids for o in off.generate(CONVERSATIONS, greedy)] == before != on
    assert [o.token_ids for o in HFGenerator(peft, tokenizer).generate(CONVERSATIONS, greedy)] == on  # back on after

    class Engine:  # a vLLM model carrying a saved adapter: the base generator sends no LoRA request
        vllm_engine, r3kit_adapter = object(), "adapter/"

        def load_lora(self, *args, **kwargs):
            raise AssertionError("the base generator asked vLLM for the adapter")

    vllm = base_generator(Engine(), tokenizer)
    assert isinstance(vllm, VLLMGenerator) and vllm.base and vllm.lora_request() is None
