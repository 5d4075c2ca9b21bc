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
